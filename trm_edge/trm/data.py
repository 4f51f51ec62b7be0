"""Training data for the trainer: a resumable example sampler over the official dataset layout, the
batch-slot refill the ACT carry needs, and on-the-fly augmentation.

A split (``trm_edge.puzzles.dataset.Split`` or anything with the same attributes) holds numpy
``inputs``/``labels`` [N, seq_len], ``puzzle_identifiers`` [P], ``puzzle_indices`` [P+1] (examples of
each puzzle), ``group_indices`` [G+1] (puzzles of each group) and ``metadata``. One epoch visits every
group once in a random order, picks one random puzzle of it and takes all that puzzle's examples (the
official sampler's semantics). Ranks take interleaved shares of each epoch. The sampler's whole state is
``(epoch, position)``: each epoch's order is recomputed from the seed, so a resumed run sees the same data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from trm_edge.errors import DatasetError
from trm_edge.trm.losses import IGNORE_LABEL_ID

Augment = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def meta(split: Any, key: str, default: Any = None) -> Any:
    """A metadata field of a split, whether metadata is an object or a dict."""
    metadata = split.metadata
    if isinstance(metadata, dict):
        return metadata.get(key, default)
    return getattr(metadata, key, default)


@dataclass
class ArraySplit:
    """A split held in memory (tests, tools); the same attributes as ``puzzles.dataset.Split``."""

    inputs: np.ndarray
    labels: np.ndarray
    puzzle_identifiers: np.ndarray
    puzzle_indices: np.ndarray
    group_indices: np.ndarray
    metadata: dict[str, Any]

    @classmethod
    def one_example_per_puzzle(cls, inputs: np.ndarray, labels: np.ndarray, *, vocab_size: int,
                               ignore_label_id: int | None = 0, pad_id: int = 0) -> ArraySplit:
        n = len(inputs)
        return cls(inputs.astype(np.int32), labels.astype(np.int32), np.zeros(n, np.int32),
                   np.arange(n + 1, dtype=np.int32), np.arange(n + 1, dtype=np.int32),
                   {"pad_id": pad_id, "ignore_label_id": ignore_label_id, "blank_identifier_id": 0,
                    "vocab_size": vocab_size, "seq_len": int(inputs.shape[1]), "num_puzzle_identifiers": 1,
                    "total_groups": n, "mean_puzzle_examples": 1.0, "total_puzzles": n, "sets": ["all"]})


def check_split(split: Any, name: str) -> None:
    """Raise DatasetError when a split's arrays are inconsistent."""
    n = len(split.inputs)
    if split.labels.shape != split.inputs.shape or split.inputs.ndim != 2 or n == 0:
        raise DatasetError(f"{name} split: inputs {split.inputs.shape} and labels {split.labels.shape} must be the "
                           "same non-empty [N, seq_len] shape")
    if int(split.puzzle_indices[-1]) != n or len(split.puzzle_indices) != len(split.puzzle_identifiers) + 1:
        raise DatasetError(f"{name} split: puzzle_indices do not cover the {n} examples")
    if int(split.group_indices[-1]) != len(split.puzzle_identifiers):
        raise DatasetError(f"{name} split: group_indices do not cover the {len(split.puzzle_identifiers)} puzzles")


def training_labels(labels: np.ndarray, ignore_label_id: int | None) -> np.ndarray:
    """Labels with the dataset's ignore id replaced by ``IGNORE_LABEL_ID`` (int64 for torch)."""
    labels = labels.astype(np.int64)
    if ignore_label_id is not None:
        labels[labels == ignore_label_id] = IGNORE_LABEL_ID
    return labels


