"""9x9 Sudoku: text <-> grid <-> tokens, exact solver and rating, generator, augmentations, CSV import.

A grid is a ``uint8`` array ``[9, 9]`` of digits, 0 for a blank. Tokens are the official ones:
PAD 0, digit ``d`` -> ``d + 1`` (so a blank is 1), 81 per puzzle, vocabulary 11.

Text forms accepted by :func:`parse`: one line of 81 characters (``1-9``; ``.``, ``0`` or ``-`` for a
blank), or 9 lines of 9 cells where spaces and ``|`` are ignored and lines made only of ``-+=``
are separators (so :func:`render`'s output parses back), except nine dashes alone: a row of blanks.

Codec interface (see :mod:`trm_edge.puzzles`): ``parse``, ``format_grid``, ``render``,
``to_tokens``, ``from_tokens``, ``decode``, ``is_valid``.
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from trm_edge.errors import ConfigError, PuzzleError, choices
from trm_edge.puzzles import sudoku_solver as engine
from trm_edge.puzzles.common import Progress, chunked, item_random, parallel_map, read_csv_rows, removeprefix
from trm_edge.puzzles.sudoku_solver import SolveStats

NAME = "sudoku"
SEQ_LEN = 81
VOCAB_SIZE = 11  # PAD + "0" (blank) ... "9"
PAD_ID = 0
BLANKS = ".0-"
_DIGITS = "123456789"


# ---------------------------------------------------------------------------------------------
# Text


def parse(text: str, *, check: bool = True) -> np.ndarray:
    """Parse a puzzle (or answer) into a ``[9, 9]`` grid; ``check`` rejects givens that clash."""
    stripped = text.strip()
    grid = _parse_line(stripped) if "\n" not in stripped else _parse_lines(text)
    if check:
        check_givens(grid)
    return grid


def _parse_line(line: str) -> np.ndarray:
    if len(line) != 81:
        raise PuzzleError(f"sudoku: expected 81 characters (or 9 lines of 9), got {len(line)}")
    cells = []
    for i, char in enumerate(line):
        if char in BLANKS:
            cells.append(0)
        elif char in _DIGITS:
            cells.append(int(char))
        else:
            raise PuzzleError(f"sudoku: invalid character {char!r} at position {i + 1} "
                              f"(row {i // 9 + 1}, column {i % 9 + 1}); use 1-9, and '.', '0' or '-' for a blank")
    return np.array(cells, dtype=np.uint8).reshape(9, 9)


def _parse_lines(text: str) -> np.ndarray:
    rows: list[list[int]] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.replace("|", "").replace(" ", "").replace("\t", "").rstrip("\r")
        if not line or (set(line) <= set("-+=") and line != "-" * 9):
            continue  # blank line or a separator (nine dashes alone are a row of blanks)
        if len(rows) == 9:
            raise PuzzleError(f"sudoku: line {number}: more than 9 rows")
        row = []
        for column, char in enumerate(line, start=1):
            if char in BLANKS:
                row.append(0)
            elif char in _DIGITS:
                row.append(int(char))
            else:
                raise PuzzleError(f"sudoku: line {number}, cell {column}: invalid character {char!r}; "
                                  "use 1-9, and '.', '0' or '-' for a blank")
        if len(row) != 9:
            raise PuzzleError(f"sudoku: line {number} has {len(row)} cells, expected 9")
        rows.append(row)
    if len(rows) != 9:
        raise PuzzleError(f"sudoku: expected 9 rows, got {len(rows)}")
    return np.array(rows, dtype=np.uint8)


def _unit_name(unit: int) -> str:
    kind, index = ("row", "column", "box")[unit // 9], unit % 9 + 1
    return f"{kind} {index}"


def check_givens(grid: np.ndarray) -> None:
    """Raise PuzzleError naming the first digit that appears twice in a row, column or box."""
    cells = _as_grid(grid).reshape(-1).tolist()
    for u, unit in enumerate(engine.UNITS):
        seen: dict[int, int] = {}
        for c in unit:
            d = cells[c]
            if d and d in seen:
                first = seen[d]
                raise PuzzleError(f"sudoku: digit {d} appears twice in {_unit_name(u)} (at r{first // 9 + 1}"
                                  f"c{first % 9 + 1} and r{c // 9 + 1}c{c % 9 + 1})")
            seen[d] = c


def format_grid(grid: np.ndarray) -> str:
    """The 81-character form, ``.`` for a blank."""
    return "".join(_DIGITS[d - 1] if d else "." for d in _as_grid(grid).reshape(-1).tolist())


def render(grid: np.ndarray) -> str:
    """A readable 9-line grid with box separators (parses back with :func:`parse`)."""
    text = format_grid(grid)
    lines = []
    for r in range(9):
        if r in (3, 6):
            lines.append("------+-------+------")
        row = text[r * 9:(r + 1) * 9]
        lines.append(" | ".join(" ".join(row[b * 3:(b + 1) * 3]) for b in range(3)))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Tokens


def _as_grid(grid: Any) -> np.ndarray:
    array = np.asarray(grid)
    if array.size != 81:
        raise PuzzleError(f"sudoku: a grid has 81 cells, got an array of shape {array.shape}")
    return array.reshape(9, 9)


def to_tokens(grid: np.ndarray) -> np.ndarray:
    """``int32[81]``: digit d -> d + 1, blank -> 1."""
    return _as_grid(grid).reshape(81).astype(np.int32) + 1


def from_tokens(tokens: np.ndarray) -> np.ndarray:
    """Grid from 81 tokens; PuzzleError names the first token that is not a digit token (1-10)."""
    values = np.asarray(tokens).reshape(-1).astype(np.int64)
    if values.size != SEQ_LEN:
        raise PuzzleError(f"sudoku: expected {SEQ_LEN} tokens, got {values.size}")
    bad = np.flatnonzero((values < 1) | (values > 10))
    if bad.size:
        i = int(bad[0])
        raise PuzzleError(f"sudoku: token {int(values[i])} at position {i} is not a digit token (1-10)")
    return (values - 1).astype(np.uint8).reshape(9, 9)


def decode(tokens: np.ndarray) -> str:
    """81-character text of tokens, for display: tokens that are not digits show as ``?``."""
    values = np.asarray(tokens).reshape(-1).tolist()
    return "".join(("." if t == 1 else _DIGITS[t - 2]) if 1 <= t <= 10 else "?" for t in values)


def is_valid(puzzle_tokens: np.ndarray, answer_tokens: np.ndarray) -> bool:
    """Whether the answer solves the puzzle (keeps its givens, obeys the rules); never raises."""
    try:
        return validate(from_tokens(puzzle_tokens), from_tokens(answer_tokens))
    except PuzzleError:
        return False


def problem(puzzle_tokens: np.ndarray, answer_tokens: np.ndarray) -> str | None:
    """Why the answer does not solve the puzzle (None when it does); never raises."""
    try:
        puzzle, answer = from_tokens(puzzle_tokens), from_tokens(answer_tokens)
        changed = np.argwhere((puzzle != 0) & (puzzle != answer))
        if changed.size:
            r, c = (int(v) for v in changed[0])
            return f"the given {puzzle[r, c]} at r{r + 1}c{c + 1} became {answer[r, c] or 'blank'}"
        check_givens(answer)
    except PuzzleError as error:
        return removeprefix(str(error), f"{NAME}: ")
    blanks = int((answer == 0).sum())
    return f"{blanks} cell(s) left blank" if blanks else None


# ---------------------------------------------------------------------------------------------
# Rules and solving


def _units(grids: np.ndarray) -> np.ndarray:
    """``[n, 27, 9]``: the rows, columns and boxes of ``[n, 9, 9]`` grids."""
    n = grids.shape[0]
    boxes = grids.reshape(n, 3, 3, 3, 3).transpose(0, 1, 3, 2, 4).reshape(n, 9, 9)
    return np.concatenate([grids, grids.transpose(0, 2, 1), boxes], axis=1)


def _digit_counts(grids: np.ndarray) -> np.ndarray:
    """``[n, 27, 9]``: how often each digit 1-9 appears in each unit."""
    units = _units(grids)
    return (units[..., None] == np.arange(1, 10, dtype=units.dtype)).sum(axis=2)


def validate_batch(puzzles: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """``bool[n]``: answer i is a complete valid grid that keeps the givens of puzzle i."""
    puzzles = np.asarray(puzzles).reshape(-1, 9, 9)
    answers = np.asarray(answers).reshape(-1, 9, 9)
    complete = (_digit_counts(answers) == 1).all(axis=(1, 2))
    keeps = ((puzzles == 0) | (puzzles == answers)).all(axis=(1, 2))
    return complete & keeps


def validate(puzzle: np.ndarray, answer: np.ndarray) -> bool:
    """Whether ``answer`` fills ``puzzle``'s blanks so that every row, column and box holds 1-9."""
    return bool(validate_batch(_as_grid(puzzle)[None], _as_grid(answer)[None])[0])


