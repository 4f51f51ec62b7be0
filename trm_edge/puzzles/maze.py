"""Mazes: text <-> grid <-> tokens, BFS shortest paths, validation, dihedral augmentations, CSV import.

Charset ``# SGo`` (wall, open, start, goal, path), tokens 1-5 in that order, PAD 0, vocabulary 6.
A grid is a ``uint8`` array ``[n, n]`` holding those token ids, so ``to_tokens`` is a reshape. The
official Maze-Hard mazes are 30x30 (900 tokens); any square size works here.

A puzzle has one ``S`` and one ``G``; its label is the same maze with the cells of the shortest
``S`` -> ``G`` path (4-neighbour moves through non-wall cells, ``S`` and ``G`` excluded) marked
``o``. Path length counts moves, so a path of length L marks L - 1 cells.

Text forms accepted by :func:`parse`: ``n`` lines of ``n`` characters, one line of ``n*n``
characters (the CSV form), or :func:`render`'s framed form. Spaces are cells, so lines are never
stripped of them.

Codec interface (see :mod:`trm_edge.puzzles`): ``parse``, ``format_grid``, ``render``,
``to_tokens``, ``from_tokens``, ``decode``, ``is_valid``. The generator lives in
:mod:`trm_edge.puzzles.maze_generator`.
"""

from __future__ import annotations

import math
import os
from collections import deque
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from trm_edge.errors import PuzzleError
from trm_edge.puzzles.common import char_grid, dihedral, inverse_dihedral, read_csv_rows, removeprefix

NAME = "maze"
CHARSET = "# SGo"
WALL, OPEN, START, GOAL, PATH = 1, 2, 3, 4, 5
PAD_ID = 0
VOCAB_SIZE = len(CHARSET) + 1
SPACE_IS_CELL = True  # a row of open cells is a line of spaces: in a file, only empty lines separate mazes
DEFAULT_SIZE = 30
SEQ_LEN = DEFAULT_SIZE * DEFAULT_SIZE
_CHAR_TO_TOKEN = {c: i + 1 for i, c in enumerate(CHARSET)}
_TOKEN_TO_CHAR = np.array(list("?" + CHARSET))


# ---------------------------------------------------------------------------------------------
# Text


def parse(text: str, *, check: bool = True) -> np.ndarray:
    """Parse a maze (puzzle or answer) into a ``[n, n]`` grid of token ids.

    ``check`` requires exactly one ``S`` and one ``G``.
    """
    body = text.strip("\r\n")
    if "\n" not in body:
        side = math.isqrt(len(body))
        if side * side != len(body) or side == 0:
            raise PuzzleError(f"maze: a one-line maze needs a square number of characters, got {len(body)}")
        rows = char_grid("\n".join(body[i:i + side] for i in range(0, len(body), side)), CHARSET, what="maze")
    else:
        rows = char_grid(_unframe(body), CHARSET, what="maze")
    if len(rows) != len(rows[0]):
        raise PuzzleError(f"maze: mazes are square; got {len(rows)} rows of {len(rows[0])} characters")
    grid = np.array([[_CHAR_TO_TOKEN[c] for c in row] for row in rows], dtype=np.uint8)
    if check:
        check_endpoints(grid)
    return grid


def _unframe(text: str) -> str:
    """Strip :func:`render`'s ``+---+`` / ``|...|`` frame, if there is one."""
    lines = text.split("\n")
    edge = lines[0].rstrip("\r")
    if len(edge) < 3 or edge[0] != "+" or edge[-1] != "+" or set(edge[1:-1]) != {"-"}:
        return text
    inner = []
    for number, line in enumerate(lines[1:-1], start=2):
        line = line.rstrip("\r")
        if len(line) < 2 or line[0] != "|" or line[-1] != "|":
            raise PuzzleError(f"maze: line {number}: a framed maze row must start and end with '|'")
        inner.append(line[1:-1])
    return "\n".join(inner)


def format_grid(grid: np.ndarray) -> str:
    """One line per row, in the charset (the lines of the CSV form)."""
    grid = _as_grid(grid)
    return "\n".join("".join(_TOKEN_TO_CHAR[row]) for row in grid)


def render(grid: np.ndarray) -> str:
    """The maze inside a frame, so that open cells on the border stay visible."""
    lines = format_grid(grid).split("\n")
    edge = "+" + "-" * len(lines[0]) + "+"
    return "\n".join([edge, *(f"|{line}|" for line in lines), edge])


# ---------------------------------------------------------------------------------------------
# Tokens


def _as_grid(grid: np.ndarray) -> np.ndarray:
    array = np.asarray(grid)
    if array.ndim == 2 and array.shape[0] == array.shape[1]:
        return array
    side = math.isqrt(array.size)
    if side * side != array.size or side == 0:
        raise PuzzleError(f"maze: expected a square grid, got an array of shape {array.shape}")
    return array.reshape(side, side)


