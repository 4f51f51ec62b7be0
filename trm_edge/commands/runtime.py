"""The device-side commands: solve, eval, bench, compare, verify, build-engine, one module each (their shared
options and helpers: :mod:`trm_edge.commands.common`; the plots: :mod:`trm_edge.commands.plots`).

Thin: parse, call trm_edge.runtimes, print (rich) or emit ``--json``. Every runtime and plotting import
(onnxruntime, tensorrt, matplotlib; torch only for checkpoints) happens inside the command, so
``trm-edge solve`` on a bundle starts without torch.
"""

from __future__ import annotations

import typer

from trm_edge.commands import bench, compare, engine, evaluate, serve, solve, verify

COMMANDS = (solve, serve, evaluate, bench, compare, verify, engine)  # in the order of `trm-edge --help`


def register(app: typer.Typer) -> None:
    """Add the device-side commands to the app."""
    for command in COMMANDS:
        command.register(app)
