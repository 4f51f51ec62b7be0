"""The one host loop: batches puzzles through any runtime with early-exit halting.

Every runtime is driven the same way: puzzles enter the batch with the initial state, each step
advances all of them, a puzzle leaves at the first step whose ``q_halt_logits > threshold`` (with
``halt=True``) or at ``max_steps``, and its answer is the argmax of that step's logits. Later steps run
on fewer puzzles; with ``refill`` (the default) waiting puzzles take the freed slots, so a batch stays
full while there is work. Rows are independent in the step graph, so batch composition does not change
a puzzle's answer beyond float rounding.

numpy only: no torch here (the device-side path).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trm_edge.errors import PuzzleError, TrmEdgeError
from trm_edge.runtimes.base import Runtime


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))  # stable for large |x|


@dataclass
class SolveOutput:
    """Per puzzle: the answer tokens and how it was reached; per step: timings."""

    preds: np.ndarray  # [N, seq_len] int32, argmax of the logits at the puzzle's last step
    steps: np.ndarray  # [N] int32, supervision steps run for the puzzle
    q_halt_logits: np.ndarray  # [N] float32 at the puzzle's last step
    halted: np.ndarray  # [N] bool, stopped because q_halt_logits > threshold (not by max_steps)
    step_seconds: list[float] = field(default_factory=list)  # wall time of each runtime step
    step_rows: list[int] = field(default_factory=list)  # puzzles in flight at each runtime step
    seconds: float = 0.0  # whole run
    step_preds: np.ndarray | None = None  # [max_steps, N, seq_len] with record_steps (held after halting)
    step_q: np.ndarray | None = None  # [max_steps, N] with record_steps (nan after a puzzle left)

    @property
    def confidence(self) -> np.ndarray:
        """sigmoid(q_halt_logits): the model's belief that the answer is right."""
        return sigmoid(self.q_halt_logits)

    def __len__(self) -> int:
        return len(self.steps)

    def halting(self, threshold: float) -> SolveOutput:
        """What a halting run answers, read from this all-steps run recorded with ``record_steps``: each puzzle
        stops at its first step whose ``q_halt_logits > threshold``, else runs every step. No second pass: a
        puzzle's trajectory does not depend on when the others in its batch stop."""
        if self.step_preds is None or self.step_q is None or np.isnan(self.step_q).any():
            raise TrmEdgeError("halting() needs an all-steps run recorded with record_steps=True")
        stops = self.step_q > threshold  # [max_steps, N]
        halted = stops.any(axis=0)
        last = np.where(halted, stops.argmax(axis=0), len(self.step_q) - 1)
        every = np.arange(len(self))
        return SolveOutput(self.step_preds[last, every], (last + 1).astype(np.int32), self.step_q[last, every],
                           halted)  # seconds unknown: not timed


