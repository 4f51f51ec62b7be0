"""Maze: parsing and its errors, tokens, shortest-path validation, generator, augmentations, CSV."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.puzzles.oracle import maze_shortest_paths
from trm_edge.errors import ConfigError, PuzzleError
from trm_edge.puzzles import maze
from trm_edge.puzzles.maze_generator import MazeOptions, carve, generate

# A 6x6 maze with one shortest path (9 moves), a longer detour through the bottom rows, a dead end.
PUZZLE = "\n".join([
    "S  ###",
    "## #  ",
    "#    #",
    "# ## #",
    "#    G",
    "######",
])
ANSWER = "\n".join([
    "Soo###",
    "##o#  ",
    "# ooo#",
    "# ##o#",
    "#   oG",
    "######",
])


def test_parse_forms_and_round_trip():
    grid = maze.parse(PUZZLE)
    assert grid.shape == (6, 6) and grid[0, 0] == maze.START and grid[0, 3] == maze.WALL
    assert maze.format_grid(grid) == PUZZLE
    assert np.array_equal(maze.parse(PUZZLE.replace("\n", "")), grid)  # one-line CSV form
    assert np.array_equal(maze.parse(maze.render(grid)), grid)  # framed form
    assert maze.render(grid).splitlines()[0] == "+------+"


def test_rows_of_spaces_are_cells_not_blank_lines():
    text = "S   \n    \n    \n   G"
    assert maze.parse(text).shape == (4, 4)
    assert maze.parse(text + "\n").shape == (4, 4)


@pytest.mark.parametrize(("text", "message"), [
    (PUZZLE.replace("S  ###", "S  #x#"), "line 1, column 5: invalid character 'x'"),
    (PUZZLE.replace("## #  ", "## # "), "line 2 has 5 characters, line 1 has 6"),
    ("\n".join(PUZZLE.split("\n")[:5]), "mazes are square; got 5 rows of 6"),
    (PUZZLE.replace("S", " "), "expected exactly one 'S', found 0"),
    (PUZZLE.replace("#    #", "#  G #", 1), "expected exactly one 'G', found 2"),
    ("S" * 7, "square number of characters, got 7"),
    ("", "square number of characters, got 0"),
    ("+--+\n|S |\n| G\n+--+", "line 3: a framed maze row must start and end with '|'"),
])
def test_parse_errors(text, message):
    with pytest.raises(PuzzleError, match=message):
        maze.parse(text)


def test_tokens():
    grid = maze.parse(PUZZLE)
    tokens = maze.to_tokens(grid)
    assert tokens.dtype == np.int32 and tokens.shape == (36,)
    assert tokens[0] == 3 and tokens[1] == 2 and tokens[3] == 1  # S, open, wall
    assert np.array_equal(maze.from_tokens(tokens), grid)
    assert maze.decode(tokens) == PUZZLE
    bad = tokens.copy()
    bad[5] = 0
    with pytest.raises(PuzzleError, match="token 0 at position 5"):
        maze.from_tokens(bad)
    assert maze.decode(bad).split("\n")[0] == "S  ##?"
    with pytest.raises(PuzzleError, match="square grid"):
        maze.from_tokens(tokens[:35])


def test_solve_and_validate():
    puzzle, answer = maze.parse(PUZZLE), maze.parse(ANSWER)
    assert maze.path_length(puzzle) == 9 == maze_shortest_paths(puzzle)[0]
    assert maze.shortest_path_count(puzzle) == 1
    assert np.array_equal(maze.solve(puzzle), answer)
    assert maze.validate(puzzle, answer)
    assert maze.is_valid(maze.to_tokens(puzzle), maze.to_tokens(answer))


def test_validate_rejects_wrong_answers():
    puzzle, answer = maze.parse(PUZZLE), maze.parse(ANSWER)
    detour = maze.parse("\n".join(["Soo###", "##o#  ", "#oo  #", "#o## #", "#ooooG", "######"]))
    assert maze_shortest_paths(puzzle) == (9, 1)
    assert not maze.validate(puzzle, detour)  # a path, but not a shortest one
    extra = answer.copy()
    extra[1, 4] = maze.PATH
    assert not maze.validate(puzzle, extra)  # one mark too many
    broken = answer.copy()
    broken[2, 3] = maze.OPEN
    broken[1, 4] = maze.PATH
    assert not maze.validate(puzzle, broken)  # right count, not connected
    moved_wall = answer.copy()
    moved_wall[0, 3] = maze.OPEN
    assert not maze.validate(puzzle, moved_wall)
    assert not maze.validate(puzzle, answer[:5, :5])
    assert not maze.is_valid(maze.to_tokens(puzzle), np.zeros(36, np.int32))


def test_unreachable_goal_and_puzzle_checks():
    walled = maze.parse("S#  \n##  \n    \n   G")
    assert maze.path_length(walled) == -1
    with pytest.raises(PuzzleError, match="cannot be reached"):
        maze.solve(walled)
    with pytest.raises(PuzzleError, match="cannot be reached"):
        maze.check_puzzle(walled)
    with pytest.raises(PuzzleError, match="must not contain path cells"):
        maze.check_puzzle(maze.parse(ANSWER))


def test_shortest_path_count_on_open_grid():
    grid = maze.parse("S   \n    \n    \n   G")
    assert maze.shortest_path_count(grid) == 2  # capped: many
    assert maze_shortest_paths(grid) == (6, 20)


@pytest.mark.parametrize("tid", range(8))
def test_dihedral_augmentations_keep_validity_and_invert(tid):
    puzzle, answer = maze.parse(PUZZLE), maze.parse(ANSWER)
    new_puzzle, new_answer = maze.augment(puzzle, tid), maze.augment(answer, tid)
    assert maze.validate(new_puzzle, new_answer)
    assert np.array_equal(maze.inverse_augment(new_puzzle, tid), puzzle)
    assert np.array_equal(maze.inverse_augment(new_answer, tid), answer)


def test_dihedral_transforms_are_distinct():
    grid = np.arange(16).reshape(4, 4)
    assert len({maze.augment(grid, t).tobytes() for t in range(8)}) == 8


# ---------------------------------------------------------------------------------------------
# Generator


def test_generated_labels_are_the_unique_shortest_path():
    made = generate(8, seed=1)
    assert made.puzzles.shape == (8, 30, 30)
    for puzzle, label, length in zip(made.puzzles, made.solutions, made.path_lengths, strict=True):
        assert length >= 110
        assert maze_shortest_paths(puzzle) == (length, 1)  # independent BFS: unique and that long
        assert maze.validate(puzzle, label)
        assert (label == maze.PATH).sum() == length - 1
        assert not (puzzle == maze.PATH).any()


def test_generator_options_and_reproducibility():
    options = MazeOptions(size=12, min_path=20, max_path=30, loops=3)
    made = generate(10, seed=4, options=options)
    assert made.puzzles.shape == (10, 12, 12)
    assert ((made.path_lengths >= 20) & (made.path_lengths <= 30)).all()
    assert np.array_equal(made.puzzles, generate(10, seed=4, options=options).puzzles)
    assert np.array_equal(made.puzzles[5:], generate(5, seed=4, options=options, start=5).puzzles)
    assert options.loop_count == 3 and MazeOptions().loop_count == 9 and MazeOptions().path_floor == 110
    assert MazeOptions(size=10).path_floor == 12


def test_carve_grows_a_tree_of_corridors():
    import random

    side = 16
    is_open = carve(side, random.Random(0), loops=0)
    cells = [u for u in range(side * side) if is_open[u]]
    edges = sum(1 for u in cells for v in maze.neighbours(side)[u] if is_open[v]) // 2
    assert edges == len(cells) - 1  # connected (BFS below) with n - 1 edges: a tree
    dist, _ = maze.bfs(is_open, side, cells[0])
    assert all(dist[u] >= 0 for u in cells)


@pytest.mark.parametrize("values", [{"size": 3}, {"min_path": 0}, {"min_path": 50, "max_path": 40}, {"loops": -1}])
def test_bad_options(values):
    with pytest.raises(ConfigError):
        MazeOptions(**values)


def test_impossible_hardness_fails_with_advice(monkeypatch):
    from trm_edge.puzzles import maze_generator

    monkeypatch.setattr(maze_generator, "MAX_ATTEMPTS", 2)
    with pytest.raises(PuzzleError, match="lower min_path"):
        generate(1, seed=0, options=MazeOptions(size=6, min_path=40))


# ---------------------------------------------------------------------------------------------
# CSV import (Maze-Hard layout) and parser properties


def test_read_csv_and_errors(tmp_path):
    row = f"gen,{PUZZLE.replace(chr(10), '')},{ANSWER.replace(chr(10), '')},0"
    path = tmp_path / "test.csv"
    path.write_text(f"source,question,answer,rating\n{row}\n{row}\n")
    loaded = maze.read_csv(path)
    assert loaded.puzzles.shape == (2, 6, 6) and loaded.path_lengths.tolist() == [9, 9]
    wrong = f"gen,{PUZZLE.replace(chr(10), '')},{PUZZLE.replace(chr(10), '')},0"
    path.write_text(f"source,question,answer,rating\n{row}\n{wrong}\n")
    with pytest.raises(PuzzleError, match=r"test.csv:3: the answer is not a shortest path"):
        maze.read_csv(path)
    path.write_text(f"source,question,answer,rating\n{row}\ngen,S G,x,0\n")
    with pytest.raises(PuzzleError, match=r"test.csv:3: maze: a one-line maze needs a square number"):
        maze.read_csv(path)


@given(st.lists(st.sampled_from(list(maze.CHARSET)), min_size=16, max_size=16))
@settings(max_examples=150, deadline=None)
def test_format_parse_round_trip(chars):
    grid = np.array([maze.CHARSET.index(c) + 1 for c in chars], np.uint8).reshape(4, 4)
    assert np.array_equal(maze.parse(maze.format_grid(grid), check=False), grid)
    assert np.array_equal(maze.parse(maze.render(grid), check=False), grid)
    assert np.array_equal(maze.from_tokens(maze.to_tokens(grid)), grid)


@given(st.text(alphabet=st.sampled_from("# SGo\n+-|x"), max_size=60) | st.text(max_size=60))
@settings(max_examples=150, deadline=None)
def test_parse_raises_only_puzzle_errors(text):
    try:
        grid = maze.parse(text)
    except PuzzleError:
        return
    assert grid.shape[0] == grid.shape[1]
    assert maze.is_valid(maze.to_tokens(grid), maze.to_tokens(grid)) in (True, False)


def test_options_as_keywords():
    made = generate(2, seed=5, size=9, min_path=12)
    assert made.puzzles.shape == (2, 9, 9) and (made.path_lengths >= 12).all()
    with pytest.raises(ConfigError, match="unknown maze option"):
        generate(1, seed=0, width=9)
