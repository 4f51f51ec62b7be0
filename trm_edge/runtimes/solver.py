"""The solver: answers from the recursion core (recursion.py). A puzzle's answer is the argmax of the logits at
the step it left (halted at the model's calibrated threshold, or at ``max_steps``); with ``record_steps`` the
answers and halting logits of every step are kept too (what the all-steps evaluation and ``halting()`` read).

numpy only: no torch here (the device-side path).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trm_edge.bundle.contract import halts
from trm_edge.errors import TrmEdgeError
from trm_edge.runtimes.interface import Runtime
from trm_edge.runtimes.recursion import DEFAULTS, Recursion


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))  # stable for large |x|


@dataclass
class SolveOutput:
    """Per puzzle: the answer tokens and how it was reached; per step: timings."""

    preds: np.ndarray  # [N, seq_len] int32, argmax of the logits at the puzzle's last step
    steps: np.ndarray  # [N] int32, supervision steps run for the puzzle
    q_halt_logits: np.ndarray  # [N] float32 at the puzzle's last step
    halted: np.ndarray  # [N] bool, stopped by the halting rule (not by max_steps)
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

    def select(self, rows: slice | np.ndarray) -> SolveOutput:
        """These puzzles' answers (not their timings)."""
        return SolveOutput(self.preds[rows], self.steps[rows], self.q_halt_logits[rows], self.halted[rows])

    def halting(self, threshold: float) -> SolveOutput:
        """What a halting run answers, read from this all-steps run recorded with ``record_steps``: each puzzle
        stops at its first step that the halting rule stops, else runs every step. No second pass: a
        puzzle's trajectory does not depend on when the others in its batch stop."""
        if self.step_preds is None or self.step_q is None or np.isnan(self.step_q).any():
            raise TrmEdgeError("halting() needs an all-steps run recorded with record_steps=True")
        stops = halts(self.step_q, threshold)  # [max_steps, N]
        halted = stops.any(axis=0)
        last = np.where(halted, stops.argmax(axis=0), len(self.step_q) - 1)
        every = np.arange(len(self))
        return SolveOutput(self.step_preds[last, every], (last + 1).astype(np.int32), self.step_q[last, every],
                           halted)  # seconds unknown: not timed


class Solver:
    """Solve batches of puzzles on ``runtime``: the :class:`Recursion`'s options (batch size, max steps, halting at
    the model's calibrated threshold unless ``threshold`` is given, refill), answers collected per puzzle."""

    def __init__(self, runtime: Runtime, *, batch_size: int = DEFAULTS.batch_size, max_steps: int | None = None,
                 halt: bool = DEFAULTS.halt, threshold: float | None = None, refill: bool = DEFAULTS.refill) -> None:
        self.recursion = Recursion(runtime, batch_size=batch_size, max_steps=max_steps, halt=halt,
                                   threshold=threshold, refill=refill)
        self.runtime = runtime

    @property
    def batch_size(self) -> int:
        return self.recursion.batch_size

    @property
    def max_steps(self) -> int:
        return self.recursion.max_steps

    @property
    def halt(self) -> bool:
        return self.recursion.halt

    @property
    def threshold(self) -> float:
        return self.recursion.threshold

    @property
    def capacity(self) -> int:
        return self.recursion.capacity

    def run(self, inputs: np.ndarray, puzzle_identifiers: np.ndarray | None = None, *, record_steps: bool = False,
            on_progress: Callable[[int], Any] | None = None,
            on_finished: Callable[[np.ndarray, SolveOutput], Any] | None = None) -> SolveOutput:
        """Solve ``inputs`` (int tokens ``[N, seq_len]``); ``puzzle_identifiers`` ``[N]`` pick rows of the
        puzzle-embedding table (identifier 0 when not given). ``on_progress(k)`` is called with the
        number of puzzles finished at each step, ``on_finished(indices, output)`` with their indices once their
        answers are in ``output`` (to stream answers as they are decided)."""
        inputs = self.recursion.check_inputs(inputs)
        n, cfg = len(inputs), self.runtime.config
        out = SolveOutput(np.zeros((n, cfg.seq_len), np.int32), np.zeros(n, np.int32), np.zeros(n, np.float32),
                          np.zeros(n, bool))
        if record_steps:
            out.step_preds = np.zeros((self.max_steps, n, cfg.seq_len), np.int32)
            out.step_q = np.full((self.max_steps, n), np.nan, np.float32)
        start = time.perf_counter()
        for step in self.recursion.steps(inputs, puzzle_identifiers):
            out.step_seconds.append(step.seconds)
            out.step_rows.append(step.rows)
            if record_steps:
                out.step_preds[step.steps - 1, step.puzzles] = step.preds()
                out.step_q[step.steps - 1, step.puzzles] = step.q_halt_logits
            finished = np.flatnonzero(step.done)
            if finished.size:
                who = step.puzzles[finished]
                out.preds[who] = step.preds(finished)
                out.steps[who] = step.steps[finished]
                out.q_halt_logits[who] = step.q_halt_logits[finished]
                out.halted[who] = step.halted[finished]
                if record_steps:  # a puzzle that left keeps its answer for the later steps
                    for k, puzzle in zip(step.steps[finished], who):  # noqa: B905
                        out.step_preds[k:, puzzle] = out.preds[puzzle]
                if on_progress is not None:
                    on_progress(int(finished.size))
                if on_finished is not None:
                    on_finished(who, out)
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
    return [answer(output, row, inputs[row], codec, index=index) for row, index in enumerate(indices)]


def answer(output: SolveOutput, row: int, puzzle: np.ndarray, codec: Any, *, index: int | None = None
           ) -> PuzzleAnswer:
    """Row ``row`` of a solver output decoded, and checked against its ``puzzle`` tokens."""
    tokens = output.preds[row]
    problem = codec.problem(puzzle, tokens)
    return PuzzleAnswer(index=row if index is None else index, solution=codec.decode(tokens), valid=problem is None,
                        problem=problem, steps=int(output.steps[row]),
                        confidence=float(sigmoid(output.q_halt_logits[row])), halted=bool(output.halted[row]),
                        tokens=tokens)
