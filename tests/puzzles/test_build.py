"""Dataset builders, recipes, the task registry, and the ``trm-edge data`` commands."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.puzzles.oracle import count_sudoku_solutions, maze_shortest_paths
from trm_edge.cli import app
from trm_edge.errors import ConfigError, DatasetError, PuzzleError
from trm_edge.puzzles import CODEC_INTERFACE, TASKS, get_task, maze, sudoku
from trm_edge.puzzles.build import build_dataset, build_from_recipe
from trm_edge.puzzles.dataset import read_recipe, read_split
from trm_edge.puzzles.summary import describe

EASY_OPTIONS = {"min_givens": 30, "max_givens": 36}  # fast to draw


@pytest.fixture(scope="module")
def sudoku_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("sudoku") / "data"
    recipe = build_dataset("sudoku", out, train=12, test=8, seed=11, aug=2, options=EASY_OPTIONS)
    return out, recipe


def test_sudoku_dataset_labels_are_unique_solutions(sudoku_data):
    out, recipe = sudoku_data
    test, train = read_split(out, "test"), read_split(out, "train")
    assert (test.num_examples, train.num_examples, train.num_groups) == (8, 36, 12)
    for inputs, labels in ((test.inputs, test.labels), (train.inputs[::3], train.labels[::3])):
        for tokens, label in zip(inputs, labels, strict=True):
            solutions = count_sudoku_solutions(sudoku.from_tokens(tokens))
            assert len(solutions) == 1 and np.array_equal(solutions[0], sudoku.from_tokens(label))
    for tokens, label in zip(train.inputs, train.labels, strict=True):  # augmentations stay valid
        assert sudoku.is_valid(tokens, label)
    ratings = train.extras["ratings"]
    assert np.array_equal(ratings[::3], ratings[1::3])
    assert all(sudoku.rating(sudoku.from_tokens(t)) == r for t, r in zip(test.inputs, test.extras["ratings"],
                                                                         strict=True))
    heads = {bytes(t) for t in train.inputs[::3]} | {bytes(t) for t in test.inputs}
    assert len(heads) == 20  # all distinct
    assert {k: recipe[k] for k in ("task", "train", "test", "aug", "seed")} == \
        {"task": "sudoku", "train": 12, "test": 8, "aug": 2, "seed": 11}
    assert recipe["options"] == {**EASY_OPTIONS, "min_rating": 0, "max_rating": None}
    assert read_recipe(out) == recipe and recipe["stats"]["test"]["puzzles"] == 8


def test_test_split_does_not_depend_on_the_training_size(sudoku_data, tmp_path):
    out, _ = sudoku_data
    build_dataset("sudoku", tmp_path / "other", train=3, test=8, seed=11, options=EASY_OPTIONS)
    assert np.array_equal(read_split(out, "test").inputs, read_split(tmp_path / "other", "test").inputs)


def test_fresh_puzzles_from_a_recipe(sudoku_data, tmp_path):
    out, recipe = sudoku_data
    fresh = build_from_recipe(recipe, tmp_path / "fresh", seed=12, train=4)
    assert fresh["options"] == recipe["options"] and fresh["seed"] == 12 and fresh["train"] == 4
    assert fresh["test"] == 8 and fresh["aug"] == 2
    assert not np.array_equal(read_split(out, "test").inputs, read_split(tmp_path / "fresh", "test").inputs)
    with pytest.raises(DatasetError, match="not a data recipe: missing 'seed'"):
        build_from_recipe({"task": "sudoku", "options": {}, "train": 1, "test": 1, "aug": 0}, tmp_path / "x", seed=0)


def test_maze_dataset_labels_are_unique_shortest_paths(tmp_path):
    recipe = build_dataset("maze", tmp_path / "m", train=6, test=4, seed=2, aug=7,
                           options={"size": 10, "min_path": 14})
    train, test = read_split(tmp_path / "m", "train"), read_split(tmp_path / "m", "test")
    assert train.metadata.seq_len == 100 and train.metadata.vocab_size == 6 and train.num_examples == 48
    for tokens, label in zip(np.concatenate([train.inputs, test.inputs]), np.concatenate([train.labels, test.labels]),
                             strict=True):
        grid = maze.from_tokens(tokens)
        length, count = maze_shortest_paths(grid)
        assert count == 1 and length >= 14 and maze.is_valid(tokens, label)
    assert len({bytes(t) for t in train.inputs[:8]}) == 8  # the 8 dihedral versions differ
    assert recipe["options"] == {"size": 10, "min_path": 14, "max_path": None, "loops": None}


def test_tiny_maze_space_gets_distinct_puzzles_or_a_clear_error(tmp_path, monkeypatch):
    build_dataset("maze", tmp_path / "a", train=30, test=10, seed=0, options={"size": 4, "min_path": 2})
    inputs = np.concatenate([read_split(tmp_path / "a", s).inputs for s in ("train", "test")])
    assert len({bytes(t) for t in inputs}) == 40
    from trm_edge.puzzles import build

    monkeypatch.setattr(build, "MAX_REDRAWS", 0)
    with pytest.raises(PuzzleError, match="could not draw 400 distinct puzzles"):
        build_dataset("maze", tmp_path / "b", train=300, test=100, seed=0, options={"size": 4, "min_path": 2})
    assert not (tmp_path / "b").exists()


def _csv(path, rows):
    path.write_text("source,question,answer,rating\n" + "".join(f"{r}\n" for r in rows))


def test_import_sudoku_and_maze_csv(tmp_path):
    made = sudoku.generate(6, seed=0, options=sudoku.SudokuOptions(**EASY_OPTIONS))
    rows = [f"gen,{sudoku.format_grid(p)},{sudoku.format_grid(s)},{r}"
            for p, s, r in zip(made.puzzles, made.solutions, made.ratings, strict=True)]
    (tmp_path / "src").mkdir()
    _csv(tmp_path / "src" / "train.csv", rows[:4])
    _csv(tmp_path / "src" / "test.csv", rows[4:])
    recipe = build_dataset("sudoku", tmp_path / "s", source=str(tmp_path / "src"), train=3, aug=1, seed=5)
    assert recipe["source"] == [str(tmp_path / "src")] and recipe["train"] == 3 and recipe["test"] == 2
    assert read_split(tmp_path / "s", "train").num_examples == 6
    from trm_edge.puzzles.maze_generator import MazeOptions, generate

    mazes = generate(3, seed=0, options=MazeOptions(size=8, min_path=8))
    flat = [(maze.format_grid(p).replace("\n", ""), maze.format_grid(s).replace("\n", "")) for p, s in
            zip(mazes.puzzles, mazes.solutions, strict=True)]
    (tmp_path / "msrc").mkdir()
    _csv(tmp_path / "msrc" / "train.csv", [f"gen,{q},{a},0" for q, a in flat[:2]])
    _csv(tmp_path / "msrc" / "test.csv", [f"gen,{q},{a},0" for q, a in flat[2:]])
    build_dataset("maze", tmp_path / "mz", source=str(tmp_path / "msrc"))
    assert read_split(tmp_path / "mz", "test").metadata.seq_len == 64
    with pytest.raises(DatasetError, match=r"must be a directory holding train\.csv and test\.csv"):
        build_dataset("sudoku", tmp_path / "x", source=str(tmp_path / "src" / "train.csv"))
    with pytest.raises(DatasetError, match="do not apply to imported data"):
        build_dataset("sudoku", tmp_path / "x", source=str(tmp_path / "src"), options=EASY_OPTIONS)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"task": "chess"}, DatasetError, "unknown task 'chess'; valid: 'sudoku', 'maze', 'arc'"),
    ({"task": "sudoku", "seed": -1}, DatasetError, "seed must be >= 0"),
    ({"task": "sudoku", "train": -2}, DatasetError, "train must be >= 0"),
    ({"task": "sudoku", "options": {"size": 9}}, ConfigError, "unknown sudoku option"),
    ({"task": "maze", "aug": 8, "train": 1, "test": 1, "options": {"size": 6, "min_path": 3}}, DatasetError,
     "7 non-identity dihedral transforms"),
])
def test_build_errors(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        build_dataset(directory=tmp_path / "d", **kwargs)
    assert not (tmp_path / "d").exists()


# ---------------------------------------------------------------------------------------------
# Registry: every registered task implements the codec interface and round-trips a sample

SAMPLES = {
    "sudoku": "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79",
    "maze": "S # \n  # \n    \n## G",
    "arc": "0120\n3456",
}


def test_every_registered_task_is_tested():
    assert set(SAMPLES) == set(TASKS)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_codec_interface(name):
    task = get_task(name)
    assert all(hasattr(task, attr) for attr in CODEC_INTERFACE)
    assert name == task.NAME
    grid = task.parse(SAMPLES[name])
    tokens = task.to_tokens(grid)
    assert tokens.dtype == np.int32 and tokens.max() < task.VOCAB_SIZE
    assert np.array_equal(task.from_tokens(tokens), grid)
    assert np.array_equal(task.parse(task.format_grid(grid)), grid)
    assert np.array_equal(task.parse(task.decode(tokens)), grid)
    assert isinstance(task.render(grid), str)
    assert task.is_valid(tokens, np.zeros_like(tokens)) is False
    with pytest.raises(PuzzleError):
        task.parse("\x00")


def test_unknown_task():
    with pytest.raises(PuzzleError, match="unknown task 'go'"):
        get_task("go")


# ---------------------------------------------------------------------------------------------
# CLI

runner = CliRunner()


def test_cli_build_and_show(tmp_path):
    out = tmp_path / "data"
    result = runner.invoke(app, ["data", "build", "sudoku", "-o", str(out), "--train", "6", "--test", "4",
                                 "--seed", "3", "--min-givens", "30", "--max-givens", "34", "--json"])
    assert result.exit_code == 0, result.output
    recipe = json.loads(result.stdout.strip().splitlines()[-1])
    assert recipe["directory"] == str(out) and recipe["options"]["min_givens"] == 30
    shown = runner.invoke(app, ["data", "show", str(out), "--n", "2"])
    assert shown.exit_code == 0, shown.output
    assert "rating (backtracks)" in shown.output and "givens" in shown.output
    assert "------+-------+------" in shown.output
    report = json.loads(runner.invoke(app, ["data", "show", str(out), "--json", "--n", "1"]).stdout)
    assert report["task"] == "sudoku" and report["splits"]["test"]["examples"] == 4 and len(report["samples"]) == 1


def test_cli_like_a_dataset_or_a_model(tmp_path, monkeypatch):
    source = tmp_path / "source"
    assert runner.invoke(app, ["data", "build", "maze", "-o", str(source), "--train", "3", "--test", "2",
                               "--size", "8", "--min-path", "10"]).exit_code == 0
    result = runner.invoke(app, ["data", "build", "-o", str(tmp_path / "like"), "--like", str(source),
                                 "--seed", "9", "--json"])
    assert result.exit_code == 0, result.output
    recipe = json.loads(result.stdout.strip().splitlines()[-1])
    assert (recipe["task"], recipe["options"]["size"], recipe["options"]["min_path"], recipe["seed"]) == \
        ("maze", 8, 10, 9)

    from trm_edge.trm import checkpoint

    monkeypatch.setattr(checkpoint, "read_checkpoint_info",
                        lambda model: {"format": "x", "model": {}, "data_recipe": read_recipe(source)})
    result = runner.invoke(app, ["data", "build", "maze", "-o", str(tmp_path / "model"), "--like", "some-model",
                                 "--train", "1", "--loops", "0"])
    assert result.exit_code == 0, result.output
    made = read_recipe(tmp_path / "model")
    assert made["train"] == 1 and made["test"] == 2 and made["options"]["loops"] == 0 and made["seed"] == 0

    monkeypatch.setattr(checkpoint, "read_checkpoint_info", lambda model: {"format": "x", "model": {}})
    result = runner.invoke(app, ["data", "build", "-o", str(tmp_path / "none"), "--like", "bare-model"])
    assert isinstance(result.exception, DatasetError) and "has no data recipe" in str(result.exception)
    result = runner.invoke(app, ["data", "build", "sudoku", "-o", str(tmp_path / "none"), "--like", str(source)])
    assert isinstance(result.exception, ConfigError) and "'maze' data, not 'sudoku'" in str(result.exception)


@pytest.mark.parametrize(("args", "message"), [
    (["data", "build", "maze", "--min-givens", "20"], "--min-givens applies to sudoku, not maze"),
    (["data", "build"], "give a TASK"),
])
def test_cli_option_errors(tmp_path, args, message):
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "d")])
    assert isinstance(result.exception, ConfigError) and message in str(result.exception)


def test_cli_errors_are_one_line_exit_2_and_leave_no_dataset(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.csv").write_text("source,question,answer,rating\nx,123,456\n")
    (tmp_path / "src" / "test.csv").write_text("source,question,answer,rating\n")
    out = tmp_path / "data"
    done = subprocess.run([sys.executable, "-m", "trm_edge", "data", "build", "sudoku", "-o", str(out),
                           "--source", str(tmp_path / "src")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {tmp_path / 'src' / 'train.csv'}:2: expected 4 columns "
                                                "(source,question,answer,rating), got 3"]
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "src"]


def test_describe_official_style_dataset_without_recipe_or_ratings(sudoku_data, tmp_path):
    import shutil

    out, _ = sudoku_data
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "recipe.json").unlink()
    for split in ("train", "test"):
        (copy / split / "all__ratings.npy").unlink()
    report = describe(copy, samples=1)
    assert report["task"] == "sudoku" and report["recipe"] is None
    assert any(label.startswith("rating (backtracks, first") for label in report["difficulty"]["test"])
