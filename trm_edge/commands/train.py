"""CLI command: train (single process, or every rank under ``torchrun ... -m trm_edge train``)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import List

import typer

from trm_edge.commands.common import check_threads
from trm_edge.commands.output import console, print_json
from trm_edge.progress import err_console


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""
    app.command("train")(train)


def train(
    preset: str = typer.Option(..., "--preset", help="Preset to train (see `trm-edge info --preset NAME`)."),
    data: Path = typer.Option(..., "--data", help="Dataset directory in the official layout (train/ and test/)."),
    output: Path = typer.Option(..., "-o", "--output", help="Run directory: model/, state/, metrics.jsonl."),
    overrides: List[str] = typer.Option(None, "--set", help="Override a model or training field: key=value "
                                        "(repeatable)."),
    train_steps: int = typer.Option(None, "--train-steps", help="Total optimiser steps (overrides the preset)."),
    resume: bool = typer.Option(False, "--resume", help="Continue RUN_DIR from its last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Replace an existing run directory."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar on stderr."),
    threads: int = typer.Option(None, "--threads", help="CPU threads per process (default: the cores shared "
                                "among local ranks, or OMP_NUM_THREADS).", callback=check_threads),
    as_json: bool = typer.Option(False, "--json", help="Print the final evaluation as one JSON object."),
) -> None:
    """Train a TRM with the paper's recipe (deep supervision, ACT carry, AdamATan2, EMA); DDP under torchrun."""
    # Idle OpenMP threads sleep instead of spinning: on a busy machine, spinning threads that wait for a
    # descheduled sibling made a 2-thread training step 2x slower than 1 thread (read before torch loads).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from trm_edge.errors import OutputWriteError
    from trm_edge.trm.train import MODEL_DIR, train_from_directory

    state_before = _state_identity(output)
    try:
        result = train_from_directory(preset=preset, data=data, output=output, overrides=list(overrides or []),
                                      train_steps=train_steps, resume=resume, force=force, progress=not no_progress,
                                      threads=threads)
    except KeyboardInterrupt:
        kept = _checkpoint_kept(output, state_before, resume)
        if kept:
            err_console.print(kept, markup=False, highlight=False)
        raise
    except OutputWriteError as error:  # a full disk at a checkpoint: one line, and how to go on
        kept = _checkpoint_kept(output, state_before, resume) or \
            f"no checkpoint of this run was kept; start it again with: {command_with('--force')}"
        raise OutputWriteError(f"{error}; {kept}", path=error.path) from error
    import torch.distributed as dist

    if dist.is_initialized():
        rank = dist.get_rank()
        # Every rank reaches teardown before any closes its gloo pairs: a rank that tore down while its peer
        # was still finishing aborted once in CI ("terminate called without an active exception").
        dist.barrier()
        dist.destroy_process_group()
        if rank != 0:
            return
    summary = {"run_dir": str(output), "model": str(output / MODEL_DIR), "step": result.step,
               "seconds": round(result.seconds, 1), "eval": result.last_eval}
    if as_json:
        print_json(summary)
        return
    console.print(f"trained {preset} for {result.step} steps -> {output / MODEL_DIR}")
    if result.last_eval:
        e = result.last_eval
        console.print(f"exact accuracy {e['exact_accuracy']:.3f} after {len(e['exact_accuracy_by_step'])} steps "
                      f"({e['exact_accuracy_by_step'][0]:.3f} after 1); with halting "
                      f"{e['halt_exact_accuracy']:.3f} in {e['halt_mean_steps']:.2f} steps on average")


def _state_identity(output: Path) -> tuple[int, int] | None:
    """Which ``OUTPUT/state`` is there (device and inode), None when none is."""
    from trm_edge.trm.train_state import STATE_DIR

    try:
        stat = os.stat(output / STATE_DIR)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _checkpoint_kept(output: Path, state_before: tuple[int, int] | None, resume: bool) -> str | None:
    """How to continue this run from the checkpoint OUTPUT holds of it (the one it resumed, or one it wrote); None
    when it holds none. A run that replaces another (``--force``) puts its own state/ there only at its first
    checkpoint; before that the state/ there is the old run's, which this command line would not continue."""
    state = _state_identity(output)
    if state is None or not (resume or state != state_before):
        return None
    return f"the last checkpoint in {output} is kept; continue with: {command_with('--resume')}"


def command_with(flag: str) -> str:
    """This command line with ``flag`` (``--resume`` to continue the run, ``--force`` to start it again) in place of
    either."""
    args = [arg for arg in sys.argv[1:] if arg not in ("--force", "--resume")]
    return shlex.join(["trm-edge", *args, flag])
