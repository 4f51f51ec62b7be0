"""Helpers shared by the task modules: dihedral transforms, seeding, CSV rows, parallel generation."""

from __future__ import annotations

import csv
import os
import random
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar  # collections.abc.Callable[...] needs Python 3.9

import numpy as np

from trm_edge.errors import PuzzleError

T = TypeVar("T")

# Progress callback used by generators and builders: (description, completed, total).
Progress = Callable[[str, int, int], None]


def removeprefix(text: str, prefix: str) -> str:
    """``text.removeprefix(prefix)``, which Python 3.8 (JetPack 5) lacks."""
    return text[len(prefix):] if text.startswith(prefix) else text


# ---------------------------------------------------------------------------------------------
# Dihedral transforms, numbered as the official builders number them (dataset/common.py), so that
# an ARC puzzle named "task|||t5|||..." means the same transform here and there.

DIHEDRAL_INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)


def dihedral(grid: np.ndarray, tid: int) -> np.ndarray:
    """One of the 8 symmetries of the square: 0 identity, 1-3 rotations by 90/180/270 degrees
    counter-clockwise, 4 left-right flip, 5 up-down flip, 6 transpose, 7 anti-transpose."""
    if tid == 0:
        return grid
    if tid in (1, 2, 3):
        return np.rot90(grid, k=tid)
    if tid == 4:
        return np.fliplr(grid)
    if tid == 5:
        return np.flipud(grid)
    if tid == 6:
        return grid.T
    if tid == 7:
        return np.fliplr(np.rot90(grid, k=1))
    raise ValueError(f"dihedral transform id must be 0-7, got {tid}")


def inverse_dihedral(grid: np.ndarray, tid: int) -> np.ndarray:
    return dihedral(grid, DIHEDRAL_INVERSE[tid])


# ---------------------------------------------------------------------------------------------
# Seeding: item ``index`` of stream ``stream`` of a build seeded ``seed`` gets its own generator,
# so the items do not depend on how many are drawn, in which order, or by how many workers.

STREAMS = {"test": 1, "train": 2}


def item_random(seed: int, stream: int, index: int, salt: int = 0) -> random.Random:
    """A ``random.Random`` for one generated item (``salt`` redraws an item, e.g. a duplicate)."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, seed >> 32, stream, index, salt]).generate_state(2)
    return random.Random(int(state[0]) << 32 | int(state[1]))


def parallel_map(fn: Callable[[T], list], chunks: Sequence[T], *, workers: int = 1,
                 progress: Progress | None = None, description: str = "", total: int = 0) -> list:
    """``fn`` over ``chunks`` (each returning a list), concatenated in order; ``workers`` > 1 uses
    processes. ``progress`` is told the number of items done after each chunk."""
    results: list = []
    done = 0

    def report(part: list) -> None:
        nonlocal done
        results.extend(part)
        done += len(part)
        if progress is not None:
            progress(description, done, total)

    if workers <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            report(fn(chunk))
        return results
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for part in pool.map(fn, chunks):
            report(part)
    return results


def chunked(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(i + size, stop)) for i in range(start, stop, size)]


# ---------------------------------------------------------------------------------------------
# Text grids and CSV files


def char_grid(text: str, alphabet: str, *, what: str) -> list[str]:
    """Split ``text`` into rows of equal width made of ``alphabet`` characters.

    Empty lines at the start and end are dropped (lines of spaces are kept: a space can be a
    cell). Errors name the line and column: ``maze: line 3, column 7: invalid character 'x'``.
    """
    lines = [line.rstrip("\r") for line in text.split("\n")]
    first = 0
    while first < len(lines) and not lines[first]:
        first += 1
    while lines and not lines[-1]:
        lines.pop()
    lines = lines[first:]
    if not lines:
        raise PuzzleError(f"{what}: empty text")
    width = len(lines[0])
    for number, line in enumerate(lines, start=first + 1):
        for column, char in enumerate(line, start=1):
            if char not in alphabet:
                raise PuzzleError(f"{what}: line {number}, column {column}: invalid character {char!r} "
                                  f"(allowed: {alphabet!r})")
        if len(line) != width:
            raise PuzzleError(f"{what}: line {number} has {len(line)} characters, line {first + 1} has {width}; "
                              "every row must have the same width")
    return lines


@dataclass(frozen=True)
class CsvRow:
    """One row of the Sudoku-Extreme / Maze-Hard CSV layout ``source,question,answer,rating``."""

    line: int
    source: str
    question: str
    answer: str
    rating: int


CSV_COLUMNS = ("source", "question", "answer", "rating")


def read_csv_rows(path: str | os.PathLike) -> Iterator[CsvRow]:
    """Rows of a ``source,question,answer,rating`` CSV file (header required); PuzzleError names the
    file and line of a short, long or corrupt row."""
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as error:
        raise PuzzleError(f"cannot read {str(path)!r}: {error.strerror or error}") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None or [h.strip().lower() for h in header] != list(CSV_COLUMNS):
                raise PuzzleError(f"{path}:1: expected the header {','.join(CSV_COLUMNS)!r}, got "
                                  f"{','.join(header or [])!r}")
            for row in reader:
                line = reader.line_num
                if not row:
                    continue
                if len(row) != len(CSV_COLUMNS):
                    raise PuzzleError(f"{path}:{line}: expected {len(CSV_COLUMNS)} columns "
                                      f"({','.join(CSV_COLUMNS)}), got {len(row)}")
                source, question, answer, rating = row
                try:
                    value = int(rating)
                except ValueError:
                    raise PuzzleError(f"{path}:{line}: rating {rating!r} is not an integer") from None
                yield CsvRow(line, source, question, answer, value)
        except (csv.Error, UnicodeDecodeError) as error:
            raise PuzzleError(f"{path}:{reader.line_num}: corrupt CSV: {error}") from None
