"""Labelled puzzles as the solver takes them: token arrays, labels, puzzle identifiers, read from a dataset split
in the official layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trm_edge.errors import DatasetError


@dataclass
class Examples:
    """Puzzles with optional labels, as the solver takes them."""

    inputs: np.ndarray  # [N, seq_len] int32
    labels: np.ndarray | None = None  # [N, seq_len]
    puzzle_identifiers: np.ndarray | None = None  # [N]
    ignore_label_id: int | None = 0

    def __len__(self) -> int:
        return len(self.inputs)

    def head(self, n: int | None) -> Examples:
        if n is None:
            return self
        return Examples(self.inputs[:n], None if self.labels is None else self.labels[:n],
                        None if self.puzzle_identifiers is None else self.puzzle_identifiers[:n],
                        self.ignore_label_id)


def read_examples(data_dir: str, split: str, *, config: Any = None, task: str | None = None,
                  identifiers: dict[str, list] | None = None) -> Examples:
    """A split of a dataset in the official layout, one row per example (identifiers expanded). With the model's
    ``config``, ``task`` and puzzle ``identifiers`` (``{"ids", "names"}``), a dataset the model cannot solve is
    refused before any work (other lengths, vocabulary, task, puzzle identifiers it has no embedding for)."""
    from trm_edge.puzzles.dataset import check_dataset_task, read_split

    s = read_split(data_dir, split)
    inputs = np.asarray(s.inputs)
    labels = np.asarray(s.labels)
    ids = None
    if getattr(s, "puzzle_identifiers", None) is not None and getattr(s, "puzzle_indices", None) is not None:
        per_puzzle = np.asarray(s.puzzle_identifiers)
        counts = np.diff(np.asarray(s.puzzle_indices))
        if counts.sum() == len(inputs) and len(counts) == len(per_puzzle):
            ids = np.repeat(per_puzzle, counts)
    metadata = getattr(s, "metadata", None)
    ignore = _meta(metadata, "ignore_label_id", 0)
    if config is not None:
        if inputs.ndim != 2 or inputs.shape[1] != config.seq_len:
            raise DatasetError(f"{data_dir!r} {split}: puzzles of length {inputs.shape[-1]}; the model expects "
                               f"{config.seq_len}")
        vocab = _meta(metadata, "vocab_size", None)
        if vocab is not None and int(vocab) > config.vocab_size:
            raise DatasetError(f"{data_dir!r}: vocabulary of {vocab} tokens; the model has {config.vocab_size}")
    if task is not None:
        vocab = _meta(metadata, "vocab_size", None)
        check_dataset_task(data_dir, None, None if vocab is None else int(vocab), wanted=task)
    if config is not None and ids is not None and config.puzzle_emb_ndim > 0:
        check_identifiers(data_dir, ids, config.num_puzzle_identifiers, identifiers)
    return Examples(inputs.astype(np.int32), labels, ids, None if ignore is None else int(ignore))


def check_identifiers(data_dir: str, ids: np.ndarray, count: int, model: dict[str, list] | None) -> None:
    """The dataset's puzzle identifiers are ones the model has an embedding for, under the same names: a model of
    another dataset would look its puzzles up in the wrong rows. The error names the counts and one missing name."""
    from trm_edge.puzzles.dataset import IDENTIFIERS_FILE, read_identifiers

    used = np.unique(ids)
    names = read_identifiers(data_dir) if (Path(data_dir) / IDENTIFIERS_FILE).is_file() else None
    named = {int(i): n for i, n in zip(model["ids"], model["names"])} if model else {}  # noqa: B905
    for identifier in used.tolist():
        name = names[identifier] if names is not None and identifier < len(names) else None
        if identifier >= count or (name is not None and named and named.get(identifier) not in (None, name)):
            label = f" ({name!r})" if name is not None else ""
            raise DatasetError(f"{data_dir!r} uses {len(used)} puzzle identifiers, and the model lacks identifier "
                               f"{identifier}{label}: it has {count}, from another dataset; give the dataset the "
                               "model was trained on, or a model trained on this one")


def _meta(metadata: Any, key: str, default: Any) -> Any:
    if metadata is None:
        return default
    if isinstance(metadata, dict):
        return metadata.get(key, default)
    return getattr(metadata, key, default)


def random_inputs(config: Any, n: int, *, seed: int = 0) -> np.ndarray:
    """Random tokens of the model's vocabulary, PAD (0) excluded: stand-in puzzles for benchmarks."""
    rng = np.random.default_rng(seed)
    return rng.integers(1, max(2, config.vocab_size), size=(n, config.seq_len), dtype=np.int32)
