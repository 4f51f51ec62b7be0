"""The project's one exception hierarchy.

User errors carry the offending value and the valid choices in their message; the CLI prints
``str(error)`` on one line to stderr and exits with code 2.
"""

from __future__ import annotations

from collections.abc import Iterable


class TrmEdgeError(Exception):
    """Base class of every error trm-edge raises on purpose."""


class ConfigError(TrmEdgeError):
    """An unknown preset, a config field that does not exist, or a value out of range."""


class CheckpointError(TrmEdgeError):
    """A checkpoint that cannot be read: missing files, wrong keys, mismatched shapes."""


class PuzzleError(TrmEdgeError):
    """Malformed puzzle text, rule-breaking givens, corrupt task files."""


class DatasetError(TrmEdgeError):
    """A directory that is not a dataset in the official layout, or an inconsistent one."""


class ExportError(TrmEdgeError):
    """Export could not produce a graph for the requested model and target."""


class ValidationError(TrmEdgeError):
    """A graph's outputs missed the torch reference beyond tolerance (all failures listed)."""


class BundleError(TrmEdgeError):
    """A bundle that is missing, tampered with, truncated or of an unknown format."""


class TargetError(TrmEdgeError):
    """An unknown device target, or one that cannot do what was asked of it."""


class RuntimeUnavailableError(TrmEdgeError):
    """A runtime whose package is not installed or whose device is not present."""


class QuantizationError(TrmEdgeError):
    """Quantization could not be done as asked (already quantized, bad calibration data, ...)."""


class TrainingError(TrmEdgeError):
    """Training stopped: bad data, an incompatible resume, a NaN loss."""


class OutputExistsError(TrmEdgeError):
    """An output path exists and ``--force`` was not given."""


class OutputError(TrmEdgeError):
    """An output location that cannot be written: read-only, under a file, the current directory."""


class OutputSpaceError(OutputError):
    """An output whose size is known before the work does not fit in the free space of its location."""


class OutputWriteError(OutputError):
    """Writing an output failed for want of space or by an I/O error; ``path`` is the output. The message names
    the file, the bytes needed where known and the free space."""

    def __init__(self, message: str, *, path: object = None) -> None:
        super().__init__(message)
        self.path = path


class OutputLockedError(TrmEdgeError):
    """Another trm-edge process is writing the same output path (its PID in the message)."""


# Packages of the optional extras: what only the host side imports (training, import, export, quantize, plots), the
# ``host`` extra, which a device-only install (``pip install trm-edge``) lacks; and the server's, the ``serve`` extra.
HOST_PACKAGES = ("torch", "onnx", "onnxslim", "safetensors", "matplotlib", "huggingface_hub")
SERVE_PACKAGES = ("fastapi", "starlette", "pydantic", "uvicorn", "prometheus_client")
EXTRAS = {"host": ("the host side: training, import, export, quantize, plots", HOST_PACKAGES),
          "serve": ("the server, trm-edge serve", SERVE_PACKAGES)}


def missing_package(error: ImportError) -> TrmEdgeError | None:
    """The one-line error for a failed import of a package of an optional extra (None for any other module): the
    command needs ``pip install 'trm-edge[EXTRA]'``."""
    package = (error.name or "").partition(".")[0]
    for extra, (what, packages) in EXTRAS.items():
        if package in packages:
            return RuntimeUnavailableError(f"{package} is not installed here, and this command needs it ({what}): "
                                           f"pip install 'trm-edge[{extra}]'")
    return None


def choices(values: Iterable[object]) -> str:
    """Format valid alternatives for an error message: ``'a', 'b', 'c'``."""
    return ", ".join(repr(v) for v in values)
