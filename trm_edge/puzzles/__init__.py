"""Puzzle tasks (numpy only): codecs, generators, solvers/validators, augmentations, datasets.

Every task module (``sudoku``, ``maze``, ``arc``) offers the same codec interface, which is what the
rest of trm-edge (the solver, quantization's calibration data, the CLI) codes against::

    task = get_task("sudoku")
    task.NAME, task.SEQ_LEN, task.VOCAB_SIZE, task.PAD_ID
    grid = task.parse(text)              # text -> grid (np.ndarray); PuzzleError on bad text
    tokens = task.to_tokens(grid)        # grid -> int32[seq_len], official token ids
    grid = task.from_tokens(tokens)      # tokens -> grid; PuzzleError on non-grid tokens
    text = task.decode(tokens)           # tokens -> text for display; never raises
    text = task.format_grid(grid)        # grid -> canonical text (parses back)
    text = task.render(grid)             # grid -> readable text for a terminal
    ok = task.is_valid(puzzle_tokens, answer_tokens)   # is the answer right? never raises
    why = task.problem(puzzle_tokens, answer_tokens)   # None when it is, else why not; never raises

:mod:`trm_edge.puzzles.codec` adapts a task module to the small ``Codec`` protocol the solver and the CLI speak
(``get_codec(task)``: parse text to tokens, decode, render, validate).

``is_valid`` is exact for Sudoku (the answer keeps the givens and obeys the rules) and Maze (the
answer marks a shortest S -> G path); an ARC answer can only be checked against the task's
solution, so there it checks that the answer is a well-formed grid.

Nothing here imports torch: the device-side solver imports this package.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from trm_edge.errors import PuzzleError, choices

# Answer length per task in the official datasets; the import of official checkpoints uses it.
TASK_SEQ_LEN = {"sudoku": 81, "maze": 900, "arc": 900}

# Task registry: name -> module implementing the codec interface above.
TASKS = {"sudoku": "trm_edge.puzzles.sudoku", "maze": "trm_edge.puzzles.maze", "arc": "trm_edge.puzzles.arc"}

CODEC_INTERFACE = ("NAME", "SEQ_LEN", "VOCAB_SIZE", "PAD_ID", "parse", "to_tokens", "from_tokens", "decode",
                   "format_grid", "render", "is_valid", "problem")


def get_task(name: str) -> ModuleType:
    """The codec module of a task; PuzzleError naming the valid tasks for an unknown one."""
    if name not in TASKS:
        raise PuzzleError(f"unknown task {name!r}; valid: {choices(TASKS)}")
    return importlib.import_module(TASKS[name])


def task_names() -> list[str]:
    return list(TASKS)
