"""Per-precision tolerances and the one output comparison (numpy only: the device-side verify uses it).

``rel`` is the largest absolute error relative to the largest reference magnitude of that output,
``max|got - ref| / max|ref|``; for logits, ``argmax`` is the fraction of cells whose predicted token
agrees, where a cell whose reference top-2 logits are within ``tie`` of each other counts as agreeing
(either answer is the reference's, to its own precision).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from trm_edge.errors import ValidationError, choices

OK, FAIL = "✓", "✗"


@dataclass(frozen=True)
class Tolerance:
    rel: float  # max |got - ref| / max |ref|, per output
    argmax: float  # minimum fraction of cells with the reference's predicted token (logits only)
    tie: float  # reference top-2 logit gap (relative to max |logit|) below which a cell is a tie


# The one place tolerances live. fp32 is the export contract: every step reproduces the reference to
# 1e-4 relative error (measured: ~1e-6). fp16/int8 are the quantizer's starting points per step.
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(rel=1e-4, argmax=1.0, tie=1e-5),
    "fp16": Tolerance(rel=1e-2, argmax=0.99, tie=1e-3),
    "int8": Tolerance(rel=1.5e-1, argmax=0.90, tie=1e-2),
}


def tolerance_for(precision: str) -> Tolerance:
    if precision not in TOLERANCES:
        raise ValidationError(f"no tolerance for precision {precision!r}; known: {choices(TOLERANCES)}")
    return TOLERANCES[precision]


@dataclass
class OutputCheck:
    """Worst-case agreement of one output over every compared case (steps, puzzles, random states)."""

    output: str
    tolerance: Tolerance
    max_abs: float = 0.0
    rel: float = 0.0
    argmax: float | None = None
    cases: int = 0
    worst_case: str = ""

    @property
    def passed(self) -> bool:
        ok = np.isfinite(self.rel) and self.rel <= self.tolerance.rel
        return bool(ok and (self.argmax is None or self.argmax >= self.tolerance.argmax))

    def update(self, got: np.ndarray, ref: np.ndarray, case: str) -> None:
        got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
        if got.shape != ref.shape:
            self.rel, self.max_abs, self.worst_case = float("inf"), float("inf"), f"{case}: shape {got.shape} " \
                                                                                 f"!= {ref.shape}"
            self.cases += 1
            return
        if not (np.all(np.isfinite(got)) and np.all(np.isfinite(ref))):
            abs_err = rel = float("inf")  # NaN/inf in either side is a failure, never a silent max()
        else:
            abs_err = float(np.max(np.abs(got - ref))) if got.size else 0.0
            rel = abs_err / max(float(np.max(np.abs(ref))) if ref.size else 0.0, 1e-30)
        if rel > self.rel or self.cases == 0:
            self.worst_case = case
        self.max_abs, self.rel = max(self.max_abs, abs_err), max(self.rel, rel)
        if self.output.startswith("logits"):
            agree = argmax_agreement(got, ref, tie=self.tolerance.tie)
            self.argmax = agree if self.argmax is None else min(self.argmax, agree)
        self.cases += 1

    def line(self) -> str:
        mark = OK if self.passed else FAIL
        text = f"{mark} {self.output:<24} max abs {self.max_abs:.2e}  rel {self.rel:.2e} (tol {self.tolerance.rel:.0e})"
        if self.argmax is not None:
            text += f"  argmax {100 * self.argmax:.2f}% (min {100 * self.tolerance.argmax:.0f}%)"
        return text + f"  [{self.cases} cases, worst {self.worst_case}]"

    def failure(self) -> str:
        reasons = []
        if not (np.isfinite(self.rel) and self.rel <= self.tolerance.rel):
            reasons.append(f"rel {self.rel:.2e} > {self.tolerance.rel:.0e}")
        if self.argmax is not None and self.argmax < self.tolerance.argmax:
            reasons.append(f"argmax {100 * self.argmax:.2f}% < {100 * self.tolerance.argmax:.0f}%")
        return f"{self.output}: {', '.join(reasons)} at {self.worst_case}"

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "passed": self.passed, "max_abs": self.max_abs, "rel": self.rel,
                "argmax_agreement": self.argmax, "cases": self.cases, "worst_case": self.worst_case,
                "tolerance": asdict(self.tolerance)}


def argmax_agreement(got: np.ndarray, ref: np.ndarray, *, tie: float) -> float:
    """Fraction of cells (last axis = classes) where ``got`` predicts the reference's token, ties excepted."""
    got, ref = np.asarray(got), np.asarray(ref)
    if ref.size == 0:
        return 1.0
    pred, want = got.argmax(-1), ref.argmax(-1)
    ref_at_pred = np.take_along_axis(ref, pred[..., None], -1)[..., 0]
    ref_best = np.take_along_axis(ref, want[..., None], -1)[..., 0]
    scale = max(float(np.max(np.abs(ref))), 1e-30)
    agree = (pred == want) | (ref_best - ref_at_pred <= tie * scale)
    return float(agree.mean())


def raise_for_failures(checks: list[OutputCheck], *, what: str) -> None:
    """One ValidationError naming every output that missed its tolerance (never a warning)."""
    failed = [c for c in checks if not c.passed]
    if failed:
        error = ValidationError(f"{what} failed validation on {len(failed)} output(s): "
                                + "; ".join(c.failure() for c in failed))
        error.checks = checks  # the CLI prints every check line before the error
        raise error
