"""Parity between two runtimes: teacher-forced step by step (the meaningful test on random weights) and whole
runs compared by their answers (on trained models). Backs ``trm-edge compare`` and the quantize report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from trm_edge.bundle.contract import halts
from trm_edge.errors import TrmEdgeError
from trm_edge.puzzles.examples import Examples
from trm_edge.runtimes.accuracy import accuracy
from trm_edge.runtimes.interface import Runtime
from trm_edge.runtimes.recursion import Recursion
from trm_edge.runtimes.solver import SolveOutput


@dataclass(frozen=True)
class StepParity:
    """Two runtimes fed the same state at one supervision step, compared over every puzzle."""

    step: int
    logits_max_abs: float
    logits_mean_abs: float
    logits_max_rel: float  # max abs difference over the max abs reference logit
    argmax_agreement: float  # share of cells predicted alike
    q_halt_max_abs: float
    halt_agreement: float  # share of puzzles whose halting decision agrees (at the threshold)
    state_max_abs: float  # z_H_next, z_L_next
    initial_state_max_abs: float
    puzzle_embedding_max_abs: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AnswerParity:
    """Two whole solver runs compared by their answers; the accuracy fields need labelled puzzles."""

    answer_agreement: float
    cell_agreement: float
    steps_agreement: float
    mean_steps: list[float]  # A's, B's
    exact_accuracy: list[float] | None = None  # A's, B's
    exact_accuracy_diff: float | None = None  # B's minus A's
    solved_by_a_only: int | None = None
    solved_by_b_only: int | None = None
    a_solved_kept: float | None = None  # of the puzzles A solves, the share B solves too

    def to_dict(self) -> dict[str, Any]:
        """The fields that apply: without labels, no accuracy fields."""
        labelled = self.exact_accuracy is not None
        return {k: v for k, v in asdict(self).items() if labelled or k in _UNLABELLED_FIELDS}


_UNLABELLED_FIELDS = ("answer_agreement", "cell_agreement", "steps_agreement", "mean_steps")


def teacher_forced(a: Runtime, b: Runtime, examples: Examples, *, steps: int, batch_size: int = 16,
                   threshold: float | None = None, on_step: Callable[[int], Any] | None = None
                   ) -> list[StepParity]:
    """Per step: feed the state of A's trajectory to both runtimes, compare their outputs.

    Returns one :class:`StepParity` per supervision step (halting agreement at ``threshold``, default A's
    calibrated one). Random-weight TRM is chaotic
    (docs/design.md): this is the meaningful parity test; whole trajectories are compared by answers
    (``free_running``)."""
    return teacher_forced_run(a, b, examples, steps=steps, batch_size=batch_size, threshold=threshold,
                              on_step=on_step).per_step


@dataclass
class TeacherForcedRun:
    per_step: list[StepParity]
    a_run: SolveOutput  # A's trajectory as its all-steps solver run, with A's step timings
    b_step_seconds: list[float]  # B's step timings, aligned with ``a_run.step_rows``


def teacher_forced_run(a: Runtime, b: Runtime, examples: Examples, *, steps: int, batch_size: int = 16,
                       threshold: float | None = None, on_step: Callable[[int], Any] | None = None
                       ) -> TeacherForcedRun:
    """:func:`teacher_forced`, and A's trajectory as the all-steps solver run it is (the same batches from the
    initial state: what ``Solver(a, batch_size=batch_size, halt=False)`` recording every step answers), so a
    caller that needs both does not run A twice (a 900-token 7M model: 1.5 s per puzzle-step here). Both
    runtimes' steps are timed, one after the other on the same feeds: a side-by-side latency measurement
    that costs nothing extra."""
    check_same_model(a, b)
    recursion = Recursion(a, batch_size=batch_size, max_steps=steps, halt=False, threshold=threshold, refill=False,
                          followers=[b])
    threshold = recursion.threshold
    cfg = a.config
    h0, l0 = a.initial_state()
    h0b, l0b = b.initial_state()
    init_diff = float(max(np.abs(h0 - h0b).max(), np.abs(l0 - l0b).max()))
    emb_diff = 0.0
    zero = {"logits_max_abs": 0.0, "logits_sum_abs": 0.0, "logits_ref_max": 0.0, "cells": 0, "cells_agree": 0,
            "q_max_abs": 0.0, "halt_agree": 0, "puzzles": 0, "state_max_abs": 0.0}
    acc: list[dict[str, Any]] = [{"step": k + 1, **zero} for k in range(steps)]
    n = len(examples)
    step_preds = np.zeros((steps, n, cfg.seq_len), np.int32)
    step_q = np.zeros((steps, n), np.float32)
    a_seconds: list[float] = []
    b_seconds: list[float] = []
    step_rows: list[int] = []
    for result in recursion.steps(examples.inputs, examples.puzzle_identifiers):
        out_a, out_b = result.outputs, result.follower_outputs[0]
        k, puzzles, rows = int(result.steps[0]) - 1, result.puzzles, result.rows  # no refill: one step per batch
        if k == 0 and "puzzle_embedding" in result.feeds:
            ids = np.zeros(rows, np.int64) if examples.puzzle_identifiers is None \
                else examples.puzzle_identifiers[puzzles]
            emb_diff = max(emb_diff, float(np.abs(result.feeds["puzzle_embedding"] - b.puzzle_embedding(ids)).max()))
        a_seconds.append(result.seconds)
        b_seconds.append(result.follower_seconds[0])
        step_rows.append(rows)
        r = acc[k]
        la, lb = out_a["logits"], out_b["logits"]
        step_preds[k, puzzles] = la.argmax(-1)
        step_q[k, puzzles] = result.q_halt_logits
        diff = np.abs(la.astype(np.float64) - lb)
        r["logits_max_abs"] = max(r["logits_max_abs"], float(diff.max()))
        r["logits_sum_abs"] += float(diff.sum())
        r["logits_ref_max"] = max(r["logits_ref_max"], float(np.abs(la).max()))
        r["cells"] += la.shape[0] * la.shape[1]
        r["cells_agree"] += int((la.argmax(-1) == lb.argmax(-1)).sum())
        qa, qb = out_a["q_halt_logits"], out_b["q_halt_logits"]
        r["q_max_abs"] = max(r["q_max_abs"], float(np.abs(qa - qb).max()))
        r["halt_agree"] += int((halts(qa, threshold) == halts(qb, threshold)).sum())
        r["puzzles"] += rows
        state = max(np.abs(out_a["z_H_next"] - out_b["z_H_next"]).max(),
                    np.abs(out_a["z_L_next"] - out_b["z_L_next"]).max())
        r["state_max_abs"] = max(r["state_max_abs"], float(state))
        if on_step is not None:
            on_step(rows)
    records = []
    for r in acc:
        values = max(r["cells"], 1) * cfg.vocab_size
        records.append(StepParity(
            step=r["step"], logits_max_abs=r["logits_max_abs"], logits_mean_abs=r["logits_sum_abs"] / values,
            logits_max_rel=r["logits_max_abs"] / max(r["logits_ref_max"], 1e-12),
            argmax_agreement=r["cells_agree"] / max(r["cells"], 1), q_halt_max_abs=r["q_max_abs"],
            halt_agreement=r["halt_agree"] / max(r["puzzles"], 1), state_max_abs=r["state_max_abs"],
            initial_state_max_abs=init_diff, puzzle_embedding_max_abs=emb_diff))
    run_a = SolveOutput(step_preds[-1].copy(), np.full(n, steps, np.int32), step_q[-1].copy(), np.zeros(n, bool),
                        step_seconds=a_seconds, step_rows=step_rows, seconds=float(np.sum(a_seconds)),
                        step_preds=step_preds, step_q=step_q)
    return TeacherForcedRun(records, run_a, b_seconds)


def free_running(out_a: SolveOutput, out_b: SolveOutput, examples: Examples) -> AnswerParity:
    """Answer-level agreement of two whole solver runs (meaningful on trained models)."""
    same = np.all(out_a.preds == out_b.preds, axis=-1)
    some = bool(len(same))
    agreement = AnswerParity(
        answer_agreement=float(same.mean()) if some else 0.0,
        cell_agreement=float((out_a.preds == out_b.preds).mean()) if some else 0.0,
        steps_agreement=float((out_a.steps == out_b.steps).mean()) if some else 0.0,
        mean_steps=[float(out_a.steps.mean()), float(out_b.steps.mean())] if some else [0.0, 0.0])
    if examples.labels is None:
        return agreement
    ea = accuracy(out_a.preds, examples.labels, examples.ignore_label_id)[0]
    eb = accuracy(out_b.preds, examples.labels, examples.ignore_label_id)[0]
    return replace(agreement, exact_accuracy=[float(ea.mean()), float(eb.mean())],
                   exact_accuracy_diff=float(eb.mean() - ea.mean()), solved_by_a_only=int((ea & ~eb).sum()),
                   solved_by_b_only=int((eb & ~ea).sum()),
                   a_solved_kept=float((ea & eb).sum() / ea.sum()) if ea.any() else None)


def check_same_model(a: Runtime, b: Runtime) -> None:
    ca, cb = a.config.to_dict(), b.config.to_dict()
    keys = ("seq_len", "vocab_size", "hidden_size", "puzzle_emb_ndim", "puzzle_emb_len", "num_puzzle_identifiers")
    differ = [k for k in keys if ca[k] != cb[k]]
    if differ:
        raise TrmEdgeError("the two models have different shapes: " +
                           ", ".join(f"{k} {ca[k]} vs {cb[k]}" for k in differ))
