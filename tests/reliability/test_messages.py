"""Messages that say what is wrong, once: missing paths, empty and malformed puzzle files, a readable target list
at 80 columns."""

from __future__ import annotations

import json

import pytest

from tests.reliability.conftest import assert_refused, cli

MAZE = ["#########", "#S    # #", "# ### # #", "#   #   #", "### # ###", "#     # #", "# ##### #", "#      G#",
        "#########"]


@pytest.mark.parametrize("args", [["verify", "/nonexistent"], ["info", "/nonexistent"],
                                  ["solve", "1", "--model", "/nonexistent"],
                                  ["import", "/nonexistent", "--task", "sudoku", "-o", "/tmp/never"],
                                  ["eval", "default", "--data", "/nonexistent"]])
def test_a_missing_path_is_said_to_not_exist(args):
    line = assert_refused(cli(*args), "'/nonexistent'", "does not exist")
    assert line.count("/nonexistent") == 1  # the thing said once


def test_an_empty_puzzle_file_is_an_error(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert_refused(cli("solve", "--file", str(empty)), "holds no puzzles")


@pytest.mark.parametrize("maze, words", [
    (MAZE[:8], ["got 8 rows"]),
    ([row.replace("G", " ") for row in MAZE], ["one 'G', found 0"]),
], ids=["a row missing", "no goal"])
def test_a_malformed_maze_says_what_is_wrong_with_it(maze, words, tmp_path):
    path = tmp_path / "maze.txt"
    path.write_text("\n".join(maze) + "\n")
    line = assert_refused(cli("solve", "--model", "maze", "--file", str(path)), f"{path}:1:", *words)
    assert "more)" not in line  # one maze, not nine one-line puzzles


def test_the_target_list_is_readable_at_80_columns():
    result = cli("targets", env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


def test_a_maze_whose_first_row_is_a_small_maze_is_read_as_one_maze(tmp_path):
    """A 9x9 maze whose first row holds the start and the goal: that row alone parses as a 3x3 maze, and the file
    must still be read as one 9x9 maze, not as nine one-line puzzles of the wrong size."""
    maze = ["S  #    G", *MAZE[1:]]
    maze[1] = maze[1].replace("S", " ")
    maze[7] = maze[7].replace("G", " ")
    path = tmp_path / "maze.txt"
    path.write_text("\n".join(maze) + "\n")
    result = cli("solve", "--model", "maze", "--file", str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["puzzle"] for line in result.stdout.splitlines()] == [f"{path}:1"]