def to_tokens(grid: np.ndarray) -> np.ndarray:
    """``int32[n*n]`` (the grid already holds token ids)."""
    return _as_grid(grid).reshape(-1).astype(np.int32)


def from_tokens(tokens: np.ndarray) -> np.ndarray:
    """Grid from ``n*n`` tokens; PuzzleError names the first token outside 1-5."""
    values = np.asarray(tokens).reshape(-1).astype(np.int64)
    bad = np.flatnonzero((values < 1) | (values > len(CHARSET)))
    if bad.size:
        i = int(bad[0])
        raise PuzzleError(f"maze: token {int(values[i])} at position {i} is not a maze token (1-{len(CHARSET)})")
    return _as_grid(values.astype(np.uint8))


def decode(tokens: np.ndarray) -> str:
    """Text of tokens for display (one line per row); tokens outside 1-5 show as ``?``."""
    values = np.asarray(tokens).reshape(-1).astype(np.int64)
    values[(values < 0) | (values > len(CHARSET))] = 0
    return format_grid(_as_grid(values))


def is_valid(puzzle_tokens: np.ndarray, answer_tokens: np.ndarray) -> bool:
    """Whether the answer marks a shortest S -> G path of the puzzle; never raises."""
    return problem(puzzle_tokens, answer_tokens) is None


def problem(puzzle_tokens: np.ndarray, answer_tokens: np.ndarray) -> str | None:
    """Why the answer is not a shortest S -> G path of the puzzle (None when it is); never raises."""
    try:
        return answer_problem(from_tokens(puzzle_tokens), from_tokens(answer_tokens))
    except PuzzleError as error:
        return removeprefix(str(error), f"{NAME}: ")


# ---------------------------------------------------------------------------------------------
# Paths


def check_endpoints(grid: np.ndarray) -> tuple[int, int]:
    """Flat indices of ``S`` and ``G``; PuzzleError unless there is exactly one of each."""
    flat = _as_grid(grid).reshape(-1)
    ends = []
    for token, name in ((START, "S"), (GOAL, "G")):
        where = np.flatnonzero(flat == token)
        if where.size != 1:
            raise PuzzleError(f"maze: expected exactly one {name!r}, found {where.size}")
        ends.append(int(where[0]))
    return ends[0], ends[1]


def check_puzzle(grid: np.ndarray) -> None:
    """A puzzle: one S, one G, no path cells, and G reachable from S."""
    if (_as_grid(grid) == PATH).any():
        raise PuzzleError("maze: a puzzle must not contain path cells 'o'")
    if path_length(grid) < 0:
        raise PuzzleError("maze: the goal 'G' cannot be reached from the start 'S'")


@lru_cache(maxsize=8)
def neighbours(side: int) -> tuple[tuple[int, ...], ...]:
    """4-neighbours of every cell of a ``side`` x ``side`` grid (flat indices)."""
    table = []
    for u in range(side * side):
        r, c = divmod(u, side)
        table.append(tuple(v for v, ok in ((u - side, r > 0), (u + side, r < side - 1),
                                           (u - 1, c > 0), (u + 1, c < side - 1)) if ok))
    return tuple(table)


def bfs(passable: list[bool] | bytearray, side: int, source: int) -> tuple[list[int], list[int]]:
    """Distances from ``source`` (-1 unreachable) and numbers of shortest paths, capped at 2."""
    table = neighbours(side)
    dist = [-1] * (side * side)
    count = [0] * (side * side)
    dist[source], count[source] = 0, 1
    queue = deque([source])
    while queue:
        u = queue.popleft()
        du, cu = dist[u] + 1, count[u]
        for v in table[u]:
            if passable[v]:
                dv = dist[v]
                if dv < 0:
                    dist[v], count[v] = du, cu
                    queue.append(v)
                elif dv == du and count[v] < 2:
                    count[v] = min(2, count[v] + cu)
    return dist, count


def _search(grid: np.ndarray) -> tuple[int, int, int, list[int], list[int], list[bool]]:
    grid = _as_grid(grid)
    start, goal = check_endpoints(grid)
    passable = (grid.reshape(-1) != WALL).tolist()
    dist, count = bfs(passable, grid.shape[0], start)
    return start, goal, grid.shape[0], dist, count, passable


def path_length(grid: np.ndarray) -> int:
    """Moves on a shortest S -> G path, or -1 when G is unreachable."""
    _, goal, _, dist, _, _ = _search(grid)
    return dist[goal]


def shortest_path_count(grid: np.ndarray) -> int:
    """Number of shortest S -> G paths: 0, 1, or 2 meaning "two or more"."""
    _, goal, _, _, count, _ = _search(grid)
    return count[goal]


def trace(grid: np.ndarray, dist: list[int], goal: int) -> np.ndarray:
    """``grid`` with the path marked that walks from ``goal`` down ``dist`` (BFS distances from S)."""
    side = grid.shape[0]
    table = neighbours(side)
    flat = grid.reshape(-1)
    answer = flat.copy()
    u = goal
    while dist[u] > 1:  # S (distance 0) and G stay as they are
        u = next(v for v in table[u] if flat[v] != WALL and dist[v] == dist[u] - 1)
        answer[u] = PATH
    return answer.reshape(grid.shape)


