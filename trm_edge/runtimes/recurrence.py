"""Where the state lives between supervision steps. A :class:`Recurrence` is a batch of puzzles in flight: rows
are added with the initial state, advanced one step at a time, and dropped when done. :class:`HostRecurrence` keeps
the state in host memory (torch, OpenVINO, any runtime); onnxruntime keeps it in place in bound buffers and TensorRT
in device memory (their adapters). Only ``q_halt_logits`` must come back every step.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

import numpy as np

from trm_edge.errors import TrmEdgeError

if TYPE_CHECKING:
    from trm_edge.runtimes.interface import Runtime


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


class HostRecurrence(Recurrence):
    """State in host memory, one ``runtime.step`` per step (torch, OpenVINO, static-batch graphs; any runtime when
    the recursion keeps the state). ``feeds`` are the next step's inputs, ``outputs`` the last step's outputs."""

    def __init__(self, runtime: Runtime, *, capacity: int) -> None:
        self.runtime = runtime
        cfg = runtime.config
        self.capacity = capacity
        self.h_init, self.l_init = runtime.initial_state()
        self.names = runtime.input_names
        empty_state = np.zeros((0, cfg.total_len, cfg.hidden_size), np.float32)
        self.feeds: dict[str, np.ndarray] = {"inputs": np.zeros((0, cfg.seq_len), np.int32), "z_H": empty_state,
                                             "z_L": empty_state.copy()}
        if "puzzle_embedding" in self.names:
            self.feeds["puzzle_embedding"] = np.zeros((0, cfg.puzzle_emb_ndim), np.float32)
        self._logits = np.zeros((0, cfg.seq_len, cfg.vocab_size), np.float32)
        self.outputs: dict[str, np.ndarray] = {}

    @property
    def batch(self) -> int:
        return int(self.feeds["inputs"].shape[0])

    def add(self, inputs: np.ndarray, puzzle_embedding: np.ndarray | None) -> None:
        cfg = self.runtime.config
        n = len(inputs)
        if self.batch + n > self.capacity:
            raise TrmEdgeError(f"recurrence holds at most {self.capacity} rows")
        shape = (n, cfg.total_len, cfg.hidden_size)
        new = {"inputs": np.asarray(inputs, np.int32), "z_H": np.broadcast_to(self.h_init, shape),
               "z_L": np.broadcast_to(self.l_init, shape)}
        if "puzzle_embedding" in self.names:
            new["puzzle_embedding"] = np.asarray(puzzle_embedding, np.float32)
        self.feeds = {k: np.concatenate((v, new[k])) for k, v in self.feeds.items()}
        self._logits = np.concatenate((self._logits, np.zeros((n, *self._logits.shape[1:]), np.float32)))

    def step(self) -> np.ndarray:
        batch = self.batch
        if batch == 0:
            return np.zeros(0, np.float32)
        out = self.outputs = self.runtime.step(self.feeds)
        self.feeds["z_H"] = out["z_H_next"][:batch]
        self.feeds["z_L"] = out["z_L_next"][:batch]
        self._logits = out["logits"][:batch]
        return np.asarray(out["q_halt_logits"][:batch], dtype=np.float32).reshape(batch)

    def logits(self, rows: np.ndarray) -> np.ndarray:
        return self._logits[np.asarray(rows, dtype=np.intp)]

    def keep(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.intp)
        self.feeds = {k: v[rows] for k, v in self.feeds.items()}
        self._logits = self._logits[rows]
        self.outputs = {}  # rows of the last step's outputs no longer match the batch

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        return self.feeds["z_H"], self.feeds["z_L"]
