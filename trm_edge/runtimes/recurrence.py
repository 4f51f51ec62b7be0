"""Where the state lives between supervision steps. A :class:`Recurrence` is a batch of puzzles in flight: rows
are added with the initial state, advanced one step at a time, and dropped when done. ``HostRecurrence``
(interface.py) keeps the state in host memory (torch, OpenVINO, any runtime); onnxruntime keeps it in place in
bound buffers and TensorRT in device memory (their adapters). Only ``q_halt_logits`` must come back every step.
"""

from __future__ import annotations

import abc

import numpy as np

from trm_edge.errors import TrmEdgeError


class Recurrence(abc.ABC):
    """A batch of puzzles in flight. Rows are added with the initial state, advanced one supervision
    step at a time, and dropped when done; only ``q_halt_logits`` must come back every step."""

    @property
    @abc.abstractmethod
    def batch(self) -> int:
        """Rows currently in flight."""

    @abc.abstractmethod
    def add(self, inputs: np.ndarray, puzzle_embedding: np.ndarray | None) -> None:
        """Append rows (``inputs`` int32 ``[n, seq_len]``) that start from the initial state."""

    @abc.abstractmethod
    def step(self) -> np.ndarray:
        """Advance every row one supervision step; returns ``q_halt_logits`` float32 ``[batch]``."""

    @abc.abstractmethod
    def logits(self, rows: np.ndarray) -> np.ndarray:
        """Logits of the last step for ``rows`` (indices into the current batch): ``[n, seq_len, vocab]``."""

    @abc.abstractmethod
    def keep(self, rows: np.ndarray) -> None:
        """Keep only ``rows`` (ascending indices into the current batch), in that order."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Free what the recurrence holds."""


def kept_rows(rows: np.ndarray, batch: int) -> np.ndarray:
    """``keep``'s argument as indices, checked: ascending rows of the current ``batch``."""
    rows = np.asarray(rows, dtype=np.intp)
    if len(rows) and (np.any(np.diff(rows) <= 0) or rows[0] < 0 or rows[-1] >= batch):
        raise TrmEdgeError("keep() takes ascending row indices of the current batch")
    return rows