def solve(grid: np.ndarray, limit: int = 2) -> tuple[list[np.ndarray], SolveStats]:
    """Up to ``limit`` solutions (grids) and the search statistics. Givens that clash: none."""
    solutions, stats = engine.solve_cells(_as_grid(grid).reshape(-1).tolist(), limit)
    return [np.array(s, dtype=np.uint8).reshape(9, 9) for s in solutions], stats


def count_solutions(grid: np.ndarray, limit: int = 2) -> int:
    """Number of solutions, counted up to ``limit`` (2 tells unique from not)."""
    return len(engine.solve_cells(_as_grid(grid).reshape(-1).tolist(), limit)[0])


def rating(grid: np.ndarray) -> int:
    """Difficulty: backtracks in the full search (0 = singles suffice); see ``sudoku_solver``."""
    return engine.rate(_as_grid(grid).reshape(-1).tolist())


# ---------------------------------------------------------------------------------------------
# Puzzle sets: generated or imported


@dataclass
class SudokuSet:
    """Puzzles with their solutions: ``puzzles``/``solutions`` uint8 ``[n, 9, 9]``, ``ratings`` int32 ``[n]``."""

    puzzles: np.ndarray
    solutions: np.ndarray
    ratings: np.ndarray

    def __len__(self) -> int:
        return len(self.puzzles)

    @property
    def givens(self) -> np.ndarray:
        return (self.puzzles.reshape(len(self), 81) > 0).sum(axis=1).astype(np.int32)


