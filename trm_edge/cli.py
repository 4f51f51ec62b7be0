"""The ``trm-edge`` command line: thin. Each command group lives in ``trm_edge/commands/`` and imports
its heavy dependencies (torch, onnx) inside the command, so ``trm-edge solve`` on a bundle never pays
for torch."""

from __future__ import annotations

import signal
import sys
from typing import Any, NoReturn

import typer

from trm_edge.commands import data, export, model, quantize, runtime, train
from trm_edge.errors import TrmEdgeError, missing_package
from trm_edge.quiet import set_verbose
from trm_edge.version import __version__

app = typer.Typer(
    name="trm-edge",
    help="Tiny Recursive Models from training to edge devices: train, import, export, quantize, solve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"trm-edge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show what the libraries underneath print and warn "
                                                                "(onnxruntime, NNCF, torch.onnx), on stderr."),
) -> None:
    """Tiny Recursive Models from training to edge devices."""
    set_verbose(verbose)


for group in (model, data, train, export, quantize, runtime):
    group.register(app)


class Terminated(SystemExit):
    """SIGTERM, raised where the program is, so that it cleans up (temporary outputs, locks) as after Ctrl-C, and
    exits 143 as shells report it. A SystemExit rather than a KeyboardInterrupt: typer turns the latter into 130."""

    def __init__(self) -> None:
        super().__init__(143)


def _terminate(signum: int, frame: Any) -> None:
    print("terminated", file=sys.stderr)
    raise Terminated()


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2, never a traceback; so does
    a package of an optional extra (torch, onnx, fastapi, ...) missing from the install. Ctrl-C and SIGTERM clean
    up and exit 130 and 143 (serve drains and exits 0 on SIGTERM)."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    except TrmEdgeError as error:
        _fail(error)
    except ModuleNotFoundError as error:
        missing = missing_package(error)
        if missing is None:
            raise
        _fail(missing)
    except KeyboardInterrupt:  # where typer does not turn it into exit code 130 itself
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def _fail(error: TrmEdgeError) -> NoReturn:
    message = " ".join(str(error).split())
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
