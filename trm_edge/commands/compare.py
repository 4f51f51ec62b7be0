"""CLI command: compare (parity of two models, bundles or runtimes: teacher-forced per-step divergence, then
free-running answers and halting)."""

from __future__ import annotations

from pathlib import Path

import typer

from trm_edge.commands import common
from trm_edge.commands.output import console, print_json
from trm_edge.errors import TrmEdgeError
from trm_edge.progress import progress


def register(app: typer.Typer) -> None:
    """Add this command to the app."""
    app.command()(compare)


def compare(
    model_a: str = typer.Argument(..., help="Reference: bundle or checkpoint."),
    model_b: str = typer.Argument(None, help="Candidate: bundle or checkpoint (default: A itself, on --runtime-b)."),
    data: Path = typer.Option(..., "--data", help="Dataset directory in the official layout."),
    split: str = typer.Option("test", "--split"),
    runtime_a: str = common.runtime_option("--runtime-a"),
    runtime_b: str = common.runtime_option("--runtime-b"),
    limit: int = common.limit_option(64, "Puzzles to compare."),
    max_steps: int = common.max_steps_option(),
    halt: bool = common.halt_option(),
    threshold: float = common.threshold_option(),
    batch: int = common.batch_option(),
    teacher_limit: int = typer.Option(None, "--teacher-forced-limit", help="Teacher-force only the first N of the "
                                      "puzzles (it runs both models twice per step; default: all, 0: none)."),
    plot: Path = typer.Option(None, "--plot", help="Write a PNG of divergence vs supervision step."),
    as_json: bool = common.json_option(),
    force: bool = common.force_option("Replace an existing --plot file."),
) -> None:
    """Parity between two models/bundles/runtimes: teacher-forced per-step divergence, answers, halting.

    The teacher-forced part runs every step; the free-running answers halt as in solve (each model at its own
    calibrated threshold unless --threshold is given), or run every step with --no-halt."""
    from trm_edge.puzzles.examples import read_examples
    from trm_edge.runtimes.parity import free_running, teacher_forced
    from trm_edge.runtimes.solver import Solver

    common.check_outputs(plot, force=force)
    a = common.open_model(model_a, runtime_a)
    b = common.open_model(model_b or model_a, runtime_b)
    examples = read_examples(str(data), split, config=a.config, task=a.task,
                             identifiers=a.source.identifiers()).head(limit)
    steps = max_steps or a.config.halt_max_steps
    if teacher_limit is not None and teacher_limit < 0:
        raise TrmEdgeError(f"--teacher-forced-limit {teacher_limit} must be at least 0")
    forced = examples.head(teacher_limit)
    if plot is not None and not len(forced):
        raise TrmEdgeError("--plot draws the teacher-forced divergence: give --teacher-forced-limit above 0")
    if plot is not None:
        from trm_edge.commands.plots import require_matplotlib

        require_matplotlib()
    with a, b, progress() as bar:
        task = bar.add_task("teacher-forced", total=len(forced) * steps)
        per_step = teacher_forced(a, b, forced, steps=steps, batch_size=batch, threshold=threshold,
                                  on_step=lambda k: bar.advance(task, k)) if len(forced) else []
        runs = []
        for rt in (a, b):
            solver = Solver(rt, batch_size=batch, max_steps=steps, halt=halt, threshold=threshold)
            runs.append(solver.run(examples.inputs, examples.puzzle_identifiers))
        answers = free_running(runs[0], runs[1], examples).to_dict()
        report = {"a": a.describe(), "b": b.describe(), "count": len(examples), "steps": steps, "halt": halt,
                  "teacher_forced_count": len(forced), "teacher_forced": [r.to_dict() for r in per_step],
                  "free_running": answers}
    if plot is not None:
        from trm_edge.commands.plots import compare_plot

        compare_plot(per_step, plot, title=f"{a.name} vs {b.name}")
        report["plot"] = str(plot)
    if as_json:
        print_json(report)
        return
    from rich.table import Table

    table = Table(title=f"teacher-forced: A={a.name} ({a.source.path}) vs B={b.name} ({b.source.path})")
    for col in ("step", "logits max abs", "max rel", "mean abs", "argmax agree", "q_halt max abs", "halt agree"):
        table.add_column(col, justify="right")
    for r in per_step:
        table.add_row(str(r.step), f"{r.logits_max_abs:.2e}", f"{r.logits_max_rel:.2e}", f"{r.logits_mean_abs:.2e}",
                      f"{r.argmax_agreement:.4f}", f"{r.q_halt_max_abs:.2e}", f"{r.halt_agreement:.4f}")
    if per_step:
        console.print(table)
    summary = Table(title="free-running answers", show_header=False)
    for key, value in answers.items():
        summary.add_row(key, ", ".join(common.fmt(v) for v in value) if isinstance(value, list) else common.fmt(value))
    console.print(summary)
