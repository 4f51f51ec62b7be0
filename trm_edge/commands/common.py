"""What the device-side commands share: the options of every command that runs the recursion (solve, eval, bench,
compare), each defined once here with one flag name, one default and one help text (defaults from
:data:`trm_edge.runtimes.recursion.DEFAULTS`, runtimes from the registry), and opening a model on a runtime.

Each ``*_option()`` returns a fresh ``typer.Option`` for a command's signature. Importing this module pulls in
numpy (the recursion's defaults) but no runtime: the adapters are imported when a command opens one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional  # typer reads callbacks' hints at run time: no X | None on 3.8

import typer

from trm_edge.errors import ConfigError, TrmEdgeError
from trm_edge.machine import usable_cores
from trm_edge.runtimes.recursion import DEFAULTS
from trm_edge.runtimes.registry import RUNTIMES

MODEL_HELP = ("A bundle directory, a checkpoint directory, a training run directory (its model/), or a shipped "
              "model's name, 'default' (the default) or 'maze': its bundle (its checkpoint is trm_edge/models/NAME).")
RUNTIME_DEFAULT = ("Default: the fastest installed runtime that holds parity for the bundle's target (torch for "
                   "checkpoints).")
HALT_HELP = ("Stop each puzzle at the first step whose halting logit exceeds --threshold, as a deployment does; "
             "--no-halt runs every step up to --max-steps, as the official evaluation does.")
THRESHOLD_HELP = ("Halt when q_halt_logits > this (default: the model's calibrated threshold, else 0 = sigmoid "
                  "0.5).")
MAX_STEPS_HELP = "Supervision steps at most (default: the model's)."


def runtime_help() -> str:
    """The ``--runtime`` help, from the registry: each runtime's name, aliases and description, then the default."""
    entries = []
    for name, entry in RUNTIMES.items():
        aliases = f" (alias {', '.join(entry.aliases)})" if entry.aliases else ""
        entries.append(f"{name}{aliases}: {entry.description}.")
    return " ".join(["A runtime, NAME or NAME:DEVICE.", *entries, RUNTIME_DEFAULT])


def runtime_option(*flags: str, extra: str = "") -> Any:
    """``--runtime``/``-r`` (or the ``flags`` given, e.g. ``--runtime-a``); ``extra`` is appended to the help."""
    return typer.Option(None, *(flags or ("--runtime", "-r")), help=" ".join(filter(None, [runtime_help(), extra])))


def at_least_one(flag: str) -> Any:
    """A typer callback: the option, when given, is a whole number of at least 1."""

    def check(value: Optional[int]) -> Optional[int]:
        if value is not None and value < 1:
            raise ConfigError(f"{flag} {value} must be at least 1")
        return value

    return check


def check_threads(value: Optional[int]) -> Optional[int]:
    """``--threads``: 1 to the cores this process may use (more threads than cores only slow a step down)."""
    cores = usable_cores()
    if value is not None and not 1 <= value <= cores:
        raise ConfigError(f"--threads {value} is out of range: this machine lets trm-edge use {cores} CPU cores; "
                          f"choose 1..{cores}")
    return value


def _finite(flag: str) -> Any:
    def check(value: Optional[float]) -> Optional[float]:
        if value is not None and not math.isfinite(value):
            raise ConfigError(f"{flag} {value} must be a finite number")
        return value

    return check


def limit_option(default: int | None, text: str) -> Any:
    return typer.Option(default, "--limit", help=text, callback=at_least_one("--limit"))


def force_option(text: str = "Replace existing output files.") -> Any:
    return typer.Option(False, "--force", help=text)


def check_outputs(*paths: Path | None, force: bool) -> None:
    """Before any work: each output file given is new (or ``force``) and its location writable."""
    from trm_edge.io import check_output

    for path in paths:
        if path is not None:
            check_output(path, force=force)


def halt_option() -> Any:
    return typer.Option(DEFAULTS.halt, "--halt/--no-halt", help=HALT_HELP)


def threshold_option() -> Any:
    return typer.Option(None, "--threshold", help=THRESHOLD_HELP, callback=_finite("--threshold"))


def max_steps_option() -> Any:
    return typer.Option(None, "--max-steps", help=MAX_STEPS_HELP, callback=at_least_one("--max-steps"))


def batch_option(default: int = DEFAULTS.batch_size) -> Any:
    return typer.Option(default, "--batch", "-b", help="Puzzles in flight at once.", callback=at_least_one("--batch"))


def threads_option() -> Any:
    return typer.Option(None, "--threads", help="CPU threads for the runtime (1 to the machine's cores).",
                        callback=check_threads)


def json_option(text: str = "Print one JSON object.") -> Any:
    return typer.Option(False, "--json", help=text)


def resolve_model(model: str | None) -> str:
    """``--model``, else the shipped default model."""
    if model:
        return model
    from trm_edge.runtimes.sources import default_model

    found = default_model()
    if found is None:
        raise TrmEdgeError("no --model given and no default model is shipped in this install; pass a bundle "
                           "(trm-edge export) or a checkpoint directory")
    return found


def open_model(model: Any, runtime: str | None, *, threads: int | None = None):
    """A runtime (not loaded) for a model name/path or an opened ModelSource; a checkpoint asked to run on a bundle
    runtime is exported to a temporary bundle first."""
    from trm_edge.runtimes.model_source import ModelSource
    from trm_edge.runtimes.sources import open_runtime, open_source

    source = model if isinstance(model, ModelSource) else open_source(resolve_model(model))
    if source.kind == "checkpoint" and runtime:
        from trm_edge.export.temporary import export_temporary_bundle, needs_bundle

        if needs_bundle(source, runtime):
            source = export_temporary_bundle(source)
    return open_runtime(source, runtime, threads=threads)


def fmt(value: Any, digits: int = 4) -> str:
    """A report value for a rich table: floats short, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value else f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return str(value)
