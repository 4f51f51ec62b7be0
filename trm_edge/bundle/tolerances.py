"""Per-precision tolerances and the one output comparison (numpy only: the device-side verify uses it).

An element passes when ``|got - ref| <= atol * scale + rtol * |ref|`` (numpy's and Polygraphy's
``atol + rtol * |ref|``), where ``scale`` is the magnitude of what feeds that output in that case
(``export.validate.feed_scales``: a state's RMS, a head's ``|W| @ |z| + |b|``): float rounding is
proportional to it, so a head output that cancels to near zero is not held to a tighter bound than the
arithmetic that produced it. ``ratio`` is the worst ``|got - ref| / (atol * scale + rtol * |ref|)``: an
output passes at ratio <= 1. Why these figures: docs/validation.md. For logits, ``argmax`` is the fraction
of cells whose predicted token agrees, where a cell whose reference top-2 logits are within ``tie`` of
each other counts as agreeing (either answer is the reference's, to its own precision).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from trm_edge.errors import ValidationError, choices

OK, FAIL = "✓", "✗"
SCALE_PREFIX = "scale."  # golden I/O key of an output's per-case feed scale: "scale.logits"
FLOAT_PREFIX = "fp32."  # golden I/O key of the float32 graph's output in a quantized bundle: "fp32.logits"
HEADS = ("logits", "q_halt_logits")  # one dot product past z_H_next: far less rounding than the states


@dataclass(frozen=True)
class Tolerance:
    rtol: float  # share of |ref|, per element
    atol: float  # share of the output's feed scale (per case), per element
    argmax: float  # minimum fraction of cells with the reference's predicted token (logits only)
    tie: float  # reference top-2 logit gap (relative to max |logit|) below which a cell is a tie
    head_atol: float | None = None  # atol of the HEADS outputs, when tighter than the states'

    def for_output(self, output: str) -> Tolerance:
        """This tolerance as it applies to ``output`` (``logits``, ``step.q_halt_logits``, ...)."""
        if self.head_atol is None or not output.rpartition(".")[2].startswith(HEADS):
            return self
        return replace(self, atol=self.head_atol, head_atol=None)


# The one place tolerances live (docs/validation.md has the measurements behind them). fp32 is the export
# contract. The states' atol is set by random-weight models, whose recursion amplifies rounding within one
# step: the full-size sudoku-extreme-mlp's own fp32-vs-float64 error reaches ~1e-4 of the feed scale (trained
# models: ~1e-5), so 1e-3 leaves that ~9x of room, while one weight tensor off by 1e-3 relative (the smallest
# defect tried) lands 5x or more above it. The heads' rounding is ~10x smaller: 1e-4 for them. fp16/int8 are
# the quantizer's per-step starting points.
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(rtol=1e-4, atol=1e-3, argmax=1.0, tie=1e-5, head_atol=1e-4),
    "fp16": Tolerance(rtol=1e-2, atol=1e-2, argmax=0.99, tie=1e-3),
    "int8": Tolerance(rtol=1.5e-1, atol=1.5e-1, argmax=0.90, tie=1e-2),
}


@dataclass(frozen=True)
class Margin:
    """How much further from the float32 outputs than the reference kernels another runtime may land on a
    quantized graph. Each runtime rounds INT8/FP16 its own way (OpenVINO's and TensorRT's kernels are not
    onnxruntime's), so their outputs are compared with float32, held to the reference's own distance from it."""

    factor: float  # times the reference kernels' worst error (share of the feed scale)
    floor: float  # plus this share of the feed scale
    argmax: float  # cells agreeing with float32: at most this fraction fewer than the reference's


# Measured on the shipped models' x86 INT8 bundles (default, maze), max error over the golden cases as a share of
# the feed scale, against onnxruntime's: OpenVINO's int8 kernels 0.79-1.61x per output; the same graph with its
# activation zero points dropped (what an importer that ignores asymmetric quantization runs) 4.5-10.9x. Twice the
# reference's distance plus 2% of the feed scale separates the two (docs/validation.md).
REFERENCE_MARGIN = Margin(factor=2.0, floor=0.02, argmax=0.05)


def tolerance_for(precision: str) -> Tolerance:
    if precision not in TOLERANCES:
        raise ValidationError(f"no tolerance for precision {precision!r}; known: {choices(TOLERANCES)}")
    return TOLERANCES[precision]


def case_scales(ref: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """Per-case feed scales as ``error_ratio`` applies them: the given ones, else the reference's largest
    magnitude (bundles written before feed scales)."""
    if scale is None:
        return np.full(len(ref), float(np.max(np.abs(ref))) if np.size(ref) else 1.0)
    return np.asarray(scale, dtype=np.float64).reshape(len(ref))


def reference_tolerance(precision: str, quantized: np.ndarray, float32: np.ndarray, scale: np.ndarray | None,
                        margin: Margin = REFERENCE_MARGIN) -> Tolerance:
    """The tolerance of one output of a quantized graph against its float32 output: ``margin`` around how far
    the reference kernels' output (``quantized``, onnxruntime's, in the golden I/O) lies from float32."""
    base = tolerance_for(precision)
    quantized, float32 = np.asarray(quantized, np.float64), np.asarray(float32, np.float64)
    scales = np.maximum(case_scales(float32, scale), 1e-30)
    per_case = np.abs(quantized - float32).reshape(len(float32), -1).max(1) / scales
    cells = 1.0
    if quantized.ndim == 3 and len(quantized):  # logits: the worst case, as OutputCheck counts agreement
        cells = min(argmax_agreement(q, f, tie=base.tie) for q, f in zip(quantized, float32))  # noqa: B905
    return Tolerance(rtol=0.0, atol=margin.factor * float(per_case.max()) + margin.floor,
                     argmax=max(0.0, min(base.argmax, cells) - margin.argmax), tie=base.tie)


def error_ratio(got: np.ndarray, ref: np.ndarray, scale: np.ndarray | float | None, tolerance: Tolerance) -> float:
    """Worst ``|got - ref| / (atol * scale + rtol * |ref|)`` (float64; inf for a NaN/inf anywhere). ``scale``
    is per case along the first axis, a scalar, or None for the reference's own largest magnitude."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if not (np.all(np.isfinite(got)) and np.all(np.isfinite(ref))):
        return float("inf")  # NaN/inf in either side is a failure, never a silent max()
    if ref.size == 0:
        return 0.0
    if scale is None:
        scale = float(np.max(np.abs(ref)))
    scale = np.asarray(scale, dtype=np.float64)
    scale = scale.reshape(scale.shape + (1,) * (ref.ndim - scale.ndim))
    allowed = np.maximum(tolerance.atol * scale + tolerance.rtol * np.abs(ref), 1e-30)
    return float(np.max(np.abs(got - ref) / allowed))


