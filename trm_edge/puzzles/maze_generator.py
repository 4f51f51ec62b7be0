"""Maze generator: cave-like mazes with a long, unique shortest path from S to G.

Walls are single cells (no lattice), as in the Maze-Hard data. A randomised depth-first carve opens
a cell only when exactly one of its 4 neighbours is open, which grows a spanning tree of 1-wide
corridors filling ~60% of the grid; then ``loops`` wall cells that touch two or more corridors are
opened, so that the shortest path is a real choice among routes and not the only route. ``S`` is a
random open cell; ``G`` is drawn among the cells at least ``min_path`` moves away that have exactly
one shortest path (one BFS counts shortest paths to every cell). Pure random walls cannot do
this: at 30x30 their longest shortest paths are ~60 moves, far from Maze-Hard's 110.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from trm_edge.errors import ConfigError, PuzzleError, choices
from trm_edge.puzzles import maze
from trm_edge.puzzles.common import Progress, chunked, item_random, parallel_map

MAX_ATTEMPTS = 500  # mazes per puzzle before giving up on a hardness that (almost) never occurs
START_TRIES = 4  # start cells tried per maze


@dataclass(frozen=True)
class MazeOptions:
    """Generator settings. ``None`` fields scale with the size (110 moves and 9 loops at 30x30)."""

    size: int = maze.DEFAULT_SIZE
    min_path: int | None = None  # Maze-Hard keeps paths of at least 110 moves at 30x30
    max_path: int | None = None
    loops: int | None = None  # extra openings; more loops = more alternative routes, shorter paths

    def __post_init__(self) -> None:
        if not 4 <= self.size <= 64:
            raise ConfigError(f"maze size {self.size} is out of range: use 4-64")
        if self.min_path is not None and self.min_path < 1:
            raise ConfigError(f"maze min_path {self.min_path} must be at least 1")
        if self.max_path is not None and self.max_path < self.path_floor:
            raise ConfigError(f"maze max_path {self.max_path} is below min_path {self.path_floor}")
        if self.loops is not None and self.loops < 0:
            raise ConfigError(f"maze loops {self.loops} must be >= 0")

    @property
    def path_floor(self) -> int:
        if self.min_path is not None:
            return self.min_path
        return max(1, round(110 * self.size * self.size / 900))

    @property
    def loop_count(self) -> int:
        return self.loops if self.loops is not None else self.size * self.size // 100

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MazeOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown maze option(s) {choices(unknown)}; valid: {choices(sorted(known))}")
        return cls(**values)


def carve(side: int, rng, loops: int) -> bytearray:
    """Open cells (1) of a random cave maze: a corridor tree plus ``loops`` extra openings."""
    table = maze.neighbours(side)
    is_open = bytearray(side * side)
    degree = [0] * (side * side)  # open neighbours of each cell

    def open_cell(u: int) -> None:
        is_open[u] = 1
        for w in table[u]:
            degree[w] += 1

    first = rng.randrange(side * side)
    open_cell(first)
    stack = [first]
    while stack:
        u = stack[-1]
        options = [v for v in table[u] if not is_open[v] and degree[v] == 1]
        if not options:
            stack.pop()
            continue
        v = options[rng.randrange(len(options))]
        open_cell(v)
        stack.append(v)
    walls = [u for u in range(side * side) if not is_open[u] and degree[u] >= 2]
    for u in rng.sample(walls, min(loops, len(walls))):
        is_open[u] = 1
    return is_open


def draw(seed: int, stream: int, index: int, options: MazeOptions, salt: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """Maze ``index`` of a stream: (puzzle grid, label grid, path length)."""
    rng = item_random(seed, stream, index, salt)
    side, low, high = options.size, options.path_floor, options.max_path
    for _ in range(MAX_ATTEMPTS):
        is_open = carve(side, rng, options.loop_count)
        cells = [u for u in range(side * side) if is_open[u]]
        for _ in range(START_TRIES):
            start = cells[rng.randrange(len(cells))]
            dist, count = maze.bfs(is_open, side, start)
            goals = [u for u in cells if dist[u] >= low and (high is None or dist[u] <= high) and count[u] == 1]
            if goals:
                goal = goals[rng.randrange(len(goals))]
                grid = np.where(np.frombuffer(bytes(is_open), dtype=np.uint8) > 0, maze.OPEN, maze.WALL)
                grid = grid.astype(np.uint8)
                grid[start], grid[goal] = maze.START, maze.GOAL
                grid = grid.reshape(side, side)
                return grid, maze.trace(grid, dist, goal), dist[goal]
    raise PuzzleError(f"maze: no {side}x{side} maze with a unique shortest path of {low}-{high or 'any'} moves "
                      f"in {MAX_ATTEMPTS} attempts; lower min_path or use fewer loops")


def _draw_chunk(job: tuple[int, int, tuple[int, int], MazeOptions]) -> list:
    seed, stream, (start, stop), options = job
    return [draw(seed, stream, i, options) for i in range(start, stop)]


def generate(n: int, *, seed: int, options: MazeOptions | None = None, stream: int = 0, start: int = 0,
             workers: int = 1, progress: Progress | None = None, **option_values: Any) -> maze.MazeSet:
    """``n`` mazes with a unique shortest path, seeded and reproducible (maze ``i`` depends only on
    ``(seed, stream, start + i, options)``). Options come as ``options`` or as keywords
    (``generate(10, seed=0, size=12, min_path=20)``)."""
    options = MazeOptions.from_dict({**(options or MazeOptions()).to_dict(), **option_values})
    jobs = [(seed, stream, span, options) for span in chunked(start, start + n, 20)]
    drawn = parallel_map(_draw_chunk, jobs, workers=workers, progress=progress, description="maze", total=n)
    shape = (len(drawn), options.size, options.size)
    return maze.MazeSet(np.array([d[0] for d in drawn], dtype=np.uint8).reshape(shape),
                        np.array([d[1] for d in drawn], dtype=np.uint8).reshape(shape),
                        np.array([d[2] for d in drawn], dtype=np.int32))
