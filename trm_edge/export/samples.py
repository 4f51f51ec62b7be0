"""Puzzle-like token batches for export validation and golden I/O (numpy only, seeded).

Validation must see the token statistics of real puzzles (mostly a few symbols, structured grids),
not uniform noise. These are quick stand-ins in the official token layout (docs/design.md); callers with
real puzzles pass them instead (``validation_inputs``).
"""

from __future__ import annotations

import math

import numpy as np


def puzzle_tokens(task: str | None, seq_len: int, vocab_size: int, count: int, *, seed: int = 0) -> np.ndarray:
    """``count`` token rows ``[count, seq_len]`` int32 shaped like ``task``'s puzzles."""
    rng = np.random.default_rng(seed)
    side = math.isqrt(seq_len)
    square = side * side == seq_len
    if task == "sudoku" and seq_len == 81 and vocab_size >= 11:
        rows = [_sudoku(rng) for _ in range(count)]
    elif task == "maze" and square and vocab_size >= 6:
        rows = [_maze(rng, side) for _ in range(count)]
    elif task == "arc" and square and vocab_size >= 12:
        rows = [_arc(rng, side) for _ in range(count)]
    else:
        rows = [rng.integers(1 if vocab_size > 1 else 0, vocab_size, seq_len) for _ in range(count)]
    return np.stack(rows).astype(np.int32)


def _sudoku(rng: np.random.Generator) -> np.ndarray:
    """A valid solved grid (shuffled canonical pattern) with about 55% of cells blanked: PAD 0, blank 1,
    digit d -> d + 1."""
    def shuffled_groups() -> np.ndarray:
        return np.concatenate([3 * g + rng.permutation(3) for g in rng.permutation(3)])

    rows, cols, digits = shuffled_groups(), shuffled_groups(), rng.permutation(9) + 1
    grid = np.array([[digits[(3 * (r % 3) + r // 3 + c) % 9] for c in cols] for r in rows])
    tokens = grid.reshape(-1) + 1
    tokens[rng.random(81) < 0.55] = 1
    return tokens


def _maze(rng: np.random.Generator, side: int) -> np.ndarray:
    """Walls '#' (1) at random with a closed border, open ' ' (2), start 'S' (3), goal 'G' (4)."""
    grid = np.where(rng.random((side, side)) < 0.3, 1, 2)
    grid[0, :] = grid[-1, :] = grid[:, 0] = grid[:, -1] = 1
    inner = [(r, c) for r in range(1, side - 1) for c in range(1, side - 1)] or [(0, 0), (0, 1)]
    start, goal = rng.choice(len(inner), size=2, replace=False)
    grid[inner[start]], grid[inner[goal]] = 3, 4
    return grid.reshape(-1)


def _arc(rng: np.random.Generator, side: int) -> np.ndarray:
    """An ARC grid of random size on the canvas: colours c -> c + 2, EOS (1) on its right and bottom
    edge, PAD (0) beyond."""
    canvas = np.zeros((side, side), dtype=np.int64)
    h, w = (int(rng.integers(1, side)) for _ in range(2))
    background = int(rng.integers(0, 10))
    grid = np.full((h, w), background)
    blobs = rng.random((h, w)) < 0.3
    grid[blobs] = rng.integers(0, 10, int(blobs.sum()))
    canvas[:h, :w] = grid + 2
    canvas[h, : w + 1] = 1
    canvas[: h + 1, w] = 1
    return canvas.reshape(-1)