@dataclass(frozen=True)
class SudokuOptions:
    """Generator settings: clue count and rating ranges (a puzzle must satisfy all four)."""

    min_givens: int = 22  # greedy digging bottoms out at 22-28 clues; lower bounds below ~22 are slow
    max_givens: int = 36  # above ~36 nearly every puzzle falls to singles (rating 0)
    min_rating: int = 0  # backtracks; raising it rejection-samples harder puzzles
    max_rating: int | None = None

    def __post_init__(self) -> None:
        if not 17 <= self.min_givens <= self.max_givens <= 80:
            raise ConfigError(f"sudoku givens range [{self.min_givens}, {self.max_givens}] is invalid: "
                              "need 17 <= min_givens <= max_givens <= 80")
        if self.min_rating < 0 or (self.max_rating is not None and self.max_rating < self.min_rating):
            raise ConfigError(f"sudoku rating range [{self.min_rating}, {self.max_rating}] is invalid: "
                              "need 0 <= min_rating <= max_rating")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SudokuOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown sudoku option(s) {choices(unknown)}; valid: {choices(sorted(known))}")
        return cls(**values)


MAX_ATTEMPTS = 5000  # per puzzle, before giving up on a range that (almost) never occurs


def draw(seed: int, stream: int, index: int, options: SudokuOptions, salt: int = 0) -> tuple[list, list, int]:
    """Puzzle ``index`` of a stream: (cells, solution, rating), lists of 81 digits."""
    rng = item_random(seed, stream, index, salt)
    for _ in range(MAX_ATTEMPTS):
        target = rng.randint(options.min_givens, options.max_givens)
        solution = engine.random_solution(rng)
        cells = engine.dig(solution, target, rng)
        if 81 - cells.count(0) > options.max_givens:
            continue  # a minimal puzzle with more clues than allowed
        score = engine.rate(cells)
        if score >= options.min_rating and (options.max_rating is None or score <= options.max_rating):
            return cells, solution, score
    raise PuzzleError(f"sudoku: no puzzle with {options.min_givens}-{options.max_givens} givens and rating "
                      f"{options.min_rating}-{options.max_rating if options.max_rating is not None else 'any'} "
                      f"in {MAX_ATTEMPTS} attempts; widen the givens range or lower the minimum rating")


