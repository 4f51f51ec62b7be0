"""The official on-disk dataset format: write then read, what the official loader relies on, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trm_edge.errors import DatasetError, OutputExistsError
from trm_edge.puzzles import dataset
from trm_edge.puzzles.dataset import DatasetMetadata, Split, read_identifiers, read_recipe, read_split, write_dataset

# The fields of the official PuzzleDatasetMetadata (dataset/common.py of the TRM repository).
OFFICIAL_FIELDS = {"pad_id", "ignore_label_id", "blank_identifier_id", "vocab_size", "seq_len",
                   "num_puzzle_identifiers", "total_groups", "mean_puzzle_examples", "total_puzzles", "sets"}


def small_split(groups: int = 4, group_size: int = 3, seq_len: int = 81) -> Split:
    rng = np.random.default_rng(groups)
    n = groups * group_size
    return Split.single_examples(rng.integers(1, 11, (n, seq_len)).astype(np.uint8),
                                 rng.integers(2, 11, (n, seq_len)).astype(np.uint8), group_size=group_size,
                                 vocab_size=11, extras={"ratings": np.arange(n, dtype=np.int32)})


def test_write_then_read_round_trip(tmp_path):
    train, test = small_split(4, 3), small_split(2, 1)
    recipe = {"task": "sudoku", "options": {}, "train": 4, "test": 2, "aug": 2, "seed": 0}
    write_dataset(tmp_path / "d", {"train": train, "test": test}, ["<blank>"], recipe=recipe)
    for name, original in (("train", train), ("test", test)):
        back = read_split(tmp_path / "d", name)
        assert back.inputs.dtype == np.int32 and back.puzzle_indices.dtype == np.int32
        for field in dataset.FIELDS:
            assert np.array_equal(getattr(back, field), getattr(original, field)), field
        assert np.array_equal(back.extras["ratings"], original.extras["ratings"])
        assert back.metadata == original.metadata
    assert read_identifiers(tmp_path / "d") == ["<blank>"]
    assert read_recipe(tmp_path / "d") == recipe
    mapped = read_split(tmp_path / "d", "train", mmap=True)
    assert isinstance(mapped.inputs, np.memmap) and mapped.inputs.dtype == np.uint8


def test_layout_matches_what_the_official_loader_reads(tmp_path):
    write_dataset(tmp_path / "d", {"train": small_split(5, 4), "test": small_split(3, 1)}, ["<blank>"])
    for split in ("train", "test"):
        folder = tmp_path / "d" / split
        metadata = json.loads((folder / "dataset.json").read_text())
        assert set(metadata) == OFFICIAL_FIELDS and metadata["sets"] == ["all"]
        # What PuzzleDataset does: mmap inputs/labels, load the index arrays, sample groups -> puzzles.
        data = {name: np.load(folder / f"all__{name}.npy", mmap_mode="r" if name in ("inputs", "labels") else None)
                for name in dataset.FIELDS}
        assert data["inputs"].shape == (len(data["labels"]), metadata["seq_len"])
        assert data["inputs"].dtype == np.uint8  # as the official builders store tokens
        assert all(data[k].dtype == np.int32 for k in ("puzzle_identifiers", "puzzle_indices", "group_indices"))
        assert len(data["group_indices"]) - 1 == metadata["total_groups"]
        rng = np.random.default_rng(0)
        for group in range(metadata["total_groups"]):
            puzzle = rng.integers(data["group_indices"][group], data["group_indices"][group + 1])
            start, stop = data["puzzle_indices"][puzzle], data["puzzle_indices"][puzzle + 1]
            assert stop > start
            assert data["puzzle_identifiers"][puzzle] < metadata["num_puzzle_identifiers"]
        # test mode: the puzzle of every example by searchsorted, as _iter_test does
        owners = np.searchsorted(data["puzzle_indices"], np.arange(len(data["inputs"])), side="right") - 1
        assert owners.min() == 0 and owners.max() == len(data["puzzle_identifiers"]) - 1
    assert json.loads((tmp_path / "d" / "identifiers.json").read_text()) == ["<blank>"]


def test_metadata_of_datasets_without_total_puzzles(tmp_path):
    write_dataset(tmp_path / "d", {"train": small_split()}, ["<blank>"])
    path = tmp_path / "d" / "train" / "dataset.json"
    values = json.loads(path.read_text())
    del values["total_puzzles"]  # HRM-era datasets lack it
    path.write_text(json.dumps(values))
    assert read_split(tmp_path / "d").metadata.total_puzzles == 12
    with pytest.raises(DatasetError, match="missing field"):
        DatasetMetadata.from_dict({"pad_id": 0})


@pytest.mark.parametrize(("corrupt", "message"), [
    (lambda d: (d / "train" / "all__labels.npy").unlink(), "all__labels.npy' is missing"),
    (lambda d: np.save(d / "train" / "all__labels.npy", np.zeros((3, 81), np.uint8)), "labels have shape"),
    (lambda d: np.save(d / "train" / "all__inputs.npy", np.full((12, 81), 11, np.uint8)),
     "inputs hold tokens 11-11, outside the vocabulary 0-10"),
    (lambda d: np.save(d / "train" / "all__group_indices.npy", np.array([0, 3, 5], np.int32)),
     "group_indices must start at 0 and end at the number of puzzles"),
    (lambda d: np.save(d / "train" / "all__puzzle_indices.npy", np.array([0, 0, *range(2, 13)], np.int32)),
     "puzzle_indices must be strictly increasing"),
    (lambda d: np.save(d / "train" / "all__puzzle_identifiers.npy", np.ones(12, np.int32)),
     "puzzle identifiers outside 0-0"),
    (lambda d: (d / "train" / "all__inputs.npy").write_text("garbage"), "cannot read"),
    (lambda d: (d / "train" / "dataset.json").write_text("{"), "cannot read"),
    (lambda d: (d / "train" / "dataset.json").unlink(), "is not a dataset: metadata"),
])
def test_inconsistent_datasets_are_rejected_with_the_reason(tmp_path, corrupt, message):
    write_dataset(tmp_path / "d", {"train": small_split()}, ["<blank>"])
    corrupt(tmp_path / "d")
    with pytest.raises(DatasetError, match=message):
        read_split(tmp_path / "d")


def test_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        read_split(tmp_path / "missing")
    with pytest.raises(DatasetError, match="is not a dataset"):
        read_split(tmp_path)
    write_dataset(tmp_path / "d", {"train": small_split()}, ["<blank>"])
    with pytest.raises(DatasetError, match="no set 'other'; sets: 'all'"):
        read_split(tmp_path / "d", set_name="other")
    with pytest.raises(DatasetError, match="unknown split 'valid'"):
        read_split(tmp_path / "d", "valid")
    assert read_recipe(tmp_path / "d") is None
    (tmp_path / "d" / "recipe.json").write_text("[1]")
    with pytest.raises(DatasetError, match="is not a recipe"):
        read_recipe(tmp_path / "d")


def test_write_errors_and_force(tmp_path):
    split = small_split()
    with pytest.raises(DatasetError, match="2 identifier names were given"):
        write_dataset(tmp_path / "d", {"train": split}, ["<blank>", "x"])
    with pytest.raises(DatasetError, match="unknown split 'dev'"):
        write_dataset(tmp_path / "d", {"dev": split}, ["<blank>"])
    write_dataset(tmp_path / "d", {"train": split}, ["<blank>"])
    with pytest.raises(OutputExistsError):
        write_dataset(tmp_path / "d", {"train": split}, ["<blank>"])
    write_dataset(tmp_path / "d", {"train": small_split(2, 2)}, ["<blank>"], force=True)
    assert read_split(tmp_path / "d").num_examples == 4
    with pytest.raises(DatasetError, match="do not form groups of 5"):
        Split.single_examples(np.ones((4, 81)), np.ones((4, 81)), group_size=5, vocab_size=11)


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []

    def failing_save(path, array):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        with open(path, "wb") as handle:
            np.lib.format.write_array(handle, np.asarray(array))

    monkeypatch.setattr(dataset.np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        write_dataset(tmp_path / "d", {"train": small_split()}, ["<blank>"])
    assert list(tmp_path.iterdir()) == []
