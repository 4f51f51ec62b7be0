"""Independent checkers for tests: a set-based Sudoku solution counter and a maze path counter.

Deliberately written differently from trm_edge.puzzles (no bitmasks, no hidden singles), so a bug in
the production solver is unlikely to be mirrored here.
"""

from __future__ import annotations

from collections import deque

import numpy as np


def count_sudoku_solutions(grid: np.ndarray, limit: int = 2) -> list[np.ndarray]:
    """Up to ``limit`` solutions of a 9x9 grid (0 = blank), by MRV backtracking over sets."""
    cells = [[int(v) for v in row] for row in np.asarray(grid).reshape(9, 9)]
    found: list[np.ndarray] = []

    def options(r: int, c: int) -> set[int]:
        used = set(cells[r]) | {cells[i][c] for i in range(9)}
        br, bc = 3 * (r // 3), 3 * (c // 3)
        used |= {cells[i][j] for i in range(br, br + 3) for j in range(bc, bc + 3)}
        return set(range(1, 10)) - used

    def go() -> None:
        best = None
        for r in range(9):
            for c in range(9):
                if cells[r][c] == 0:
                    opts = options(r, c)
                    if best is None or len(opts) < len(best[2]):
                        best = (r, c, opts)
        if best is None:
            found.append(np.array(cells, dtype=np.uint8))
            return
        r, c, opts = best
        for d in sorted(opts):
            cells[r][c] = d
            go()
            cells[r][c] = 0
            if len(found) >= limit:
                return

    go()
    return found


def maze_shortest_paths(grid: np.ndarray) -> tuple[int, int]:
    """(length in moves, number of shortest paths) from 'S' (3) to 'G' (4) through non-walls (1 = wall)."""
    grid = np.asarray(grid)
    n = grid.shape[0]
    (sr,), (sc,) = np.nonzero(grid == 3)
    (gr,), (gc,) = np.nonzero(grid == 4)
    dist = {(int(sr), int(sc)): 0}
    ways = {(int(sr), int(sc)): 1}
    queue = deque([(int(sr), int(sc))])
    while queue:
        r, c = queue.popleft()
        for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            if 0 <= nr < n and 0 <= nc < n and grid[nr, nc] != 1:
                if (nr, nc) not in dist:
                    dist[(nr, nc)] = dist[(r, c)] + 1
                    ways[(nr, nc)] = ways[(r, c)]
                    queue.append((nr, nc))
                elif dist[(nr, nc)] == dist[(r, c)] + 1:
                    ways[(nr, nc)] += ways[(r, c)]
    goal = (int(gr), int(gc))
    return (dist[goal], ways[goal]) if goal in dist else (-1, 0)
