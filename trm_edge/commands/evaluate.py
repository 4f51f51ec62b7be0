"""CLI command: eval (accuracy of a model on a labelled dataset split; on an ARC test split also the official
metric and the submission)."""

from __future__ import annotations

from pathlib import Path

import typer

from trm_edge.commands import common
from trm_edge.commands.output import console, print_json
from trm_edge.errors import DatasetError, PuzzleError
from trm_edge.io import atomic_file, write_json_atomic
from trm_edge.progress import progress


def register(app: typer.Typer) -> None:
    """Add this command to the app."""
    app.command("eval")(eval_command)


def eval_command(
    model: str = typer.Argument(None, help=common.MODEL_HELP),
    data: Path = typer.Option(..., "--data", help="Dataset directory in the official layout."),
    split: str = typer.Option("test", "--split", help="train or test."),
    runtime: str = common.runtime_option(),
    max_steps: int = common.max_steps_option(),
    halt: bool = common.halt_option(),
    threshold: float = common.threshold_option(),
    batch: int = common.batch_option(64),
    limit: int = common.limit_option(None, "Evaluate the first N examples only."),
    by_step: bool = typer.Option(False, "--by-step", help="Also report exact accuracy after each step."),
    threads: int = common.threads_option(),
    save_preds: Path = typer.Option(None, "--save-preds", help="Write the predicted tokens [N, seq_len] to an .npy; "
                                    "to an .npz, also what redoing the ARC vote needs: inputs, puzzle_identifiers, "
                                    "q_halt_logits and steps."),
    submission: Path = typer.Option(None, "--submission", help="ARC test split: write the ARC Prize submission "
                                    "(two attempts per test input, from the vote) to this JSON file."),
    as_json: bool = common.json_option(),
    force: bool = common.force_option("Replace existing --save-preds and --submission files."),
) -> None:
    """Accuracy of a model on a dataset split: exact and cell accuracy, mean steps, halting statistics.

    On an ARC test split also the official metric: votes over each test input's augmented versions, pass@1, pass@2
    (the ARC Prize score) and the evaluator's other pass@K, averaged over tasks. Each puzzle halts as in solve (the
    same answers, the same ARC attempts) unless --no-halt runs every step, as the official evaluation does."""
    import numpy as np

    from trm_edge.puzzles.codec import get_codec
    from trm_edge.puzzles.examples import read_examples
    from trm_edge.runtimes.accuracy import arc_scores, evaluate, is_arc_dataset
    from trm_edge.runtimes.solver import Solver

    common.check_outputs(save_preds, submission, force=force)
    arc = split == "test" and is_arc_dataset(data)
    if submission is not None and not arc:
        raise DatasetError(f"--submission needs the test split of an ARC dataset; {str(data)!r} ({split}) is not one")

    rt = common.open_model(model, runtime, threads=threads)
    examples = read_examples(str(data), split, config=rt.config, task=rt.task,
                             identifiers=rt.source.identifiers()).head(limit)
    try:
        codec = get_codec(rt.task)
    except PuzzleError:
        codec = None
    solver = Solver(rt, batch_size=batch, max_steps=max_steps, halt=halt, threshold=threshold)
    with rt, progress() as bar:
        task = bar.add_task(f"eval {split}", total=len(examples))
        report, out = evaluate(rt, examples, solver=solver, codec=codec, by_step=by_step,
                               on_progress=lambda k: bar.advance(task, k))
    report.update(data=str(data), split=split)
    if arc:
        report["arc"], attempts = arc_scores(data, examples, out)
        if submission is not None:
            write_json_atomic(submission, attempts, force=force)
            report["submission_file"] = str(submission)
    if save_preds is not None:
        with atomic_file(save_preds, force=force) as tmp, open(tmp, "wb") as handle:
            if save_preds.suffix == ".npz":
                ids = examples.puzzle_identifiers
                np.savez(handle, preds=out.preds, inputs=examples.inputs, q_halt_logits=out.q_halt_logits,
                         steps=out.steps, puzzle_identifiers=np.zeros(len(out), np.int32) if ids is None else ids)
            else:
                np.save(handle, out.preds)
        report["preds_file"] = str(save_preds)
    if as_json:
        print_json(report)
        return
    from rich.table import Table

    table = Table(title=f"eval {data} ({split}) on {report['runtime']['runtime']}", show_header=False)
    for key in ("count", "exact_accuracy", "cell_accuracy", "valid_fraction", "mean_steps", "max_steps", "halt"):
        if key in report:
            table.add_row(key, common.fmt(report[key]))
    for key, value in report["halting"].items():
        table.add_row(f"halting.{key}", common.fmt(value) if not isinstance(value, list) else str(value))
    table.add_row("puzzles_per_s", common.fmt(report["puzzles_per_s"], 3))
    if "exact_accuracy_by_step" in report:
        table.add_row("exact_accuracy_by_step", " ".join(f"{v:.3f}" for v in report["exact_accuracy_by_step"]))
    for key, value in report.get("arc", {}).items():
        table.add_row(f"arc.{key}", common.fmt(value) if not isinstance(value, list) else str(len(value)))
    console.print(table)
