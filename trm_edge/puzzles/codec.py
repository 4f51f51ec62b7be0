"""The solver's view of a puzzle task: parse text to tokens, decode tokens to text, render, validate.

A thin adapter over the task modules of trm_edge.puzzles (numpy only), so the solver and the CLI speak one
small protocol whatever the task module's own names are.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from trm_edge.errors import PuzzleError, choices
from trm_edge.puzzles import get_task, task_names


@runtime_checkable
class Codec(Protocol):
    name: str
    space_is_cell: bool  # a line of spaces is puzzle text (a maze row), not a blank line between puzzles

    def parse(self, text: str) -> np.ndarray:
        """Puzzle text -> input tokens ``[seq_len]`` int32; PuzzleError naming the problem."""

    def decode(self, tokens: np.ndarray) -> str:
        """Answer tokens -> text in the task's format."""

    def render(self, tokens: np.ndarray) -> str:
        """Tokens -> a readable grid for the terminal."""

    def is_valid(self, puzzle: np.ndarray, answer: np.ndarray) -> bool:
        """Whether ``answer`` (tokens) solves ``puzzle`` (tokens) by the task's rules."""

    def problem(self, puzzle: np.ndarray, answer: np.ndarray) -> str | None:
        """Why ``answer`` does not solve ``puzzle`` (None when it does)."""


class _TaskCodec:
    """Adapts a task module of trm_edge.puzzles (``parse`` -> grid, ``to_tokens``, ``from_tokens``,
    ``decode``, ``render``, ``is_valid``, ``problem``) to :class:`Codec`."""

    def __init__(self, name: str, task: object) -> None:
        self.name = name
        self.task = task
        self.space_is_cell = bool(getattr(task, "SPACE_IS_CELL", False))

    def parse(self, text: str) -> np.ndarray:
        if not text or not text.strip():
            raise PuzzleError(f"{self.name}: empty puzzle")
        return np.asarray(self.task.to_tokens(self.task.parse(text)), dtype=np.int32).reshape(-1)

    def decode(self, tokens: np.ndarray) -> str:
        return self.task.decode(np.asarray(tokens))

    def render(self, tokens: np.ndarray) -> str:
        try:
            return self.task.render(self.task.from_tokens(np.asarray(tokens)))
        except PuzzleError:  # an answer with non-cell tokens (PAD, EOS where they do not belong)
            return self.decode(tokens)

    def is_valid(self, puzzle: np.ndarray, answer: np.ndarray) -> bool:
        return bool(self.task.is_valid(np.asarray(puzzle), np.asarray(answer)))

    def problem(self, puzzle: np.ndarray, answer: np.ndarray) -> str | None:
        return self.task.problem(np.asarray(puzzle), np.asarray(answer))


def get_codec(task: str | None) -> Codec:
    """The codec of a task named in a bundle manifest or checkpoint (sudoku, maze, arc)."""
    if not task:
        raise PuzzleError(f"this model names no task, so its puzzles cannot be parsed; tasks: {choices(task_names())}")
    return _TaskCodec(task, get_task(task))
