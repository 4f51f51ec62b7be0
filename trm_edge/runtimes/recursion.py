"""The recursion core: the one loop over supervision steps. Every consumer is built on it: the solver (answers),
teacher-forced parity (another runtime fed the same states), calibration recording (the states and extra outputs
of a float graph) and export validation (the exported graph fed torch's states).

Puzzles enter the batch with the initial state; each step advances every row; a row leaves at the first step whose
``q_halt_logits`` exceed the threshold (the halting rule of trm_edge/bundle/contract.py, with ``halt=True``) or at
``max_steps``. With ``refill`` waiting puzzles take the freed rows at the next step, so a batch stays full while
there is work; without it a new batch starts when the last one is empty. Rows are independent in the step graph, so
batch composition does not change a puzzle's trajectory beyond float rounding.

The state stays where the runtime keeps it (:meth:`Runtime.start`) unless ``keep_state`` asks for each step's feeds
and outputs on the host, which teacher forcing (``followers``) needs.

numpy only: no torch here (the device side).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from trm_edge.bundle.contract import halts
from trm_edge.errors import PuzzleError, TrmEdgeError
from trm_edge.runtimes.interface import HostRecurrence, Runtime
from trm_edge.runtimes.recurrence import Recurrence


@dataclass
class Defaults:
    """The recursion's defaults, one set for the library and every CLI command that runs it."""

    batch_size: int = 16  # rows per step: fills 2 cores at 81 tokens (docs/quantization.md measures the batch)
    halt: bool = True  # stop each puzzle when its halting head says the answer is right, as deployments do
    refill: bool = True  # waiting puzzles take halted puzzles' rows: the batch stays full


DEFAULTS = Defaults()


