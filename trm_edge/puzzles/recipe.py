"""Data recipes: how a dataset was drawn (``recipe.json`` beside it), so that fresh puzzles can be drawn from the
same distribution (see :mod:`trm_edge.puzzles.build`)::

    {"task": "sudoku", "options": {...}, "train": N, "test": M, "aug": K, "seed": S,
     "source": [...] (imports only), "trm_edge_version": "...", "stats": {...} (informational)}
"""

from __future__ import annotations

from typing import Any

from trm_edge.version import __version__

RECIPE_KEYS = ("task", "options", "train", "test", "aug", "seed")  # what every recipe holds


def make_recipe(task: str, options: dict[str, Any], *, train: int, test: int, aug: int, seed: int,
                source: list[str] | None = None, stats: dict | None = None) -> dict[str, Any]:
    """The recipe of a dataset built with these options, split sizes, augmentations and seed."""
    recipe: dict[str, Any] = {"task": task, "options": options, "train": train, "test": test, "aug": aug,
                              "seed": seed}
    if source:
        recipe["source"] = source
    recipe["trm_edge_version"] = __version__
    if stats:
        recipe["stats"] = stats
    return recipe
