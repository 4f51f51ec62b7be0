"""The official TRM on-disk dataset format: read, check, write (atomically).

Layout (what the official ``PuzzleDataset`` loader reads)::

    DIR/identifiers.json                    puzzle identifier id -> name (0 is "<blank>")
    DIR/{train,test}/dataset.json           DatasetMetadata
    DIR/{train,test}/all__inputs.npy        [N, seq_len] tokens (uint8 when the vocabulary fits)
    DIR/{train,test}/all__labels.npy        [N, seq_len]
    DIR/{train,test}/all__puzzle_identifiers.npy  [P] int32
    DIR/{train,test}/all__puzzle_indices.npy      [P+1] int32: examples of puzzle p are
                                                  puzzle_indices[p]:puzzle_indices[p+1]
    DIR/{train,test}/all__group_indices.npy       [G+1] int32: puzzles of group g (a puzzle and
                                                  its augmentations) are group_indices[g]:[g+1]

trm-edge adds files the official loader ignores: ``DIR/recipe.json`` (how a generated dataset was
drawn, so that fresh puzzles can be drawn from the same distribution) and per-example extras
``DIR/{split}/all__<name>.npy`` such as ``ratings`` (Sudoku difficulty).

``total_puzzles`` is written as P and ``mean_puzzle_examples`` as N / P (the official ARC builder's
definitions; its Sudoku and Maze builders write the number of groups instead, so neither is checked
on read).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from trm_edge.errors import DatasetError, choices
from trm_edge.io import atomic_directory, check_space

SPLITS = ("train", "test")
FIELDS = ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices")
METADATA_FILE = "dataset.json"
IDENTIFIERS_FILE = "identifiers.json"
RECIPE_FILE = "recipe.json"
BLANK_IDENTIFIER = "<blank>"


@dataclass
class DatasetMetadata:
    """``dataset.json``, field for field."""

    pad_id: int
    ignore_label_id: int | None
    blank_identifier_id: int
    vocab_size: int
    seq_len: int
    num_puzzle_identifiers: int
    total_groups: int
    mean_puzzle_examples: float
    total_puzzles: int | None  # absent from datasets built by the HRM-era code
    sets: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, where: str = "dataset.json") -> DatasetMetadata:
        if not isinstance(values, dict):
            raise DatasetError(f"{where}: expected a JSON object, got {type(values).__name__}")
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in values and n != "total_puzzles"]
        if missing:
            raise DatasetError(f"{where}: missing field(s) {choices(missing)}")
        return cls(**{n: values.get(n) for n in names})


@dataclass
class Split:
    """One split of a dataset (one set, normally "all"); see the module docstring for semantics.

    Arrays read back are int32 (``read_split(..., mmap=True)`` keeps the stored dtype of inputs and
    labels; builders may hold them as uint8). ``extras`` holds
    per-example arrays (``[N]``) stored beside the official files.
    """

    metadata: DatasetMetadata
    inputs: np.ndarray
    labels: np.ndarray
    puzzle_identifiers: np.ndarray
    puzzle_indices: np.ndarray
    group_indices: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_examples(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def num_puzzles(self) -> int:
        return int(self.puzzle_indices.shape[0]) - 1

    @property
    def num_groups(self) -> int:
        return int(self.group_indices.shape[0]) - 1

    @classmethod
    def from_arrays(cls, inputs: np.ndarray, labels: np.ndarray, *, puzzle_identifiers: np.ndarray,
                    puzzle_indices: np.ndarray, group_indices: np.ndarray, vocab_size: int,
                    num_puzzle_identifiers: int = 1, extras: dict[str, np.ndarray] | None = None) -> Split:
        """A split whose metadata is derived from the arrays (PAD 0, ignore label 0, blank id 0)."""
        inputs, labels = np.asarray(inputs), np.asarray(labels)  # builders pass uint8 to save memory
        puzzles = len(puzzle_indices) - 1
        metadata = DatasetMetadata(
            pad_id=0, ignore_label_id=0, blank_identifier_id=0, vocab_size=vocab_size,
            seq_len=int(inputs.shape[1]), num_puzzle_identifiers=num_puzzle_identifiers,
            total_groups=len(group_indices) - 1,
            mean_puzzle_examples=float(inputs.shape[0] / puzzles) if puzzles else 0.0,
            total_puzzles=puzzles, sets=["all"])
        split = cls(metadata, inputs, labels, np.asarray(puzzle_identifiers, dtype=np.int32),
                    np.asarray(puzzle_indices, dtype=np.int32), np.asarray(group_indices, dtype=np.int32),
                    dict(extras or {}))
        split.check()
        return split

    @classmethod
    def single_examples(cls, inputs: np.ndarray, labels: np.ndarray, *, group_size: int, vocab_size: int,
                        extras: dict[str, np.ndarray] | None = None) -> Split:
        """One example per puzzle, groups of ``group_size`` consecutive puzzles (a puzzle then its
        augmentations), all with the blank identifier: the official Sudoku and Maze layout."""
        n = len(inputs)
        if group_size < 1 or n % group_size:
            raise DatasetError(f"{n} examples do not form groups of {group_size}")
        return cls.from_arrays(inputs, labels, puzzle_identifiers=np.zeros(n, np.int32),
                               puzzle_indices=np.arange(n + 1), group_indices=np.arange(0, n + 1, group_size),
                               vocab_size=vocab_size, extras=extras)

    def check(self, *, where: str = "split", values: bool = True) -> None:
        """Raise DatasetError on the first inconsistency between the arrays and the metadata."""
        meta = self.metadata
        if self.inputs.ndim != 2 or self.inputs.shape[1] != meta.seq_len:
            raise DatasetError(f"{where}: inputs have shape {self.inputs.shape}, expected [N, {meta.seq_len}]")
        if self.labels.shape != self.inputs.shape:
            raise DatasetError(f"{where}: labels have shape {self.labels.shape}, inputs {self.inputs.shape}")
        _check_offsets(self.puzzle_indices, self.num_examples, f"{where}: puzzle_indices", "examples")
        _check_offsets(self.group_indices, self.num_puzzles, f"{where}: group_indices", "puzzles")
        if self.puzzle_identifiers.shape != (self.num_puzzles,):
            raise DatasetError(f"{where}: puzzle_identifiers has shape {self.puzzle_identifiers.shape}, "
                               f"expected [{self.num_puzzles}] (one per puzzle)")
        if meta.total_groups != self.num_groups:
            raise DatasetError(f"{where}: dataset.json says total_groups={meta.total_groups}, "
                               f"group_indices hold {self.num_groups}")
        for name, extra in self.extras.items():
            if extra.shape[:1] != (self.num_examples,):
                raise DatasetError(f"{where}: extra {name!r} has shape {extra.shape}, expected [{self.num_examples}]")
        if not values or not self.num_examples:
            return
        ids = self.puzzle_identifiers
        if ids.size and (ids.min() < 0 or ids.max() >= meta.num_puzzle_identifiers):
            raise DatasetError(f"{where}: puzzle identifiers outside 0-{meta.num_puzzle_identifiers - 1}")
        for name, array in (("inputs", self.inputs), ("labels", self.labels)):
            low, high = int(array.min()), int(array.max())
            if low < 0 or high >= meta.vocab_size:
                raise DatasetError(f"{where}: {name} hold tokens {low}-{high}, outside the vocabulary "
                                   f"0-{meta.vocab_size - 1}")


def _check_offsets(offsets: np.ndarray, total: int, where: str, items: str) -> None:
    if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != total:
        raise DatasetError(f"{where} must start at 0 and end at the number of {items} ({total})")
    if offsets.size > 1 and (np.diff(offsets.astype(np.int64)) <= 0).any():
        raise DatasetError(f"{where} must be strictly increasing (every entry needs at least one of its {items})")


# ---------------------------------------------------------------------------------------------
# Reading


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{str(path.parent.parent)!r} is not a dataset: {what} {str(path)!r} is missing") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read {str(path)!r}: {error}") from None


def _load_array(path: Path, *, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise DatasetError(f"dataset file {str(path)!r} is missing") from None
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot read {str(path)!r}: {error}") from None


def read_split(directory: str | os.PathLike, split: str = "train", set_name: str = "all", *,
               mmap: bool = False) -> Split:
    """Read and check one split. ``mmap`` memory-maps inputs and labels (stored dtype, no value scan)."""
    root = Path(directory)
    if not root.is_dir():
        raise DatasetError(f"dataset directory {str(root)!r} does not exist")
    if split not in SPLITS and not (root / split).is_dir():
        raise DatasetError(f"unknown split {split!r}; valid: {choices(SPLITS)}")
    where = f"{root / split}"
    metadata = DatasetMetadata.from_dict(_load_json(root / split / METADATA_FILE, "metadata"),
                                         where=str(root / split / METADATA_FILE))
    if set_name not in metadata.sets:
        raise DatasetError(f"{where}: no set {set_name!r}; sets: {choices(metadata.sets)}")
    arrays = {}
    for name in FIELDS:
        array = _load_array(root / split / f"{set_name}__{name}.npy", mmap=mmap and name in ("inputs", "labels"))
        arrays[name] = array if mmap and name in ("inputs", "labels") else array.astype(np.int32, copy=False)
    extras = {}
    prefix = f"{set_name}__"
    for path in sorted((root / split).glob(f"{prefix}*.npy")):
        name = path.stem[len(prefix):]
        if name not in FIELDS:
            extras[name] = _load_array(path, mmap=False)
    result = Split(metadata, **arrays, extras=extras)
    if result.metadata.total_puzzles is None:
        result.metadata.total_puzzles = result.num_puzzles
    result.check(where=where, values=not mmap)
    return result


def read_identifiers(path: str | os.PathLike) -> list[str]:
    """The identifier names (index = identifier) of a dataset directory, or of an identifiers.json file."""
    file = Path(path) / IDENTIFIERS_FILE if Path(path).is_dir() else Path(path)
    values = _load_json(file, "identifier list")
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise DatasetError(f"{str(file)!r} is not a list of names")
    return values


def read_recipe(directory: str | os.PathLike) -> dict | None:
    """The generator recipe of a dataset (``{"task", "options", "train", "test", "aug", "seed"}``),
    or None for a dataset that has none (official or imported data)."""
    path = Path(directory) / RECIPE_FILE
    if not path.exists():
        return None
    recipe = _load_json(path, "recipe")
    if not isinstance(recipe, dict) or "task" not in recipe:
        raise DatasetError(f"{str(path)!r} is not a recipe (a JSON object with a 'task')")
    return recipe


def dataset_task(recipe: dict | None, vocab_size: int | None) -> str | None:
    """The task a dataset holds: its recipe's, else (official data has no recipe) the task whose token vocabulary
    has its size; None when neither tells."""
    if recipe is not None:
        return str(recipe["task"])
    from trm_edge.config import PRESETS

    task_of_vocab = {p.model.vocab_size: p.task for p in PRESETS.values()}
    return task_of_vocab.get(int(vocab_size)) if vocab_size is not None else None


def check_dataset_task(directory: str | os.PathLike, task: str | None, vocab_size: int | None, *,
                       wanted: str) -> None:
    """Refuse a dataset of another task than ``wanted`` (a Sudoku model on mazes scores 0.0 without a word)."""
    found = dataset_task(read_recipe(directory), vocab_size) if task is None else task
    if found is not None and found != wanted:
        raise DatasetError(f"{str(directory)!r} holds {found} puzzles, but the model solves {wanted}; give a "
                           f"{wanted} dataset")


# ---------------------------------------------------------------------------------------------
# Writing


def _stored(array: np.ndarray, vocab_size: int) -> np.ndarray:
    """Tokens as the official builders store them: uint8 when the vocabulary fits."""
    return np.asarray(array, dtype=np.uint8 if vocab_size <= 256 else np.int32)


def _arrays(split: Split) -> dict[str, np.ndarray]:
    """A split's arrays as they are stored, by file key (``all__KEY.npy``)."""
    vocab = split.metadata.vocab_size
    stored = {"inputs": _stored(split.inputs, vocab), "labels": _stored(split.labels, vocab)}
    stored.update((name, np.asarray(getattr(split, name), dtype=np.int32)) for name in FIELDS[2:])
    stored.update((name, np.asarray(values)) for name, values in split.extras.items())
    return stored


