"""ARC voting evaluator: invert every augmented prediction, vote per test input, report pass@K.

As the official evaluator (``evaluators/arc.py``): a prediction on puzzle ``task|||tK|||perm`` is
cropped from the canvas and mapped back through the inverse augmentation; predictions for the same
original test input (recognised by the hash of its inverted input grid) vote, ranked by vote count,
ties broken by the mean ``sigmoid(q_halt)``. pass@K is the share of a task's test inputs whose
answer is among the top K, averaged over tasks.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trm_edge.errors import DatasetError
from trm_edge.puzzles import arc
from trm_edge.puzzles.arc_build import TEST_PUZZLES_FILE
from trm_edge.puzzles.dataset import read_identifiers

PASS_KS = (1, 2, 5, 10, 100, 1000)


@dataclass
class ArcResult:
    metrics: dict[str, float]  # "pass@K" (task-averaged) and counts
    submission: dict[str, list[dict[str, list]]]  # task -> [{"attempt_1": grid, "attempt_2": grid}, ...]
    missing: list[str] = field(default_factory=list)  # tasks with a test input that got no prediction


def halting_confidence(x: float) -> float:
    """sigmoid(x) in float64 as torch's scalar kernel computes it, ``1 / (1 + exp(-x))`` with the C library's exp:
    the official evaluator breaks vote ties on sums of these, so the last bit matters. (torch's vectorised kernel,
    Sleef's exp, differs from it in the last bit on about 3% of logits, by the logit's position in its batch; no
    device-side formula can follow that.)"""
    try:
        return 1.0 / (1.0 + math.exp(-x))
    except OverflowError:  # x below about -709: exp(-x) is infinite, the sigmoid 0
        return 0.0


class ArcVoter:
    """Feed predictions with :meth:`add`, then read :meth:`result`."""

    def __init__(self, identifiers: list[str], test_puzzles: dict[str, Any], *, blank_identifier_id: int = 0):
        self.identifiers = identifiers
        self.test_puzzles = test_puzzles
        self.blank = blank_identifier_id
        self._grids: dict[str, np.ndarray] = {}
        self._votes: dict[str, dict[str, dict[str, list[float]]]] = {}  # task -> input hash -> pred hash -> [n, sum q]

    @classmethod
    def from_dataset(cls, directory: str | os.PathLike) -> ArcVoter:
        path = Path(directory) / TEST_PUZZLES_FILE
        try:
            test_puzzles = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise DatasetError(f"cannot read {str(path)!r} (ARC datasets built by trm-edge have it): {error}") from None
        return cls(read_identifiers(directory), test_puzzles)

    def add(self, puzzle_identifiers: np.ndarray, inputs: np.ndarray, predictions: np.ndarray,
            q_halt_logits: np.ndarray) -> None:
        """A batch: identifiers ``[B]``, input and predicted tokens ``[B, 900]``, halting logits ``[B]``."""
        columns = (np.asarray(puzzle_identifiers).reshape(-1), np.asarray(inputs), np.asarray(predictions),
                   np.asarray(q_halt_logits).reshape(-1))
        if len({len(c) for c in columns}) > 1:  # what zip(strict=True) checked, before Python 3.10
            raise ValueError(f"a batch of unequal lengths: {[len(c) for c in columns]}")
        for identifier, tokens, predicted, q in zip(*columns):  # noqa: B905
            if int(identifier) == self.blank:
                continue  # batch padding
            task, augmentation = arc.inverse_augmentation(self.identifiers[int(identifier)])
            input_hash = arc.grid_hash(augmentation.invert(arc.decode_grid(tokens)))
            grid = augmentation.invert(arc.decode_grid(predicted))
            pred_hash = arc.grid_hash(grid)
            self._grids[pred_hash] = grid
            votes = self._votes.setdefault(task, {}).setdefault(input_hash, {}).setdefault(pred_hash, [0, 0.0])
            votes[0] += 1
            votes[1] += halting_confidence(float(q))

    def ranked(self, task: str, input_grid: np.ndarray) -> list[np.ndarray]:
        """Distinct predicted grids for one test input, best first."""
        votes = self._votes.get(task, {}).get(arc.grid_hash(np.asarray(input_grid, dtype=np.uint8)), {})
        order = sorted(votes.items(), key=lambda kv: (kv[1][0], kv[1][1] / kv[1][0]), reverse=True)
        return [self._grids[h] for h, _ in order]

    def attempts(self, task: str, input_grid: np.ndarray, count: int = 2) -> dict[str, list] | None:
        """The ARC Prize entry for one test input, ``{"attempt_1": grid, ...}`` (the best grid repeated when
        fewer distinct grids got votes), or None when no prediction was added for it."""
        ranked = self.ranked(task, input_grid)
        if not ranked:
            return None
        tried = ranked[:count] + [ranked[0]] * max(0, count - len(ranked))
        return {f"attempt_{i + 1}": g.tolist() for i, g in enumerate(tried)}

    def result(self, pass_ks: tuple[int, ...] = PASS_KS, attempts: int = 2) -> ArcResult:
        correct = dict.fromkeys(pass_ks, 0.0)
        submission, missing = {}, []
        for task, value in self.test_puzzles.items():
            pairs = value["test"]
            hits = dict.fromkeys(pass_ks, 0)
            submission[task] = []
            for pair in pairs:
                ranked = self.ranked(task, np.array(pair["input"], dtype=np.uint8))
                if not ranked:
                    missing.append(task)
                    continue
                label = arc.grid_hash(np.array(pair["output"], dtype=np.uint8))
                hashes = [arc.grid_hash(g) for g in ranked]
                for k in pass_ks:
                    hits[k] += label in hashes[:k]
                submission[task].append(self.attempts(task, pair["input"], attempts))
            for k in pass_ks:
                correct[k] += hits[k] / len(pairs) if pairs else 0.0
        tasks = max(1, len(self.test_puzzles))
        metrics = {f"pass@{k}": correct[k] / tasks for k in pass_ks}
        metrics["tasks"] = float(len(self.test_puzzles))
        return ArcResult(metrics, submission, sorted(set(missing)))