class ExampleSampler:
    """Endless, resumable stream of (example index, puzzle index) for one rank."""

    def __init__(self, split: Any, *, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.puzzle_indices = np.asarray(split.puzzle_indices, dtype=np.int64)
        self.group_indices = np.asarray(split.group_indices, dtype=np.int64)
        groups = len(self.group_indices) - 1
        if groups < world_size:
            raise DatasetError(f"the training split has {groups} group(s), fewer than the {world_size} ranks")
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch, self.position = 0, 0
        self._cache: tuple[int, np.ndarray, np.ndarray] | None = None

    def _epoch_arrays(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1], self._cache[2]
        rng = np.random.default_rng([self.seed, epoch, 0x5A3])
        gi, pi = self.group_indices, self.puzzle_indices
        order = rng.permutation(len(gi) - 1)
        puzzles = gi[order] + (rng.random(order.size) * (gi[order + 1] - gi[order])).astype(np.int64)
        sizes = pi[puzzles + 1] - pi[puzzles]
        starts = np.repeat(pi[puzzles], sizes)
        offsets = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        examples, owners = starts + offsets, np.repeat(puzzles, sizes)
        examples, owners = examples[self.rank::self.world_size], owners[self.rank::self.world_size]
        self._cache = (epoch, examples, owners)
        return examples, owners

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The next ``n`` (example indices, puzzle indices), crossing epoch boundaries as needed."""
        out_e, out_p = [], []
        while n > 0:
            examples, owners = self._epoch_arrays(self.epoch)
            chunk = min(n, len(examples) - self.position)
            out_e.append(examples[self.position:self.position + chunk])
            out_p.append(owners[self.position:self.position + chunk])
            self.position += chunk
            n -= chunk
            if self.position >= len(examples):
                self.epoch, self.position = self.epoch + 1, 0
        if not out_e:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(out_e), np.concatenate(out_p)

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


class FreshSamples:
    """Draws fresh training samples for the halted batch slots: tokens, labels (ignore -> -100), puzzle ids."""

    def __init__(self, split: Any, *, seed: int, rank: int = 0, world_size: int = 1,
                 augment: Augment | None = None) -> None:
        self.split = split
        self.sampler = ExampleSampler(split, seed=seed, rank=rank, world_size=world_size)
        self.ignore_label_id = meta(split, "ignore_label_id")
        self.augment = augment
        self.seed, self.rank = seed, rank

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        epoch, position = self.sampler.epoch, self.sampler.position
        examples, puzzles = self.sampler.take(n)
        inputs = np.asarray(self.split.inputs[examples], dtype=np.int64)
        labels = np.asarray(self.split.labels[examples], dtype=np.int64)
        if self.augment is not None and n:
            rng = np.random.default_rng([self.seed, self.rank, epoch, position, 0xA06])
            inputs, labels = self.augment(inputs, labels, rng)
        ids = np.asarray(self.split.puzzle_identifiers, dtype=np.int64)[puzzles]
        return inputs, training_labels(labels, self.ignore_label_id), ids


# -- augmentation ---------------------------------------------------------------------------------

def sudoku_augment(inputs: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Validity-preserving Sudoku symmetries for a batch of [n, 81] token grids (official tokens: PAD 0,
    blank 1, digit d -> d+1): a digit relabelling, an optional transpose, band and stack permutations, row
    and column permutations inside bands/stacks. Inputs and labels get the same transform."""
    n = len(inputs)
    digit_map = np.tile(np.arange(11), (n, 1))
    digit_map[:, 2:] = 2 + rng.permuted(np.tile(np.arange(9), (n, 1)), axis=1)

    def line_order() -> np.ndarray:  # [n, 9]: a band permutation composed with in-band permutations
        bands = rng.permuted(np.tile(np.arange(3), (n, 1)), axis=1)
        inner = rng.permuted(np.tile(np.arange(3), (n, 3, 1)), axis=2)
        return (bands[:, :, None] * 3 + inner).reshape(n, 9)

    rows, cols = line_order(), line_order()
    transpose = rng.random(n) < 0.5
    cell = rows[:, :, None] * 9 + cols[:, None, :]  # [n, 9, 9] source cell of each destination cell
    cell = np.where(transpose[:, None, None], cell.transpose(0, 2, 1), cell).reshape(n, 81)

    def apply(grid: np.ndarray) -> np.ndarray:
        moved = np.take_along_axis(grid, cell, axis=1)
        valid = (moved >= 0) & (moved < 11)
        mapped = np.take_along_axis(digit_map, np.clip(moved, 0, 10), axis=1)
        return np.where(valid, mapped, moved)

    return apply(inputs), apply(labels)


AUGMENTATIONS: dict[str, Augment] = {"sudoku": sudoku_augment}


def augmentation_for(task: str, seq_len: int) -> Augment | None:
    """The on-the-fly augmentation of a task, when it has one that fits the data."""
    if task == "sudoku" and seq_len == 81:
        return AUGMENTATIONS["sudoku"]
    return None