def solve(grid: np.ndarray) -> np.ndarray:
    """The puzzle with a shortest path marked (the one, when it is unique); PuzzleError if none."""
    grid = _as_grid(grid)
    _, goal, _, dist, _, _ = _search(grid)
    if dist[goal] < 0:
        raise PuzzleError("maze: the goal 'G' cannot be reached from the start 'S'")
    return trace(grid, dist, goal)


def validate(puzzle: np.ndarray, answer: np.ndarray) -> bool:
    """Whether ``answer`` is ``puzzle`` with exactly the cells of one shortest S -> G path marked."""
    return answer_problem(puzzle, answer) is None


def answer_problem(puzzle: np.ndarray, answer: np.ndarray) -> str | None:
    """Why ``answer`` is not ``puzzle`` with one shortest S -> G path marked (None when it is): the maze
    changed, the marked cells do not connect S to G through open cells, or they make a longer path."""
    puzzle, answer = _as_grid(puzzle), _as_grid(answer)
    if puzzle.shape != answer.shape:
        return f"the answer is {answer.shape[0]}x{answer.shape[1]}, the maze {puzzle.shape[0]}x{puzzle.shape[1]}"
    marked = answer == PATH
    changed = np.argwhere(np.where(marked, OPEN, answer) != np.where(puzzle == PATH, OPEN, puzzle))
    if changed.size:  # walls, S and G must stay; only open cells may be marked
        r, c = (int(v) for v in changed[0])
        found, expected = (str(_TOKEN_TO_CHAR[grid[r, c]]) for grid in (answer, puzzle))
        return f"cell ({r}, {c}) is {found!r} in the answer but {expected!r} in the maze"
    try:
        start, goal, side, dist, _, _ = _search(puzzle)
    except PuzzleError as error:
        return str(error)
    shortest = dist[goal]
    if shortest < 0:
        return "the maze has no path from 'S' to 'G'"
    on_path = (marked | (answer == START) | (answer == GOAL)).reshape(-1).tolist()
    walked = bfs(on_path, side, start)[0][goal]
    if walked < 0:
        return f"the {int(marked.sum())} marked cells do not connect 'S' to 'G'"
    # With S and G connected through marked cells, the walk uses at least `shortest` moves; with exactly
    # shortest - 1 marked cells it uses every one of them once, so they are that path and nothing else.
    if int(marked.sum()) != shortest - 1:
        return (f"{int(marked.sum())} cells marked; a shortest path from 'S' to 'G' has {shortest} moves "
                f"({shortest - 1} cells)")
    return None


# ---------------------------------------------------------------------------------------------
# Sets and augmentation


@dataclass
class MazeSet:
    """Puzzles and their labels, uint8 ``[n, side, side]``, and path lengths int32 ``[n]``."""

    puzzles: np.ndarray
    solutions: np.ndarray
    path_lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.puzzles)


def augment(grid: np.ndarray, tid: int) -> np.ndarray:
    """Dihedral transform ``tid`` (0-7, numbered as the official builders do) of a maze."""
    return np.ascontiguousarray(dihedral(_as_grid(grid), tid))


def inverse_augment(grid: np.ndarray, tid: int) -> np.ndarray:
    return np.ascontiguousarray(inverse_dihedral(_as_grid(grid), tid))


def read_csv(path: str | os.PathLike, *, limit: int | None = None) -> MazeSet:
    """Read the Maze-Hard layout ``source,question,answer,rating`` (one-line mazes); every answer is
    checked to be the puzzle's shortest path, and PuzzleError names the file and line otherwise."""
    puzzles, answers, lengths = [], [], []
    side = None
    for row in read_csv_rows(path):
        if limit is not None and len(puzzles) >= limit:
            break
        try:
            puzzle = parse(row.question)
            check_puzzle(puzzle)
            answer = parse(row.answer)
        except PuzzleError as error:
            raise PuzzleError(f"{path}:{row.line}: {error}") from None
        if side is None:
            side = puzzle.shape[0]
        if puzzle.shape != (side, side) or answer.shape != (side, side):
            raise PuzzleError(f"{path}:{row.line}: maze is {puzzle.shape[0]}x{puzzle.shape[0]}, earlier rows are "
                              f"{side}x{side}")
        if not validate(puzzle, answer):
            raise PuzzleError(f"{path}:{row.line}: the answer is not a shortest path from 'S' to 'G'")
        puzzles.append(puzzle)
        answers.append(answer)
        lengths.append(int((answer == PATH).sum()) + 1)
    shape = (len(puzzles), side or DEFAULT_SIZE, side or DEFAULT_SIZE)
    return MazeSet(np.array(puzzles, dtype=np.uint8).reshape(shape), np.array(answers, dtype=np.uint8).reshape(shape),
                   np.array(lengths, dtype=np.int32))
