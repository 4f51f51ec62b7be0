"""CLI command: solve (puzzles as text, a file of them, or ARC task files -> answers; rich grids or ``--json``).

Torch-free on a bundle: numpy and the runtime are imported inside the command."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, List

import typer

from trm_edge.commands import common
from trm_edge.commands.output import console, print_json
from trm_edge.errors import PuzzleError, choices
from trm_edge.io import write_json_atomic
from trm_edge.progress import progress


def register(app: typer.Typer) -> None:
    """Add this command to the app."""
    app.command()(solve)


def solve(
    puzzles: List[str] = typer.Argument(None, help="Puzzles as text (sudoku: 81 characters; '.', '0' or '-' for "
                                        "blanks). A puzzle that begins with '-' goes after '--': "
                                        "trm-edge solve -- -PUZZLE. For an ARC model: task files (one task's "
                                        "JSON, or a *_challenges.json)."),
    file: Path = typer.Option(None, "--file", "-f", help="A file of puzzles (blank-line separated; '-' for stdin)."),
    model: str = typer.Option(None, "--model", "-m", help=common.MODEL_HELP),
    runtime: str = common.runtime_option(),
    max_steps: int = common.max_steps_option(),
    halt: bool = common.halt_option(),
    threshold: float = common.threshold_option(),
    batch: int = common.batch_option(),
    threads: int = common.threads_option(),
    keep_going: bool = typer.Option(False, "--keep-going", help="Solve the good puzzles when some are malformed."),
    task_ids: List[str] = typer.Option(None, "--task", help="ARC: solve only this task of the files (repeatable)."),
    augmentations: int = typer.Option(None, "--augmentations", help="ARC: vote over at most this many versions of "
                                      "each test input (default: every version the model has an embedding for)."),
    submission: Path = typer.Option(None, "--submission", help="ARC: write the ARC Prize submission (two attempts "
                                    "per test input) to this JSON file."),
    as_json: bool = common.json_option("One JSON object per puzzle on stdout (ARC: the submission object)."),
    force: bool = common.force_option("Replace an existing --submission file."),
) -> None:
    """Solve puzzles with a bundle or checkpoint; print the grids, or JSON with --json.

    An ARC model solves tasks: each test input under every augmentation it has a puzzle embedding for,
    predictions mapped back and voted on as the official evaluator does, two attempts per test input."""
    from trm_edge.puzzles.codec import get_codec
    from trm_edge.puzzles.reading import first_error, read_puzzles
    from trm_edge.runtimes.sources import open_source

    if not puzzles and file is None:
        raise PuzzleError("no puzzles: give PUZZLE arguments or --file F")
    common.check_outputs(submission, force=force)
    source = open_source(common.resolve_model(model))
    arc_only = {"--task": task_ids, "--augmentations": augmentations, "--submission": submission}
    if source.task == "arc":
        _solve_arc(source, [*(puzzles or []), *([str(file)] if file else [])], task_ids=task_ids or [],
                   augmentations=augmentations, submission=submission, force=force, runtime=runtime, threads=threads,
                   solver_options={"batch_size": batch, "max_steps": max_steps, "halt": halt, "threshold": threshold},
                   as_json=as_json)
        return
    if given := [flag for flag, value in arc_only.items() if value]:
        raise PuzzleError(f"{', '.join(given)}: only for ARC models; this model's task is {source.task!r}")
    codec = get_codec(source.task)
    parsed, errors = read_puzzles(list(puzzles or []), file, codec, source.config.seq_len)
    if errors and not keep_going:
        raise first_error(errors)
    for label, message in errors:
        print(f"error: {label}: {message}", file=sys.stderr)
        if as_json:
            print_json({"puzzle": label, "error": message})
    if parsed:
        import numpy as np

        from trm_edge.runtimes.solver import Solver, answer

        rt = common.open_model(source, runtime, threads=threads)
        inputs = np.stack([tokens for _, tokens in parsed])
        printer = InOrder(lambda i, out: _report(parsed[i], answer(out, i, inputs[i], codec), codec, as_json=as_json),
                          len(parsed))
        with rt, progress(disable=len(parsed) < 32) as bar:
            task = bar.add_task("solving", total=len(parsed))
            Solver(rt, batch_size=batch, max_steps=max_steps, halt=halt, threshold=threshold).run(
                inputs, on_progress=lambda k: bar.advance(task, k), on_finished=printer.finished)
    if errors:
        raise typer.Exit(2)


def _solve_arc(source, paths: list[str], *, task_ids: list[str], augmentations: int | None, submission: Path | None,
               force: bool, runtime: str | None, threads: int | None, solver_options: dict[str, Any],
               as_json: bool) -> None:
    from trm_edge.puzzles import arc
    from trm_edge.runtimes.arc_solve import TaskEmbeddings, plan_tasks, solve_plans
    from trm_edge.runtimes.solver import Solver

    if augmentations is not None and augmentations < 1:
        raise PuzzleError(f"--augmentations {augmentations} must be at least 1")
    tasks: dict[str, arc.ArcTask] = {}
    for path in paths:
        tasks.update(arc.load_tasks(path))
    if task_ids:
        if missing := [t for t in task_ids if t not in tasks]:
            raise PuzzleError(f"task {missing[0]!r} is not in {', '.join(paths)} ({len(tasks)} task(s): "
                              f"{choices(sorted(tasks)[:8])})")
        tasks = {t: tasks[t] for t in dict.fromkeys(task_ids)}
    rt = common.open_model(source, runtime, threads=threads)
    embeddings = TaskEmbeddings.of(rt)
    plans = plan_tasks(embeddings, list(tasks.values()), augmentations)
    solver = Solver(rt, **solver_options)
    with rt, progress() as bar:
        task = bar.add_task("solving", total=sum(len(plan.identifiers) for plan in plans))
        attempts = solve_plans(solver, embeddings, plans, on_progress=lambda k: bar.advance(task, k))
    if submission is not None:
        write_json_atomic(submission, attempts, force=force)
    if as_json:
        print_json(attempts)
        return
    for plan in plans:
        for i, (example, entry) in enumerate(zip(plan.task.test, attempts[plan.task.name])):  # noqa: B905
            _print_grids(f"{plan.task.name} test {i} ({len(plan.identifiers) // len(plan.task.test)} versions voted)",
                         {"input": example.input, **entry})
    if submission is not None:
        console.print(f"wrote {submission}")


class InOrder:
    """Answers printed as soon as they and every answer before them are decided: streamed (a puzzle that halts at
    step 2 is printed then, not after the last puzzle), and still in the order of the input."""

    def __init__(self, emit: Callable[[int, Any], None], count: int) -> None:
        self.emit, self.done, self.next = emit, [False] * count, 0

    def finished(self, indices: Any, output: Any) -> None:
        for i in indices:
            self.done[int(i)] = True
        while self.next < len(self.done) and self.done[self.next]:
            self.emit(self.next, output)
            self.next += 1


def _report(item: tuple[str, Any], answer: Any, codec: Any, *, as_json: bool) -> None:
    label, tokens = item
    if as_json:
        print_json({"puzzle": label, **answer.to_json()})
    else:
        _print_answer(label, codec, tokens, answer)


def _print_grids(title: str, grids: dict[str, Any]) -> None:
    import numpy as np
    from rich.table import Table

    from trm_edge.puzzles import arc

    table = Table(title=title, title_justify="left")
    for name in grids:
        table.add_column(name.replace("_", " "))
    table.add_row(*(arc.format_grid(np.asarray(grid, dtype=np.uint8)) for grid in grids.values()))
    console.print(table)


def _print_answer(label: str, codec, tokens, answer) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=label, show_lines=False, title_justify="left")
    table.add_column("puzzle")
    table.add_column("answer")
    table.add_row(codec.render(tokens), codec.render(answer.tokens))
    mark = "[green]valid ✓[/]" if answer.valid else "[red]not valid ✗[/]"
    stop = "halted" if answer.halted else "max steps"
    console.print(table)
    console.print(f"{mark}  steps {answer.steps} ({stop})  confidence {answer.confidence:.3f}")
    if answer.problem:
        console.print(f"why: {escape(answer.problem)}")
    console.print(answer.solution, markup=False, highlight=False, soft_wrap=True)
