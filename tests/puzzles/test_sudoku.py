"""Sudoku: parsing and its errors, tokens, the exact solver and rating, generator, augmentations, CSV."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.puzzles.oracle import count_sudoku_solutions
from trm_edge.errors import ConfigError, PuzzleError
from trm_edge.puzzles import sudoku

# Known puzzles with their published solutions (Wikipedia's example; Arto Inkala's 2012 "hardest").
EASY = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"
EASY_SOLUTION = "534678912672195348198342567859761423426853791713924856961537284287419635345286179"
INKALA = "8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4.."
INKALA_SOLUTION = "812753649943682175675491283154237896369845721287169534521974368438526917796318452"
# From magictour's top1465 (solutions checked by the independent oracle in the test).
TOP1465 = ["4...3.......6..8..........1....5..9..8....6...7.2........1.27..5.3....4.9........",
           "7.8...3.....2.1...5.........4.....263...8.......1...9..9.6....4....7.5..........."]
# No clashing givens, yet no solution: r1c9 must be 9 (rest of row 1) but column 9 already has one.
NO_SOLUTION = "12345678." + "........9" + "." * 63


def test_parse_line_and_blanks():
    grid = sudoku.parse(EASY)
    assert grid.shape == (9, 9) and grid.dtype == np.uint8
    assert grid[0, 0] == 5 and grid[0, 2] == 0
    assert np.array_equal(sudoku.parse(EASY.replace(".", "0")), grid)
    assert sudoku.format_grid(grid) == EASY


def test_render_parses_back_and_nine_lines_accepted():
    grid = sudoku.parse(INKALA)
    text = sudoku.render(grid)
    assert "------+-------+------" in text
    assert np.array_equal(sudoku.parse(text), grid)
    plain = "\n".join(INKALA[i:i + 9] for i in range(0, 81, 9))
    assert np.array_equal(sudoku.parse(plain), grid)


@pytest.mark.parametrize(("text", "message"), [
    (EASY[:80], "expected 81 characters"),
    (EASY[:40] + "x" + EASY[41:], "invalid character 'x' at position 41 (row 5, column 5)"),
    ("\n".join([EASY[i:i + 9] for i in range(0, 72, 9)]), "expected 9 rows, got 8"),
    ("\n".join([EASY[i:i + 9] for i in range(0, 81, 9)]).replace("53..7....", "53..7...", 1), "line 1 has 8 cells"),
    ("\n".join([EASY[i:i + 9] for i in range(0, 81, 9)]).replace("6..195...", "6..19a...", 1),
     "line 2, cell 6: invalid character 'a'"),
    ("55" + "." * 79, "digit 5 appears twice in row 1 (at r1c1 and r1c2)"),
    ("5" + "." * 8 + "5" + "." * 71, "digit 5 appears twice in column 1"),
    ("5" + "." * 9 + "5" + "." * 70, "digit 5 appears twice in box 1"),
])
def test_parse_errors_name_position_and_reason(text, message):
    with pytest.raises(PuzzleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sudoku.parse(text)


def test_parse_without_rule_check_keeps_clashing_givens():
    assert sudoku.parse("55" + "." * 79, check=False)[0, 1] == 5


def test_tokens_round_trip_and_official_ids():
    grid = sudoku.parse(EASY)
    tokens = sudoku.to_tokens(grid)
    assert tokens.dtype == np.int32 and tokens.shape == (81,)
    assert tokens[0] == 6 and tokens[2] == 1  # digit 5 -> 6, blank -> 1
    assert np.array_equal(sudoku.from_tokens(tokens), grid)
    assert sudoku.decode(tokens) == EASY


def test_from_tokens_rejects_non_digit_tokens_and_decode_does_not():
    tokens = sudoku.to_tokens(sudoku.parse(EASY))
    tokens[7] = 0
    with pytest.raises(PuzzleError, match="token 0 at position 7"):
        sudoku.from_tokens(tokens)
    assert sudoku.decode(tokens)[7] == "?"
    with pytest.raises(PuzzleError, match="expected 81 tokens"):
        sudoku.from_tokens(tokens[:80])


@pytest.mark.parametrize(("puzzle", "solution"), [(EASY, EASY_SOLUTION), (INKALA, INKALA_SOLUTION)])
def test_solver_finds_the_known_unique_solution(puzzle, solution):
    solutions, stats = sudoku.solve(sudoku.parse(puzzle))
    assert [sudoku.format_grid(s) for s in solutions] == [solution]
    assert sudoku.count_solutions(sudoku.parse(puzzle)) == 1
    assert stats.guesses >= stats.dead_ends >= 0


@pytest.mark.parametrize("puzzle", TOP1465)
def test_solver_solves_hard_puzzles(puzzle):
    grid = sudoku.parse(puzzle)
    solutions, _ = sudoku.solve(grid, limit=5)
    assert len(solutions) == 1 and sudoku.validate(grid, solutions[0])


@pytest.mark.slow
@pytest.mark.parametrize("puzzle", TOP1465)
def test_solver_agrees_with_the_oracle_on_hard_puzzles(puzzle):
    grid = sudoku.parse(puzzle)
    solutions, _ = sudoku.solve(grid)
    oracle = count_sudoku_solutions(grid)
    assert len(solutions) == len(oracle) == 1
    assert np.array_equal(solutions[0], oracle[0])
    assert sudoku.validate(grid, solutions[0])


def test_zero_and_many_solutions():
    assert sudoku.count_solutions(sudoku.parse(NO_SOLUTION)) == 0
    assert sudoku.solve(sudoku.parse(NO_SOLUTION))[0] == []
    assert sudoku.count_solutions(np.zeros((9, 9), np.uint8)) == 2
    assert sudoku.count_solutions(np.zeros((9, 9), np.uint8), limit=5) == 5
    # Blank the four cells of a rectangle whose two digits can swap: exactly two solutions.
    solution = sudoku.parse(EASY_SOLUTION).copy()
    r1, r2, c1, c2 = _swappable_rectangle(solution)
    solution[[r1, r1, r2, r2], [c1, c2, c1, c2]] = 0
    assert sudoku.count_solutions(solution, limit=10) == 2 == len(count_sudoku_solutions(solution, limit=10))


def _swappable_rectangle(grid):
    for r1 in range(9):
        for r2 in range(r1 + 1, 9):
            if r1 // 3 == r2 // 3:  # rows in one band, columns in two stacks: the rectangle spans 2 boxes
                for c1 in range(9):
                    for c2 in range(c1 + 1, 9):
                        if c1 // 3 != c2 // 3 and grid[r1, c1] == grid[r2, c2] and grid[r1, c2] == grid[r2, c1]:
                            return r1, r2, c1, c2
    raise AssertionError("no deadly rectangle in this grid")


def test_validate():
    puzzle, answer = sudoku.parse(EASY), sudoku.parse(EASY_SOLUTION)
    assert sudoku.validate(puzzle, answer)
    assert sudoku.is_valid(sudoku.to_tokens(puzzle), sudoku.to_tokens(answer))
    wrong_given = answer.copy()
    wrong_given[[0, 0], [0, 1]] = wrong_given[[0, 0], [1, 0]]  # swap two cells: rows still fine, givens not
    assert not sudoku.validate(puzzle, wrong_given)
    incomplete = answer.copy()
    incomplete[4, 4] = 0
    assert not sudoku.validate(puzzle, incomplete)
    other = sudoku.parse(INKALA_SOLUTION)  # a valid grid that does not keep these givens
    assert not sudoku.validate(puzzle, other)
    assert not sudoku.is_valid(sudoku.to_tokens(puzzle), np.zeros(81, np.int32))


def test_rating_is_zero_for_singles_and_high_for_hard_puzzles():
    assert sudoku.rating(sudoku.parse(EASY)) == 0
    assert sudoku.rating(sudoku.parse(INKALA)) > 20
    assert all(sudoku.rating(sudoku.parse(p)) > 20 for p in TOP1465)


def test_rating_invariant_under_digit_permutation():
    grid = sudoku.parse(INKALA)
    relabel = sudoku.Transform(False, tuple(range(9)), tuple(range(9)), (0, 9, 8, 7, 6, 5, 4, 3, 2, 1))
    assert sudoku.rating(relabel.apply(grid)) == sudoku.rating(grid)


# ---------------------------------------------------------------------------------------------
# Augmentations


@pytest.mark.parametrize("seed", range(20))
def test_transforms_keep_validity_and_invert_exactly(seed):
    rng = random.Random(seed)
    transform = sudoku.random_transform(rng)
    puzzle, solution = sudoku.parse(INKALA), sudoku.parse(INKALA_SOLUTION)
    new_puzzle, new_solution = transform.apply(puzzle), transform.apply(solution)
    assert sudoku.validate(new_puzzle, new_solution)
    assert (new_puzzle > 0).sum() == (puzzle > 0).sum()
    inverse = transform.inverse()
    assert np.array_equal(inverse.apply(new_puzzle), puzzle)
    assert np.array_equal(inverse.apply(new_solution), solution)
    batch = sudoku.apply_many(np.stack([puzzle, solution]), [transform, transform])
    assert np.array_equal(batch[0], new_puzzle) and np.array_equal(batch[1], new_solution)


def test_random_transforms_cover_transpose_and_band_moves():
    transforms = [sudoku.random_transform(random.Random(i)) for i in range(200)]
    assert {t.transpose for t in transforms} == {True, False}
    assert len({t.rows[:3] for t in transforms}) > 10
    for t in transforms:  # rows keep their band
        assert all(t.rows[3 * b + i] // 3 == t.rows[3 * b] // 3 for b in range(3) for i in range(3))


# ---------------------------------------------------------------------------------------------
# Generator


def test_generated_puzzles_have_exactly_one_solution_equal_to_the_label():
    made = sudoku.generate(12, seed=7, options=sudoku.SudokuOptions(min_givens=22, max_givens=30))
    assert made.puzzles.shape == (12, 9, 9) and made.solutions.shape == (12, 9, 9)
    assert ((made.givens >= 22) & (made.givens <= 30)).all()
    for puzzle, solution, rating in zip(made.puzzles, made.solutions, made.ratings, strict=True):
        oracle = count_sudoku_solutions(puzzle)
        assert len(oracle) == 1 and np.array_equal(oracle[0], solution)
        assert sudoku.rating(puzzle) == rating


def test_generator_is_reproducible_and_independent_of_chunking_and_workers():
    options = sudoku.SudokuOptions(min_givens=28, max_givens=34)
    whole = sudoku.generate(6, seed=3, options=options)
    again = sudoku.generate(6, seed=3, options=options)
    tail = sudoku.generate(3, seed=3, options=options, start=3)
    assert np.array_equal(whole.puzzles, again.puzzles)
    assert np.array_equal(whole.puzzles[3:], tail.puzzles)
    assert not np.array_equal(whole.puzzles, sudoku.generate(6, seed=4, options=options).puzzles)
    assert not np.array_equal(whole.puzzles, sudoku.generate(6, seed=3, options=options, stream=9).puzzles)


@pytest.mark.slow
def test_generator_with_two_workers_matches_one():
    options = sudoku.SudokuOptions(min_givens=28, max_givens=34)
    one = sudoku.generate(250, seed=1, options=options)
    two = sudoku.generate(250, seed=1, options=options, workers=2)
    assert np.array_equal(one.puzzles, two.puzzles)


def test_min_rating_filter():
    made = sudoku.generate(5, seed=2, options=sudoku.SudokuOptions(min_givens=22, max_givens=26, min_rating=2))
    assert (made.ratings >= 2).all()


@pytest.mark.parametrize("values", [{"min_givens": 16}, {"min_givens": 30, "max_givens": 29}, {"min_rating": -1},
                                    {"min_rating": 3, "max_rating": 2}])
def test_bad_options(values):
    with pytest.raises(ConfigError):
        sudoku.SudokuOptions(**values)


def test_unknown_option_names_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown sudoku option.*'min_clues'.*'max_givens'"):
        sudoku.SudokuOptions.from_dict({"min_clues": 20})


def test_impossible_range_fails_with_advice(monkeypatch):
    monkeypatch.setattr(sudoku, "MAX_ATTEMPTS", 3)
    with pytest.raises(PuzzleError, match="widen the givens range or lower the minimum rating"):
        sudoku.generate(1, seed=0, options=sudoku.SudokuOptions(min_givens=17, max_givens=17))


# ---------------------------------------------------------------------------------------------
# CSV import (Sudoku-Extreme layout)


def _write_csv(path, rows, header="source,question,answer,rating"):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_read_csv(tmp_path):
    rows = [f"wiki,{EASY},{EASY_SOLUTION},0", f"inkala,{INKALA},{INKALA_SOLUTION},99"]
    path = _write_csv(tmp_path / "test.csv", rows)
    loaded = sudoku.read_csv(path)
    assert len(loaded) == 2
    assert sudoku.format_grid(loaded.puzzles[1]) == INKALA
    assert loaded.ratings.tolist() == [0, 99]
    assert len(sudoku.read_csv(path, limit=1)) == 1


@pytest.mark.parametrize(("row", "message"), [
    (f"wiki,{EASY},{EASY_SOLUTION}", ":3: expected 4 columns"),
    (f"wiki,{EASY[:80]},{EASY_SOLUTION},0", ":3: question: sudoku: expected 81 characters"),
    (f"wiki,{EASY},{EASY_SOLUTION[:-1]}x,0", ":3: answer: sudoku: invalid character 'x' at position 81"),
    (f"wiki,{EASY},{INKALA_SOLUTION},0", ":3: the answer is not a valid grid"),
    (f"wiki,{'55' + EASY[2:]},{EASY_SOLUTION},0", ":3: the question breaks the rules: sudoku: digit 5 appears twice"),
    (f"wiki,{EASY},{EASY_SOLUTION},hard", ":3: rating 'hard' is not an integer"),
])
def test_read_csv_errors_name_file_and_line(tmp_path, row, message):
    path = _write_csv(tmp_path / "bad.csv", [f"wiki,{EASY},{EASY_SOLUTION},0", row])
    with pytest.raises(PuzzleError, match=message):
        sudoku.read_csv(path)


def test_read_csv_header_and_missing_file(tmp_path):
    with pytest.raises(PuzzleError, match="expected the header"):
        sudoku.read_csv(_write_csv(tmp_path / "x.csv", [], header="q,a"))
    with pytest.raises(PuzzleError, match="cannot read"):
        sudoku.read_csv(tmp_path / "missing.csv")


# ---------------------------------------------------------------------------------------------
# Property tests on the parser

grids = st.lists(st.integers(0, 9), min_size=81, max_size=81).map(lambda v: np.array(v, np.uint8).reshape(9, 9))


@given(grids)
@settings(max_examples=100, deadline=None)
def test_format_parse_round_trip(grid):
    assert np.array_equal(sudoku.parse(sudoku.format_grid(grid), check=False), grid)
    assert np.array_equal(sudoku.parse(sudoku.render(grid), check=False), grid)
    assert np.array_equal(sudoku.from_tokens(sudoku.to_tokens(grid)), grid)


@given(st.text(alphabet=st.sampled_from("0123456789.x|-+ \n"), max_size=120) | st.text(max_size=100))
@settings(max_examples=150, deadline=None)
def test_parse_raises_only_puzzle_errors(text):
    try:
        grid = sudoku.parse(text)
    except PuzzleError:
        return
    assert grid.shape == (9, 9)


@given(st.lists(st.integers(-5, 20), min_size=81, max_size=81))
@settings(max_examples=100, deadline=None)
def test_is_valid_never_raises(values):
    assert sudoku.is_valid(np.array(values), np.array(values)) in (True, False)


def test_vectorised_random_maps_are_symmetries():
    positions, digits = sudoku.random_maps(np.random.default_rng(0), 64)
    puzzle, solution = sudoku.parse(INKALA), sudoku.parse(INKALA_SOLUTION)
    moved_puzzles = sudoku.apply_maps(np.repeat(puzzle[None], 64, 0), positions, digits)
    moved_solutions = sudoku.apply_maps(np.repeat(solution[None], 64, 0), positions, digits)
    assert sudoku.validate_batch(moved_puzzles, moved_solutions).all()
    assert len({p.tobytes() for p in moved_puzzles}) == 64
    transposed = positions[:, 1] % 9 == positions[:, 0] % 9  # the second cell comes from the same column
    assert 0 < transposed.sum() < 64
    assert (np.sort(positions, axis=1) == np.arange(81)).all() and (digits[:, 0] == 0).all()


def test_options_as_keywords():
    made = sudoku.generate(2, seed=5, min_givens=30, max_givens=31)
    assert ((made.givens >= 30) & (made.givens <= 31)).all()
    with pytest.raises(ConfigError, match="unknown sudoku option"):
        sudoku.generate(1, seed=0, clues=30)


def test_problem_names_why_an_answer_fails_and_agrees_with_is_valid():
    puzzle, solution = (sudoku.to_tokens(sudoku.parse(t)) for t in (EASY, EASY_SOLUTION))
    assert sudoku.problem(puzzle, solution) is None
    given = solution.copy()
    given[0], given[1] = solution[1], solution[0]  # swaps the givens 5 and 3 of row 1
    assert sudoku.problem(puzzle, given).startswith("the given 5 at r1c1 became 3")
    blank = solution.copy()
    blank[2] = 1  # token 1 is a blank
    assert sudoku.problem(puzzle, blank) == "1 cell(s) left blank"
    twice = solution.copy()
    twice[2] = solution[3]
    assert "appears twice in row 1" in sudoku.problem(puzzle, twice)
    assert "not a digit token" in sudoku.problem(puzzle, np.zeros(81, np.int32))
    rng = np.random.default_rng(0)
    for _ in range(200):  # random edits of the solution: valid exactly when there is no problem
        answer = solution.copy()
        cells = rng.choice(81, size=rng.integers(0, 3), replace=False)
        answer[cells] = rng.integers(1, 11, size=cells.size)
        assert (sudoku.problem(puzzle, answer) is None) == sudoku.is_valid(puzzle, answer)
