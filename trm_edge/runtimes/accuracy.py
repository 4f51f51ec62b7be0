"""Accuracy of solver answers on labelled puzzles: exact and cell accuracy, halting statistics, the ARC vote.
Backs ``trm-edge eval`` and the quantize report. numpy only (the device side).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trm_edge.errors import DatasetError
from trm_edge.puzzles.examples import Examples
from trm_edge.runtimes.interface import Runtime
from trm_edge.runtimes.solver import SolveOutput, Solver


def label_mask(labels: np.ndarray, ignore_label_id: int | None) -> np.ndarray:
    return np.ones(labels.shape, bool) if ignore_label_id is None else labels != ignore_label_id


def accuracy(preds: np.ndarray, labels: np.ndarray, ignore_label_id: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(exact per puzzle [N] bool, correct cells [N] / labelled cells [N] as a fraction)."""
    mask = label_mask(labels, ignore_label_id)
    right = (preds == labels) & mask
    cells = mask.sum(-1)
    exact = right.sum(-1) == cells
    return exact, right.sum(-1) / np.maximum(cells, 1)


def evaluate(runtime: Runtime, examples: Examples, *, solver: Solver, codec: Any = None, by_step: bool = False,
             on_progress: Callable[[int], Any] | None = None) -> tuple[dict[str, Any], SolveOutput]:
    """Solve a labelled split; the metrics ``trm-edge eval`` reports."""
    if examples.labels is None:
        raise DatasetError("evaluation needs labels")
    out = solver.run(examples.inputs, examples.puzzle_identifiers, record_steps=by_step, on_progress=on_progress)
    return score(runtime, examples, out, threshold=solver.threshold, max_steps=solver.max_steps, halt=solver.halt,
                 codec=codec), out


def score(runtime: Runtime, examples: Examples, out: SolveOutput, *, threshold: float, max_steps: int, halt: bool,
          codec: Any = None) -> dict[str, Any]:
    """The metrics of :func:`evaluate` for a solver output on labelled ``examples``."""
    exact, _ = accuracy(out.preds, examples.labels, examples.ignore_label_id)
    mask = label_mask(examples.labels, examples.ignore_label_id)
    halted = out.halted
    q_says_right = out.q_halt_logits > threshold
    report: dict[str, Any] = {
        "count": len(examples),
        "exact_accuracy": float(exact.mean()) if len(exact) else 0.0,
        "cell_accuracy": float(((out.preds == examples.labels) & mask).sum() / max(int(mask.sum()), 1)),
        "mean_steps": float(out.steps.mean()) if len(exact) else 0.0,
        "max_steps": max_steps,
        "halt": halt,
        "halting": {
            "threshold": threshold,
            "halted_fraction": float(halted.mean()) if len(exact) else 0.0,  # stopped before max_steps' end
            "q_halt_accuracy": float((q_says_right == exact).mean()) if len(exact) else 0.0,
            "halted_exact_accuracy": float(exact[halted].mean()) if halted.any() else None,
            "steps_histogram": np.bincount(out.steps, minlength=max_steps + 1)[1:].tolist(),
        },
        "seconds": out.seconds,
        "puzzles_per_s": len(exact) / out.seconds if out.seconds else None,
        "runtime": runtime.describe(),
    }
    if codec is not None:
        valid = np.array([codec.is_valid(p, a) for p, a in zip(examples.inputs, out.preds)], bool)  # noqa: B905
        report["valid_fraction"] = float(valid.mean()) if len(valid) else 0.0
    if out.step_preds is not None:
        report["exact_accuracy_by_step"] = [
            float(accuracy(out.step_preds[k], examples.labels, examples.ignore_label_id)[0].mean())
            for k in range(max_steps)]
    return report


def is_arc_dataset(data_dir: str | os.PathLike) -> bool:
    """An ARC dataset carries its original test tasks (``test_puzzles.json``) for the voting evaluator."""
    from trm_edge.puzzles.arc_build import TEST_PUZZLES_FILE

    return (Path(data_dir) / TEST_PUZZLES_FILE).is_file()


def arc_scores(data_dir: str | os.PathLike, examples: Examples, out: SolveOutput) -> tuple[dict[str, Any], dict]:
    """The ARC metric of the official evaluator on a solved test split: every augmented version's prediction
    mapped back through its inverse augmentation, votes per test input, pass@K averaged over tasks. Returns the
    report section and the ARC Prize submission (``{task: [{"attempt_1": grid, "attempt_2": grid}, ...]}``)."""
    from trm_edge.puzzles.arc_eval import ArcVoter

    if examples.puzzle_identifiers is None:
        raise DatasetError(f"{str(data_dir)!r} has no puzzle identifiers: ARC voting needs them")
    voter = ArcVoter.from_dataset(data_dir)
    voter.add(examples.puzzle_identifiers, examples.inputs, out.preds, out.q_halt_logits)
    result = voter.result()
    # the official evaluator's metric names: ARC/pass@K
    metrics = {(f"ARC/{k}" if k.startswith("pass@") else k): v for k, v in result.metrics.items()}
    return {**metrics, "tasks_without_prediction": result.missing}, result.submission
