"""Verification of a runtime on a bundle's golden I/O: one step on the recorded feeds, every output held to the
bundle's tolerances (trm_edge/bundle/tolerances.py). Backs ``trm-edge verify`` and the checks before bench.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trm_edge.bundle.contract import input_names
from trm_edge.bundle.tolerances import OutputCheck
from trm_edge.errors import ValidationError
from trm_edge.runtimes.interface import Runtime


@dataclass(frozen=True)
class GoldenVerification:
    """One runtime held to a bundle's golden I/O: a check per step output, the worst of them, and what the outputs
    were held to (``reference``: the bundle's precision, or float32 within the reference kernels' distance)."""

    precision: str
    reference: str
    cases: int
    runtime: dict[str, Any]
    checks: list[OutputCheck] = field(default_factory=list)
    note: str | None = None  # why other runtimes cannot be verified closely on this bundle, when they cannot

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def worst(self) -> OutputCheck | None:
        return max(self.checks, key=lambda c: c.ratio) if self.checks else None

    @property
    def lines(self) -> list[str]:
        return [c.line() for c in self.checks]

    def raise_if_failed(self, *, what: str) -> None:
        """One ValidationError naming every output that missed its tolerance."""
        if not self.ok:
            bad = [c.line() for c in self.checks if not c.passed]
            note = f" ({self.note})" if self.note else ""
            raise ValidationError(f"{what} failed verification: {'; '.join(bad) or 'no golden outputs to compare'}"
                                  + note)

    def to_dict(self) -> dict[str, Any]:
        worst = self.worst
        return {"ok": self.ok, "checks": [c.to_dict() for c in self.checks], "lines": self.lines, "cases": self.cases,
                "note": self.note, "reference": self.reference,
                "worst": None if worst is None else {"output": worst.output, "error_ratio": worst.ratio,
                                                     "max_abs": worst.max_abs, "case": worst.worst_case},
                "precision": self.precision, "runtime": self.runtime}


def verify_golden(runtime: Runtime, golden: dict[str, np.ndarray], *, precision: str) -> GoldenVerification:
    """Run the bundle's golden step feeds through ``runtime`` and check every output with the export's
    tolerances for the bundle's precision (trm_edge.bundle.tolerances: the one place they live).

    A quantized bundle's golden I/O holds onnxruntime's outputs of the quantized graph and, under ``fp32.``
    keys, the float32 graph's: then every runtime is held to float32, no further from it than onnxruntime's
    kernels by ``REFERENCE_MARGIN`` (other runtimes' INT8 and FP16 kernels round differently, and rightly)."""
    from trm_edge.bundle.tolerances import FLOAT_PREFIX, SCALE_PREFIX, reference_tolerance, tolerance_for

    tolerance = tolerance_for(precision)
    names = input_names(runtime.config)
    missing = [k for k in names if k not in golden]
    if missing:
        raise ValidationError(f"the golden I/O lacks step feeds {missing}; re-export the bundle")
    feeds = {k: golden[k] for k in names}
    out = runtime.step(feeds)
    steps = golden.get("step")
    outputs = [name for name in ("z_H_next", "z_L_next", "logits", "q_halt_logits") if name in golden]
    against_float = precision != "fp32" and bool(outputs) and all(FLOAT_PREFIX + n in golden for n in outputs)
    checks = []
    for name in outputs:
        scales = golden.get(SCALE_PREFIX + name)  # bundles exported before feed scales: the output's own
        expected = golden[FLOAT_PREFIX + name] if against_float else golden[name]
        check = OutputCheck(name, reference_tolerance(precision, golden[name], expected, scales) if against_float
                            else tolerance)
        for case in range(len(expected)):
            label = f"case {case}" + (f" (step {int(steps[case])})" if steps is not None else "")
            check.update(out[name][case], expected[case], label, None if scales is None else scales[case])
        checks.append(check)
    note = None
    if precision != "fp32" and not against_float and runtime.name != "onnxruntime":
        note = (f"this bundle's golden I/O holds only onnxruntime's {precision} outputs, which other kernels do not "
                "reproduce; quantize the fp32 bundle again with this trm-edge to verify other runtimes against fp32")
    return GoldenVerification(precision, "float32, within the reference kernels' distance" if against_float
                              else precision, len(golden["inputs"]), runtime.describe(), checks, note)
