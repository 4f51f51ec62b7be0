"""Running candidate graphs through the project's runtime and solver (onnxruntime, CPU): exact accuracy for
accuracy control, and teacher-forced disagreement on recorded states for ranking.

A candidate graph is not a bundle yet; ``Bundle.with_step_graph`` presents "the source bundle with this step graph",
so candidates run through exactly the code path a user's bundle does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trm_edge.bundle.store import Bundle


def open_runtime(bundle: Bundle, graph_path: str | Path | None = None, *, precision: str | None = None,
                 threads: int | None = None):
    """An onnxruntime Runtime (CPU) on ``bundle``, or on ``bundle`` with another step graph."""
    from trm_edge.runtimes.model_source import bundle_source
    from trm_edge.runtimes.ort import OnnxRuntime

    if graph_path is not None:
        bundle = bundle.with_step_graph(graph_path, precision=precision or bundle.precision)
    return OnnxRuntime(bundle_source(bundle), device="cpu", threads=threads or None)


def exact_accuracy(runtime, examples, *, halt: bool, batch_size: int = 16, max_steps: int | None = None
                   ) -> tuple[float, Any]:
    """Exact accuracy of ``runtime`` on labelled ``examples`` (the solver's answers) and the solver output."""
    from trm_edge.runtimes.accuracy import accuracy
    from trm_edge.runtimes.solver import Solver

    out = Solver(runtime, batch_size=batch_size, max_steps=max_steps, halt=halt).run(
        examples.inputs, examples.puzzle_identifiers)
    exact, _ = accuracy(out.preds, examples.labels, examples.ignore_label_id)
    return float(exact.mean()) if len(exact) else 0.0, out


class StateProbe:
    """A fixed sample of recorded float32 states (spread over every step) with the float graph's logits on them:
    the cheap proxy accuracy control ranks candidates by (one step per state, no whole trajectories)."""

    def __init__(self, trajectories, float_runtime, *, per_step: int = 8, batch_size: int = 16) -> None:
        self.batch_size = batch_size
        self.feeds: list[dict[str, np.ndarray]] = []
        for k in range(trajectories.steps):
            count = len(trajectories.rows[k])
            take = np.linspace(0, count - 1, num=min(per_step, count)).round().astype(int)
            self.feeds.append(trajectories.feeds(k, take))
        self.reference = [float_runtime.step(f)["logits"] for f in self.feeds]

    def disagreement(self, runtime) -> dict[str, float]:
        """Mean over steps of the fraction of cells whose argmax differs from float, and the mean |logit error|."""
        cells, errors = [], []
        for feeds, ref in zip(self.feeds, self.reference, strict=True):
            got = runtime.step(feeds)["logits"]
            cells.append(float((got.argmax(-1) != ref.argmax(-1)).mean()))
            errors.append(float(np.abs(got - ref).mean()))
        return {"cell_disagreement": float(np.mean(cells)), "logits_mean_abs": float(np.mean(errors))}