def _draw_chunk(job: tuple[int, int, tuple[int, int], SudokuOptions]) -> list:
    seed, stream, (start, stop), options = job
    return [draw(seed, stream, i, options) for i in range(start, stop)]


def generate(n: int, *, seed: int, options: SudokuOptions | None = None, stream: int = 0, start: int = 0,
             workers: int = 1, progress: Progress | None = None, **option_values: Any) -> SudokuSet:
    """``n`` puzzles with a unique solution, seeded and reproducible. Options come as ``options`` or
    as keywords (``generate(100, seed=0, min_givens=30, max_givens=36)``).

    Puzzle ``i`` depends only on ``(seed, stream, start + i, options)``, not on ``n`` or ``workers``
    (builders use one stream per split). ``workers`` > 1 draws in that many processes.

    Each attempt draws a target clue count uniformly in the givens range, a random full grid, digs
    it (see ``sudoku_solver.dig``) and rates it; attempts outside the ranges are redrawn. CPU cost
    per puzzle on this project's machines: ~2.4 ms at 30-36 givens, ~5 ms with the defaults,
    ~8 ms at 22-28, ~26 ms for 17-28 givens with rating >= 2.
    """
    options = SudokuOptions.from_dict({**(options or SudokuOptions()).to_dict(), **option_values})
    jobs = [(seed, stream, span, options) for span in chunked(start, start + n, 100)]
    drawn = parallel_map(_draw_chunk, jobs, workers=workers, progress=progress,
                         description="sudoku", total=n)
    return _to_set(drawn)


def _to_set(drawn: list[tuple[list, list, int]]) -> SudokuSet:
    n = len(drawn)
    puzzles = np.array([d[0] for d in drawn], dtype=np.uint8).reshape(n, 9, 9)
    solutions = np.array([d[1] for d in drawn], dtype=np.uint8).reshape(n, 9, 9)
    return SudokuSet(puzzles, solutions, np.array([d[2] for d in drawn], dtype=np.int32).reshape(n))


def read_csv(path: str | os.PathLike, *, limit: int | None = None) -> SudokuSet:
    """Read the Sudoku-Extreme layout ``source,question,answer,rating`` (``.`` blanks in questions).

    Every answer is checked against its question; PuzzleError names the file and line of the first
    row that is malformed or whose answer does not solve its question.
    """
    questions, answers, ratings, lines = [], [], [], []
    for row in read_csv_rows(path):
        if limit is not None and len(questions) >= limit:
            break
        for what, text in (("question", row.question), ("answer", row.answer)):
            if len(text) != 81 or not text.isascii() or not text.replace(".", "0").isdigit():
                try:
                    parse(text, check=False)
                except PuzzleError as error:
                    raise PuzzleError(f"{path}:{row.line}: {what}: {error}") from None
        questions.append(row.question.replace(".", "0"))
        answers.append(row.answer)
        ratings.append(row.rating)
        lines.append(row.line)
    n = len(questions)
    puzzles = (np.frombuffer("".join(questions).encode(), dtype=np.uint8) - ord("0")).reshape(n, 9, 9)
    solutions = (np.frombuffer("".join(answers).encode(), dtype=np.uint8) - ord("0")).reshape(n, 9, 9)
    ok = validate_batch(puzzles, solutions)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        try:
            check_givens(puzzles[i])
            reason = "the answer is not a valid grid that keeps the question's givens"
        except PuzzleError as error:
            reason = f"the question breaks the rules: {error}"
        raise PuzzleError(f"{path}:{lines[i]}: {reason}")
    return SudokuSet(puzzles.copy(), solutions.copy(), np.array(ratings, dtype=np.int32))


# ---------------------------------------------------------------------------------------------
# Augmentations


