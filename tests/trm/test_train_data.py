"""The resumable example sampler and on-the-fly Sudoku augmentation."""

from __future__ import annotations

import numpy as np

from trm_edge.trm.data import ArraySplit, ExampleSampler, FreshSamples, sudoku_augment


def _grouped_split() -> ArraySplit:
    # 3 groups: {puzzle 0}, {puzzles 1, 2}, {puzzle 3}; puzzle sizes 1, 2, 1, 3 examples (7 examples)
    inputs = np.arange(7 * 4, dtype=np.int32).reshape(7, 4) % 5
    return ArraySplit(inputs, inputs.copy(), np.array([0, 1, 2, 3], np.int32), np.array([0, 1, 3, 4, 7], np.int32),
                      np.array([0, 1, 3, 4], np.int32), {"ignore_label_id": None, "vocab_size": 5, "seq_len": 4})


def test_an_epoch_visits_every_group_once_with_all_examples_of_the_chosen_puzzle():
    sampler = ExampleSampler(_grouped_split(), seed=3)
    seen_groups = []
    while sampler.epoch == 0:
        _, puzzles = sampler.take(1)
        seen_groups.append({0: 0, 1: 1, 2: 1, 3: 2}[int(puzzles[0])])
    assert sorted(set(seen_groups)) == [0, 1, 2]
    assert seen_groups.count(0) == 1 and seen_groups.count(2) == 3  # puzzle 3 brings its 3 examples


def test_sampler_resumes_from_its_state():
    a = ExampleSampler(_grouped_split(), seed=1)
    a.take(5)
    b = ExampleSampler(_grouped_split(), seed=1)
    b.load_state(a.state())
    for n in (3, 9, 1):
        ea, pa = a.take(n)
        eb, pb = b.take(n)
        assert ea.tolist() == eb.tolist() and pa.tolist() == pb.tolist()


def test_ranks_take_disjoint_interleaved_shares():
    split = ArraySplit.one_example_per_puzzle(np.zeros((10, 3)), np.zeros((10, 3)), vocab_size=2)
    r0 = ExampleSampler(split, seed=0, rank=0, world_size=2).take(5)[0]
    r1 = ExampleSampler(split, seed=0, rank=1, world_size=2).take(5)[0]
    assert sorted(r0.tolist() + r1.tolist()) == list(range(10))


def _valid_sudoku(grid: np.ndarray) -> bool:
    g = grid.reshape(9, 9) - 2  # tokens 2..10 -> digits 0..8
    boxes = g.reshape(3, 3, 3, 3).transpose(0, 2, 1, 3).reshape(9, 9)
    return all(sorted(x.tolist()) == list(range(9)) for a in (g, g.T, boxes) for x in a)


def test_sudoku_augmentation_keeps_solutions_valid_and_givens_consistent():
    base = np.array([[(3 * (r % 3) + r // 3 + c) % 9 for c in range(9)] for r in range(9)]).reshape(1, 81) + 2
    rng = np.random.default_rng(0)
    labels = np.repeat(base, 50, 0)
    inputs = np.where(rng.random(labels.shape) < 0.5, labels, 1)  # blanks are token 1
    new_inputs, new_labels = sudoku_augment(inputs, labels, rng)
    assert all(_valid_sudoku(g) for g in new_labels)
    given = new_inputs != 1
    assert (new_inputs[given] == new_labels[given]).all()
    assert (given.sum(1) == (inputs != 1).sum(1)).all()
    assert len({g.tobytes() for g in new_labels}) > 40  # really random


def test_fresh_samples_map_ignored_labels_and_puzzle_identifiers():
    split = _grouped_split()
    split.metadata["ignore_label_id"] = 0
    inputs, labels, ids = FreshSamples(split, seed=0).take(7)
    assert (labels[inputs == 0] == -100).all() and (labels[inputs != 0] == inputs[inputs != 0]).all()
    assert set(ids.tolist()) <= {0, 1, 2, 3}
