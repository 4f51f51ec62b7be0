"""Running candidate graphs through the project's runtime and solver (onnxruntime, CPU): exact accuracy for
accuracy control, and teacher-forced disagreement on recorded states for ranking.

A candidate graph is not a bundle yet; :class:`GraphBundle` presents "the source bundle with this step graph"
to the onnxruntime adapter, so candidates run through exactly the code path a user's bundle does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class GraphBundle:
    """A bundle whose step graph is replaced by ``graph_path`` (everything else delegates to ``bundle``)."""

    def __init__(self, bundle, graph_path: str | Path, *, precision: str) -> None:
        self._bundle = bundle
        self.step_graph_path = Path(graph_path)
        self.precision = precision

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bundle, name)


def open_runtime(bundle, graph_path: str | Path | None = None, *, precision: str | None = None, threads: int = 0):
    """An onnxruntime Runtime (CPU) on ``bundle``, or on ``bundle`` with another step graph."""
    from trm_edge.runtimes.base import ModelSource
    from trm_edge.runtimes.ort import OnnxRuntime, OrtOptions

    precision = precision or bundle.precision
    source_bundle = bundle if graph_path is None else GraphBundle(bundle, graph_path, precision=precision)
    source = ModelSource(kind="bundle", path=Path(bundle.path), config=bundle.config, task=bundle.task,
                         bundle=source_bundle, target=bundle.target, precision=precision)
    return OnnxRuntime(source, device="cpu", options=OrtOptions(intra_op_threads=threads))


def exact_accuracy(runtime, examples, *, halt: bool, batch_size: int = 16, max_steps: int | None = None
                   ) -> tuple[float, Any]:
    """Exact accuracy of ``runtime`` on labelled ``examples`` (the solver's answers) and the solver output."""
    from trm_edge.runtimes.evaluate import accuracy
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
