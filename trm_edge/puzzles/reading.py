"""Puzzles as users write them (command-line text, a file of blocks, a request's strings) parsed for a model:
what ``trm-edge solve`` and ``trm-edge serve`` read, with the same messages."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from trm_edge.errors import PuzzleError


def read_puzzles(puzzles: list[str], file: Path | None, codec, seq_len: int
                 ) -> tuple[list[tuple[str, Any]], list[tuple[str, str]]]:
    """Parse command-line puzzles and a file: ([(label, tokens)], [(label, error)]).

    In a file, puzzles are separated by blank lines (empty lines for mazes, whose rows of open cells are
    spaces); a block that does not parse as one puzzle is read as one puzzle per line (so a file of
    one-line sudokus works). A puzzle of another size than the model's (``seq_len`` cells) is an error."""
    items: list[tuple[str, str]] = [(f"puzzle {i + 1}", text) for i, text in enumerate(puzzles)]
    if file is not None:
        try:
            text = sys.stdin.read() if str(file) == "-" else file.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise PuzzleError(f"cannot read {str(file)!r}: {error}") from None
        block: list[str] = []
        start = 1
        blocks: list[tuple[int, list[str]]] = []
        for line_no, line in enumerate(text.splitlines(), 1):
            if line.rstrip("\r") if codec.space_is_cell else line.strip():
                if not block:
                    start = line_no
                block.append(line)
            elif block:
                blocks.append((start, block))
                block = []
        if block:
            blocks.append((start, block))
        if not blocks:
            raise PuzzleError(f"{str(file)!r} holds no puzzles")
        for start, lines in blocks:
            if len(lines) > 1 and parses(codec, lines[0], seq_len):  # a block of one-line puzzles of the model's size
                items += [(f"{file}:{start + k}", line) for k, line in enumerate(lines)]
            else:  # one puzzle, whose error (a missing row, a missing cell) names the puzzle as written
                items.append((f"{file}:{start}", "\n".join(lines)))
    parsed, errors = [], []
    for label, text in items:
        try:
            tokens = codec.parse(text)
        except PuzzleError as error:
            errors.append((label, " ".join(str(error).split())))
            continue
        if tokens.size != seq_len:
            errors.append((label, f"the puzzle is {size_text(tokens.size)}; this model solves {size_text(seq_len)}"))
        else:
            parsed.append((label, tokens))
    return parsed, errors


def parses(codec, text: str, cells: int) -> bool:
    """Whether ``text`` is one puzzle of ``cells`` cells (the first row of a 9x9 maze is a 3x3 maze, not a puzzle)."""
    try:
        return codec.parse(text).size == cells
    except PuzzleError:
        return False


def size_text(cells: int) -> str:
    import math

    side = math.isqrt(cells)
    return f"{side}x{side} ({cells} cells)" if side * side == cells else f"{cells} cells"


def first_error(errors: list[tuple[str, str]]) -> PuzzleError:
    """The one-line error for puzzles that did not parse: the first, and how many more."""
    label, message = errors[0]
    return PuzzleError(f"{label}: {message}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