@dataclass(frozen=True)
class Transform:
    """A validity-preserving symmetry: optional transpose, then row and column permutations that
    keep bands and stacks together, then a relabelling of the digits (blank stays blank).

    ``rows[i]`` is the old row that becomes row ``i`` (after the transpose); ``digits[d]`` is the new
    digit of old digit ``d`` (``digits[0] == 0``).
    """

    transpose: bool
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    digits: tuple[int, ...]

    def position_map(self) -> np.ndarray:
        """``int[81]``: cell ``i`` of the result is cell ``map[i]`` of the input (before relabelling)."""
        cells = np.arange(81).reshape(9, 9)
        if self.transpose:
            cells = cells.T
        return cells[list(self.rows)][:, list(self.cols)].reshape(81)

    def apply(self, grid: np.ndarray) -> np.ndarray:
        """Transform one grid ``[9, 9]`` / ``[81]``, or a batch ``[n, 9, 9]``, of digits."""
        grids = np.asarray(grid)
        flat = grids.reshape(-1, 81)[:, self.position_map()]
        return np.asarray(self.digits, dtype=grids.dtype)[flat].reshape(grids.shape)

    def inverse(self) -> Transform:
        inv_rows, inv_cols = tuple(np.argsort(self.rows).tolist()), tuple(np.argsort(self.cols).tolist())
        digits = tuple(np.argsort(self.digits).tolist())
        if self.transpose:  # undo the permutation, then transpose: the roles of rows and columns swap
            return Transform(True, inv_cols, inv_rows, digits)
        return Transform(False, inv_rows, inv_cols, digits)


def _line_permutation(rng: random.Random) -> tuple[int, ...]:
    bands = rng.sample(range(3), 3)
    return tuple(band * 3 + i for band in bands for i in rng.sample(range(3), 3))


def apply_maps(grids: np.ndarray, positions: np.ndarray, digits: np.ndarray, *, chunk: int = 65536) -> np.ndarray:
    """Grid ``i`` moved by ``positions[i]`` (``[n, 81]``, see ``Transform.position_map``) and
    relabelled by ``digits[i]`` (``[n, 10]``): many transforms in a few vectorised gathers."""
    grids = np.asarray(grids).reshape(-1, 81)
    out = np.empty_like(grids)
    for start in range(0, len(grids), chunk):
        stop = min(start + chunk, len(grids))
        moved = np.take_along_axis(grids[start:stop], positions[start:stop].astype(np.intp), axis=1)
        out[start:stop] = np.take_along_axis(digits[start:stop].astype(grids.dtype), moved.astype(np.intp), axis=1)
    return out.reshape(-1, 9, 9)


def apply_many(grids: np.ndarray, transforms: list[Transform]) -> np.ndarray:
    """``transforms[i]`` applied to ``grids[i]`` (``[n, 9, 9]``)."""
    return apply_maps(grids, np.stack([t.position_map() for t in transforms]),
                      np.asarray([t.digits for t in transforms]))


def random_maps(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Position maps ``uint8[n, 81]`` and digit maps ``uint8[n, 10]`` of ``n`` random transforms,
    drawn with numpy in one go (the dataset builder augments a million puzzles this way)."""
    def lines() -> np.ndarray:  # [n, 9]: bands shuffled, rows shuffled within each band
        bands = rng.permuted(np.tile(np.arange(3), (n, 1)), axis=1)
        within = rng.permuted(np.tile(np.arange(3), (n, 3, 1)), axis=2)
        return (bands[:, :, None] * 3 + within).reshape(n, 9)

    rows, cols = lines(), lines()
    base = np.arange(81, dtype=np.uint8).reshape(9, 9)
    cells = np.where((rng.random(n) < 0.5)[:, None, None], base.T, base)
    positions = cells[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]].reshape(n, 81)
    digits = np.concatenate([np.zeros((n, 1), np.uint8),
                             rng.permuted(np.tile(np.arange(1, 10, dtype=np.uint8), (n, 1)), axis=1)], axis=1)
    return positions, digits


def random_transform(rng: random.Random) -> Transform:
    """A uniformly random transform of the group used by the official Sudoku augmentation."""
    return Transform(
        transpose=rng.random() < 0.5,
        rows=_line_permutation(rng),
        cols=_line_permutation(rng),
        digits=(0, *rng.sample(range(1, 10), 9)),
    )