class Solver:
    """Drive ``runtime`` over batches of puzzles.

    ``max_steps`` defaults to the model's ``halt_max_steps``; ``halt=False`` runs every step (the
    official evaluation); ``threshold`` is on the logit (0 = sigmoid 0.5) and defaults to the model's
    calibrated one (the bundle's ``loop.halt_threshold`` / the checkpoint's), which is 0 when it has none."""

    def __init__(self, runtime: Runtime, *, batch_size: int = 16, max_steps: int | None = None,
                 halt: bool = True, threshold: float | None = None, refill: bool = True) -> None:
        if batch_size < 1:
            raise TrmEdgeError(f"batch size {batch_size} must be at least 1")
        if max_steps is not None and max_steps < 1:
            raise TrmEdgeError(f"max_steps {max_steps} must be at least 1")
        self.runtime = runtime
        self.batch_size = batch_size
        self.max_steps = max_steps or runtime.config.halt_max_steps
        self.halt = halt
        self.threshold = float(runtime.source.halt_threshold if threshold is None else threshold)
        self.refill = refill

    @property
    def capacity(self) -> int:
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

    def run(self, inputs: np.ndarray, puzzle_identifiers: np.ndarray | None = None, *, record_steps: bool = False,
            on_progress: Callable[[int], Any] | None = None) -> SolveOutput:
        """Solve ``inputs`` (int tokens ``[N, seq_len]``); ``puzzle_identifiers`` ``[N]`` pick rows of the
        puzzle-embedding table (identifier 0 when not given). ``on_progress(k)`` is called with the
        number of puzzles finished at each step."""
        inputs = self.check_inputs(inputs)
        n = len(inputs)
        cfg = self.runtime.config
        self.runtime.load()
        ids = np.zeros(n, np.int64) if puzzle_identifiers is None else np.asarray(puzzle_identifiers, np.int64)
        if ids.shape != (n,):
            raise PuzzleError(f"expected {n} puzzle identifiers, got an array of shape {ids.shape}")
        preds = np.zeros((n, cfg.seq_len), np.int32)
        steps = np.zeros(n, np.int32)
        q_final = np.zeros(n, np.float32)
        halted = np.zeros(n, bool)
        out = SolveOutput(preds, steps, q_final, halted)
        if record_steps:
            out.step_preds = np.zeros((self.max_steps, n, cfg.seq_len), np.int32)
            out.step_q = np.full((self.max_steps, n), np.nan, np.float32)
        if n == 0:
            return out

        capacity = self.capacity
        start = time.perf_counter()
        rec = self.runtime.start(capacity=capacity)
        try:
            row_puzzle = np.zeros(0, np.intp)  # which puzzle each row of the recurrence holds
            row_steps = np.zeros(0, np.int32)  # steps done by each row
            next_puzzle = 0
            while next_puzzle < n or rec.batch:
                free = capacity - rec.batch
                if next_puzzle < n and free > 0 and (self.refill or rec.batch == 0):
                    take = np.arange(next_puzzle, min(n, next_puzzle + free))
                    embedding = self.runtime.puzzle_embedding(ids[take])
                    rec.add(inputs[take], embedding)
                    row_puzzle = np.concatenate((row_puzzle, take))
                    row_steps = np.concatenate((row_steps, np.zeros(len(take), np.int32)))
                    next_puzzle = int(take[-1]) + 1
                t0 = time.perf_counter()
                q = rec.step()
                out.step_seconds.append(time.perf_counter() - t0)
                out.step_rows.append(rec.batch)
                row_steps += 1
                stop_halt = q > self.threshold if self.halt else np.zeros(len(q), bool)
                done = stop_halt | (row_steps >= self.max_steps)
                if record_steps:
                    out.step_preds[row_steps - 1, row_puzzle] = rec.logits(np.arange(rec.batch)).argmax(-1)
                    out.step_q[row_steps - 1, row_puzzle] = q
                finished = np.flatnonzero(done)
                if finished.size:
                    who = row_puzzle[finished]
                    preds[who] = rec.logits(finished).argmax(-1)
                    steps[who] = row_steps[finished]
                    q_final[who] = q[finished]
                    halted[who] = stop_halt[finished]
                    if record_steps:  # a puzzle that left keeps its answer for the later steps
                        for k, puzzle in zip(row_steps[finished], who):  # noqa: B905
                            out.step_preds[k:, puzzle] = preds[puzzle]
                    keep = np.flatnonzero(~done)
                    rec.keep(keep)
                    row_puzzle, row_steps = row_puzzle[keep], row_steps[keep]
                    if on_progress is not None:
                        on_progress(int(finished.size))
        finally:
            rec.close()
        out.seconds = time.perf_counter() - start
        return out


# -- puzzles in, answers out --------------------------------------------------------------------------


@dataclass
class PuzzleAnswer:
    """One solved puzzle, as ``trm-edge solve --json`` reports it."""

    index: int
    solution: str
    valid: bool
    problem: str | None  # why the answer is not valid (None when it is)
    steps: int
    confidence: float
    halted: bool
    tokens: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {"solution": self.solution, "valid": self.valid, "problem": self.problem, "steps": self.steps,
                "confidence": round(self.confidence, 6), "halted": self.halted}


def answers(output: SolveOutput, inputs: np.ndarray, codec: Any, *, indices: Sequence[int] | None = None
            ) -> list[PuzzleAnswer]:
    """Decode a solver output with a task codec and check each answer against its puzzle."""
    indices = list(range(len(output))) if indices is None else list(indices)
    confidence = output.confidence
    result = []
    for row, index in enumerate(indices):
        tokens = output.preds[row]
        problem = codec.problem(inputs[row], tokens)
        result.append(PuzzleAnswer(
            index=index, solution=codec.decode(tokens), valid=problem is None, problem=problem,
            steps=int(output.steps[row]), confidence=float(confidence[row]), halted=bool(output.halted[row]),
            tokens=tokens))
    return result