@dataclass
class StepResult:
    """One supervision step of the rows in flight (row order: the recurrence's)."""

    puzzles: np.ndarray  # [rows] index of the puzzle each row holds
    steps: np.ndarray  # [rows] supervision steps each row has now run (1-based)
    q_halt_logits: np.ndarray  # [rows] float32
    halted: np.ndarray  # [rows] bool: the halting rule stopped the row at this step
    done: np.ndarray  # [rows] bool: the row leaves after this step (halted, or at max_steps)
    seconds: float  # wall time of the runtime's step
    recurrence: Recurrence = field(repr=False)
    feeds: Mapping[str, np.ndarray] | None = None  # with keep_state: what this step was fed
    outputs: Mapping[str, np.ndarray] | None = None  # with keep_state: every output (extras included)
    follower_outputs: list[dict[str, np.ndarray]] = field(default_factory=list)  # each follower's, same feeds
    follower_seconds: list[float] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.puzzles)

    def logits(self, rows: np.ndarray | None = None) -> np.ndarray:
        """``[n, seq_len, vocab]`` of this step for ``rows`` (indices into this step's rows; default all)."""
        return self.recurrence.logits(np.arange(self.rows) if rows is None else np.asarray(rows, np.intp))

    def preds(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The answer tokens of this step (argmax of the logits) for ``rows``."""
        return self.logits(rows).argmax(-1).astype(np.int32)


class Recursion:
    """Run ``runtime`` over puzzles, one supervision step at a time (see the module docstring).

    ``max_steps`` defaults to the model's ``halt_max_steps``; ``threshold`` (a logit) to the model's calibrated one
    (the bundle's ``loop.halt_threshold`` / the checkpoint's), 0 when it has none. ``followers`` are runtimes of the
    same model run on the very feeds of each step (teacher forcing: the lead's state, not their own)."""

    def __init__(self, runtime: Runtime, *, batch_size: int = DEFAULTS.batch_size, max_steps: int | None = None,
                 halt: bool = DEFAULTS.halt, threshold: float | None = None, refill: bool = DEFAULTS.refill,
                 followers: Sequence[Runtime] = (), keep_state: bool = False) -> None:
        if batch_size < 1:
            raise TrmEdgeError(f"batch size {batch_size} must be at least 1")
        if max_steps is not None and max_steps < 1:
            raise TrmEdgeError(f"max_steps {max_steps} must be at least 1")
        self.runtime = runtime
        self.batch_size = batch_size
        self.max_steps = max_steps or runtime.config.halt_max_steps
        self.halt = halt
        self.threshold = float(runtime.source.halt_threshold if threshold is None else threshold)
        if not math.isfinite(self.threshold):
            raise TrmEdgeError(f"halting threshold {self.threshold} must be a finite number (a q_halt logit; 0 is "
                               "sigmoid 0.5)")
        self.refill = refill
        self.followers = list(followers)
        self.keep_state = keep_state or bool(self.followers)

    @property
    def capacity(self) -> int:
        """Rows per step: the batch size, bounded by what the loaded graph or engine takes."""
        runtime = self.runtime.load()
        if runtime.fixed_batch is not None:
            return runtime.fixed_batch
        if runtime.max_batch is not None:
            return max(1, min(self.batch_size, runtime.max_batch))
        return self.batch_size

    def check_inputs(self, inputs: np.ndarray) -> np.ndarray:
        cfg = self.runtime.config
        inputs = np.asarray(inputs)
        if inputs.ndim != 2 or inputs.shape[1] != cfg.seq_len:
            raise PuzzleError(f"puzzle tokens have shape {inputs.shape}; the model expects [N, {cfg.seq_len}]")
        if not np.issubdtype(inputs.dtype, np.integer):
            raise PuzzleError(f"puzzle tokens must be integers, got {inputs.dtype}")
        if inputs.size and (inputs.min() < 0 or inputs.max() >= cfg.vocab_size):
            raise PuzzleError(f"puzzle tokens outside the model's vocabulary 0..{cfg.vocab_size - 1}: "
                              f"{int(inputs.min())}..{int(inputs.max())}")
        return inputs.astype(np.int32, copy=False)

    def steps(self, inputs: np.ndarray, puzzle_identifiers: np.ndarray | None = None, *,
              puzzle_embeddings: np.ndarray | None = None) -> Iterator[StepResult]:
        """Yield one :class:`StepResult` per runtime step until every puzzle has left. ``puzzle_identifiers``
        ``[N]`` pick rows of the puzzle-embedding table (identifier 0 when not given); ``puzzle_embeddings``
        ``[N, puzzle_emb_ndim]`` give the rows themselves (a graph not yet in a bundle). Read what you need of a
        result before asking for the next: the rows that are ``done`` are dropped then. ``StepResult.puzzles``
        are indices into ``inputs``."""
        inputs = self.check_inputs(inputs)
        n = len(inputs)
        ids = np.zeros(n, np.int64) if puzzle_identifiers is None else np.asarray(puzzle_identifiers, np.int64)
        if ids.shape != (n,):
            raise PuzzleError(f"expected {n} puzzle identifiers, got an array of shape {ids.shape}")
        if puzzle_embeddings is not None and len(puzzle_embeddings) != n:
            raise PuzzleError(f"expected {n} puzzle embeddings, got {len(puzzle_embeddings)}")
        if n == 0:
            return iter(())
        return self.run(ArrayFeed(inputs, ids, puzzle_embeddings))

    def run(self, feed: Feed) -> Iterator[StepResult]:
        """The loop itself, over puzzles that a :class:`Feed` hands in as rows free up (an array, or a server's
        queue that fills while the loop runs). ``StepResult.puzzles`` are the feed's keys."""
        capacity = self.capacity
        for follower in self.followers:
            follower.load()
        rec = HostRecurrence(self.runtime, capacity=capacity) if self.keep_state \
            else self.runtime.start(capacity=capacity)
        try:
            row_puzzle = np.zeros(0, np.int64)
            row_steps = np.zeros(0, np.int32)
            while True:
                if rec.batch:
                    gone = feed.withdrawn(row_puzzle)
                    if gone.any():
                        keep = np.flatnonzero(~gone)
                        rec.keep(keep)
                        row_puzzle, row_steps = row_puzzle[keep], row_steps[keep]
                free = capacity - rec.batch
                if free > 0 and (self.refill or rec.batch == 0):
                    arrivals = feed.take(free, idle=rec.batch == 0)
                    if arrivals is None and rec.batch == 0:
                        return
                    if arrivals is not None and len(arrivals.keys):
                        rec.add(arrivals.inputs, self.runtime.puzzle_embedding(arrivals.identifiers)
                                if arrivals.embeddings is None else arrivals.embeddings)
                        row_puzzle = np.concatenate((row_puzzle, arrivals.keys))
                        row_steps = np.concatenate((row_steps, np.zeros(len(arrivals.keys), np.int32)))
                if rec.batch == 0:
                    continue  # the feed had nothing yet: ask again
                feeds = dict(rec.feeds) if isinstance(rec, HostRecurrence) and self.keep_state else None
                started = time.perf_counter()
                q = rec.step()
                seconds = time.perf_counter() - started
                row_steps = row_steps + 1
                halted = halts(q, self.threshold) if self.halt else np.zeros(len(q), bool)
                done = halted | (row_steps >= self.max_steps)
                result = StepResult(row_puzzle, row_steps, q, halted, done, seconds, rec, feeds=feeds,
                                    outputs=rec.outputs if feeds is not None else None)
                for follower in self.followers:
                    started = time.perf_counter()
                    result.follower_outputs.append(follower.step(feeds))
                    result.follower_seconds.append(time.perf_counter() - started)
                yield result
                if done.any():
                    keep = np.flatnonzero(~done)
                    rec.keep(keep)
                    row_puzzle, row_steps = row_puzzle[keep], row_steps[keep]
        finally:
            rec.close()


@dataclass
class Arrivals:
    """Puzzles a feed hands to the loop: their keys, tokens, and puzzle-embedding identifiers or rows."""

    keys: np.ndarray  # [n] int64: how StepResult.puzzles names them
    inputs: np.ndarray  # [n, seq_len] int32, checked
    identifiers: np.ndarray  # [n] int64
    embeddings: np.ndarray | None = None  # [n, puzzle_emb_ndim] float32, given instead of looked up


class Feed(Protocol):
    """Where the loop's puzzles come from (:meth:`Recursion.run`)."""

    def take(self, limit: int, *, idle: bool) -> Arrivals | None:
        """At most ``limit`` waiting puzzles, maybe none. ``idle``: no row is in flight, so the feed may wait for
        work. None: none will ever come again (the loop ends once its rows have left)."""

    def withdrawn(self, keys: np.ndarray) -> np.ndarray:
        """``[len(keys)]`` bool: the puzzles in flight whose answers are no longer wanted (their rows leave before
        the next step)."""


class ArrayFeed:
    """The puzzles of arrays, in order; nothing is withdrawn."""

    def __init__(self, inputs: np.ndarray, identifiers: np.ndarray, embeddings: np.ndarray | None = None) -> None:
        self.inputs, self.identifiers, self.embeddings = inputs, identifiers, embeddings
        self.next = 0

    def take(self, limit: int, *, idle: bool) -> Arrivals | None:
        if self.next >= len(self.inputs):
            return None
        take = np.arange(self.next, min(len(self.inputs), self.next + limit))
        self.next = int(take[-1]) + 1
        embeddings = None if self.embeddings is None else np.asarray(self.embeddings[take], np.float32)
        return Arrivals(take.astype(np.int64), self.inputs[take], self.identifiers[take], embeddings)

    def withdrawn(self, keys: np.ndarray) -> np.ndarray:
        return np.zeros(len(keys), bool)