def write_dataset(directory: str | os.PathLike, splits: dict[str, Split], identifiers: list[str], *,
                  recipe: dict | None = None, files: dict[str, Any] | None = None, force: bool = False) -> Path:
    """Write ``splits`` (``{"train": ..., "test": ...}``) in the official layout, atomically: the
    directory appears complete or not at all. ``files`` adds JSON files (relative path -> object),
    e.g. ARC's ``test_puzzles.json``."""
    if not splits:
        raise DatasetError("nothing to write: no splits")
    for name, split in splits.items():
        if name not in SPLITS:
            raise DatasetError(f"unknown split {name!r}; valid: {choices(SPLITS)}")
        split.check(where=f"{name} split")
        if split.num_examples == 0:
            raise DatasetError(f"the {name} split is empty")
        if split.metadata.num_puzzle_identifiers != len(identifiers):
            raise DatasetError(f"{name} split: num_puzzle_identifiers={split.metadata.num_puzzle_identifiers} "
                               f"but {len(identifiers)} identifier names were given")
    with atomic_directory(directory, force=force) as tmp:
        arrays = {name: _arrays(split) for name, split in splits.items()}
        check_space(directory, sum(a.nbytes for stored in arrays.values() for a in stored.values()))
        for name, split in splits.items():
            out = tmp / name
            out.mkdir()
            (out / METADATA_FILE).write_text(json.dumps(split.metadata.to_dict()) + "\n")
            for key, array in arrays[name].items():
                np.save(out / f"all__{key}.npy", array)
        (tmp / IDENTIFIERS_FILE).write_text(json.dumps(identifiers) + "\n")
        if recipe is not None:
            (tmp / RECIPE_FILE).write_text(json.dumps(recipe, indent=2) + "\n")
        for relative, value in (files or {}).items():
            (tmp / relative).write_text(json.dumps(value) + "\n")
    return Path(directory)
