"""Third-party chatter stays out of the user's terminal.

Libraries we call print progress (onnxruntime's calibrators: "Collecting tensor data and making histogram
..."), log advice (NNCF, onnxruntime.quantization) and raise warnings. Inside :func:`third_party_output` all
of it goes to the verbose log: dropped by default, on stderr (never stdout: ``--json`` stays clean) with the
CLI's ``--verbose``. Only Python-level output is routed; native libraries' own logs are set quiet where the
sessions are made (``log_severity_level``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from collections.abc import Iterator

THIRD_PARTY_LOGGERS = ("", "nncf", "onnxruntime", "onnxslim", "torch.onnx")
_state = {"verbose": False}


def set_verbose(verbose: bool) -> None:
    _state["verbose"] = verbose


def is_verbose() -> bool:
    return _state["verbose"]


@contextlib.contextmanager
def third_party_output() -> Iterator[None]:
    """Route prints, log records and warnings of the libraries called inside to the verbose log."""
    if is_verbose():
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    loggers = [logging.getLogger(name) for name in THIRD_PARTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):  # noqa: B905
            logger.setLevel(level)
