"""What ``trm-edge data show`` reports: sizes, difficulty histograms, a few puzzles rendered.

Difficulty is measured on the first example of every group (the puzzle, not its augmentations):
Sudoku by rating (backtracks, from the stored ``ratings`` or, for datasets without them, computed
on a sample) and givens, Maze by shortest-path length, ARC by examples per puzzle.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trm_edge.errors import PuzzleError
from trm_edge.puzzles import get_task
from trm_edge.puzzles.dataset import SPLITS, Split, read_identifiers, read_recipe, read_split

RATED_SAMPLE = 1000  # puzzles rated by the solver when a Sudoku dataset stores no ratings
RATING_EDGES = (0, 1, 2, 3, 5, 9, 17, 33, 65)


def infer_task(vocab_size: int, seq_len: int) -> str | None:
    """The task of a dataset without a recipe, from its vocabulary and sequence length."""
    if vocab_size == 11 and seq_len == 81:
        return "sudoku"
    if vocab_size == 6:
        return "maze"
    if vocab_size == 12 and seq_len == 900:
        return "arc"
    return None


def histogram(values: np.ndarray, edges: Sequence[int], *, open_end: bool = True) -> list[tuple[str, int]]:
    """Counts per bin ``[edges[i], edges[i+1])`` (labels like ``7``, ``3-4``), plus a last bin
    ``edges[-1]+`` when ``open_end``."""
    values = np.asarray(values)
    bounds = [*edges, None] if open_end else list(edges)
    rows = []
    for low, high in zip(bounds, bounds[1:]):  # noqa: B905
        inside = (values >= low) & (values < high) if high is not None else values >= low
        label = f"{low}+" if high is None else (str(low) if high == low + 1 else f"{low}-{high - 1}")
        rows.append((label, int(inside.sum())))
    return rows


def linear_histogram(values: np.ndarray, *, max_bins: int = 20) -> list[tuple[str, int]]:
    """At most ``max_bins`` equal integer bins from the smallest to the largest value."""
    low, high = int(np.min(values)), int(np.max(values))
    width = max(1, -(-(high - low + 1) // max_bins))
    return histogram(values, list(range(low, high + width + 1, width))[: -(-(high - low + 1) // width) + 1],
                     open_end=False)


def _group_heads(split: Split) -> np.ndarray:
    """Example index of the first example of every group's first puzzle."""
    return np.asarray(split.puzzle_indices)[np.asarray(split.group_indices)[:-1]]


def _difficulty(task: str | None, split: Split) -> dict[str, list[tuple[str, int]]]:
    heads = _group_heads(split)
    if task == "sudoku":
        inputs = np.asarray(split.inputs[heads])
        givens = (inputs > 1).sum(axis=1)
        if "ratings" in split.extras:
            ratings, label = split.extras["ratings"][heads], "rating (backtracks)"
        else:
            from trm_edge.puzzles import sudoku

            sample = inputs[:RATED_SAMPLE]
            ratings = np.array([sudoku.rating(sudoku.from_tokens(t)) for t in sample])
            label = f"rating (backtracks, first {len(sample)} puzzles)"
        return {label: histogram(ratings, RATING_EDGES), "givens": linear_histogram(givens)}
    if task == "maze":
        from trm_edge.puzzles.maze import PATH

        lengths = (np.asarray(split.labels[heads]) == PATH).sum(axis=1) + 1
        return {"shortest path (moves)": linear_histogram(lengths, max_bins=15)}
    if task == "arc":
        per_puzzle = np.diff(np.asarray(split.puzzle_indices))
        return {"examples per puzzle": linear_histogram(per_puzzle)}
    return {}


def _show(task: Any, tokens: np.ndarray) -> str:
    try:
        if task.NAME == "arc":
            return task.render(task.find_grid(tokens))
        return task.render(task.from_tokens(tokens))
    except PuzzleError:
        return task.decode(tokens)


def describe(directory: str | os.PathLike, *, samples: int = 3, split: str = "test") -> dict[str, Any]:
    """A JSON-able description of a dataset directory."""
    root = Path(directory)
    recipe = read_recipe(root)
    splits = {name: read_split(root, name, mmap=True) for name in SPLITS if (root / name).is_dir()}
    if not splits:
        read_split(root, "train")  # raises the clear "not a dataset" error
    first = next(iter(splits.values())).metadata
    task_name = (recipe or {}).get("task") or infer_task(first.vocab_size, first.seq_len)
    report: dict[str, Any] = {
        "directory": str(root),
        "task": task_name,
        "recipe": recipe,
        "splits": {name: {"examples": s.num_examples, "puzzles": s.num_puzzles, "groups": s.num_groups,
                          "seq_len": s.metadata.seq_len, "vocab_size": s.metadata.vocab_size,
                          "identifiers": s.metadata.num_puzzle_identifiers} for name, s in splits.items()},
        "difficulty": {name: _difficulty(task_name, s) for name, s in splits.items()},
        "samples": [],
    }
    shown = splits.get(split) or next(iter(splits.values()))
    if task_name is not None and samples > 0:
        task = get_task(task_name)
        names = read_identifiers(root) if (root / "identifiers.json").exists() else []
        for group, head in enumerate(_group_heads(shown)[:samples]):
            puzzle = int(np.asarray(shown.group_indices)[group])
            identifier = int(shown.puzzle_identifiers[puzzle])
            name = names[identifier] if identifier < len(names) and identifier else f"puzzle {puzzle}"
            if "ratings" in shown.extras:
                name += f" (rating {int(shown.extras['ratings'][head])})"
            report["samples"].append({"name": name, "puzzle": _show(task, np.asarray(shown.inputs[head])),
                                      "answer": _show(task, np.asarray(shown.labels[head]))})
    return report