@dataclass
class OutputCheck:
    """Worst-case agreement of one output over every compared case (steps, puzzles, random states)."""

    output: str
    tolerance: Tolerance
    max_abs: float = 0.0
    ratio: float = 0.0
    argmax: float | None = None
    cases: int = 0
    worst_case: str = ""

    def __post_init__(self) -> None:
        self.tolerance = self.tolerance.for_output(self.output)

    @property
    def passed(self) -> bool:
        ok = np.isfinite(self.ratio) and self.ratio <= 1.0
        return bool(ok and (self.argmax is None or self.argmax >= self.tolerance.argmax))

    def update(self, got: np.ndarray, ref: np.ndarray, case: str, scale: np.ndarray | float | None = None) -> None:
        """Compare one case (or a batch of cases along the first axis, ``scale`` one value per row)."""
        got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
        if got.shape != ref.shape:
            self.ratio, self.max_abs, self.worst_case = float("inf"), float("inf"), f"{case}: shape {got.shape} " \
                                                                                   f"!= {ref.shape}"
            self.cases += 1
            return
        ratio = error_ratio(got, ref, scale, self.tolerance)
        abs_err = float(np.max(np.abs(got - ref))) if np.isfinite(ratio) and got.size else float("inf")
        if ratio > self.ratio or self.cases == 0:
            self.worst_case = case
        self.max_abs, self.ratio = max(self.max_abs, abs_err), max(self.ratio, ratio)
        if self.output.startswith("logits"):
            agree = argmax_agreement(got, ref, tie=self.tolerance.tie)
            self.argmax = agree if self.argmax is None else min(self.argmax, agree)
        self.cases += 1

    def line(self) -> str:
        mark = OK if self.passed else FAIL
        text = f"{mark} {self.output:<24} max abs {self.max_abs:.2e}  err/tol {self.ratio:.3f}"
        if self.argmax is not None:
            text += f"  argmax {100 * self.argmax:.2f}% (min {100 * self.tolerance.argmax:.0f}%)"
        return text + f"  [{self.cases} cases, worst {self.worst_case}]"

    def failure(self) -> str:
        t = self.tolerance
        reasons = []
        if not (np.isfinite(self.ratio) and self.ratio <= 1.0):
            reasons.append(f"error {self.ratio:.3g}x the tolerance (max abs {self.max_abs:.2e}; allowed "
                           f"{t.atol:.0e} x feed scale + {t.rtol:.0e} x |ref|)")
        if self.argmax is not None and self.argmax < t.argmax:
            reasons.append(f"argmax {100 * self.argmax:.2f}% < {100 * t.argmax:.0f}%")
        return f"{self.output}: {', '.join(reasons)} at {self.worst_case}"

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "passed": self.passed, "max_abs": self.max_abs, "error_ratio": self.ratio,
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
