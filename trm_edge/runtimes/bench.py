"""Latency and throughput of runtimes, measured side by side (interleaved runs on one machine). Backs
``trm-edge bench``.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from trm_edge.config import flops_per_step
from trm_edge.runtimes.interface import Runtime
from trm_edge.runtimes.solver import Solver


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, np.float64), q)) if len(values) else float("nan")


@dataclass(frozen=True)
class Latency:
    """One runtime's measurement at one batch size: step and whole-puzzle latency, throughput, compute rate."""

    batch: int
    max_steps: int
    halt: bool
    repeats: int
    mean_steps: float
    step_ms_p50: float
    step_ms_p95: float
    full_step_ms_p50: float | None  # steps with every row of the batch in flight (what the limit is for)
    puzzle_s_p50: float  # a puzzle's latency: its whole batch's run
    puzzle_s_p95: float
    puzzles_per_s: float
    gflops: float | None  # achieved GFLOP/s over the timed steps
    gflop_per_step: float
    peak_rss_mb: float  # of the process: with several runtimes, of all of them together

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bench_side_by_side(runtimes: Sequence[Runtime], inputs: np.ndarray, *, batch_size: int,
                       max_steps: int | None, halt: bool, repeats: int, warmup: int,
                       puzzle_identifiers: np.ndarray | None = None,
                       on_run: Callable[[], Any] | None = None) -> list[Latency]:
    """Warm up, then solve one batch of ``batch_size`` puzzles ``repeats`` times on each runtime; latency
    statistics per runtime. The runs are interleaved (round robin), so that load from elsewhere on a shared
    machine hits all runtimes alike and their ratios mean something."""
    batch = inputs[:batch_size]
    if len(batch) < batch_size:
        batch = np.resize(inputs, (batch_size, inputs.shape[1]))
    ids = None if puzzle_identifiers is None else np.resize(puzzle_identifiers, batch_size)
    solvers = [Solver(rt, batch_size=batch_size, max_steps=max_steps, halt=halt) for rt in runtimes]
    timings: list[dict[str, list[float]]] = [{"runs": [], "step_seconds": [], "step_rows": [], "steps": []}
                                             for _ in runtimes]
    for rt in runtimes:
        rt.load()
    for round_index in range(warmup + repeats):
        for solver, timing in zip(solvers, timings):  # noqa: B905
            start = time.perf_counter()
            out = solver.run(batch, ids)
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                timing["runs"].append(elapsed)
                timing["step_seconds"] += out.step_seconds
                timing["step_rows"] += out.step_rows
                timing["steps"].append(float(out.steps.mean()))
            if on_run is not None:
                on_run()
    return [_latency_summary(rt, solver, t, batch_size=batch_size, halt=halt)
            for rt, solver, t in zip(runtimes, solvers, timings)]  # noqa: B905


def _latency_summary(runtime: Runtime, solver: Solver, t: dict[str, list[float]], *, batch_size: int,
                     halt: bool) -> Latency:
    flops = flops_per_step(runtime.config) * float(np.sum(t["step_rows"]))
    full = [s for s, rows in zip(t["step_seconds"], t["step_rows"]) if rows == batch_size]  # noqa: B905
    step_total = float(np.sum(t["step_seconds"]))
    return Latency(
        batch=batch_size, max_steps=solver.max_steps, halt=halt, repeats=len(t["runs"]),
        mean_steps=float(np.mean(t["steps"])),
        step_ms_p50=1e3 * percentile(t["step_seconds"], 50), step_ms_p95=1e3 * percentile(t["step_seconds"], 95),
        full_step_ms_p50=1e3 * percentile(full, 50) if full else None,
        puzzle_s_p50=percentile(t["runs"], 50), puzzle_s_p95=percentile(t["runs"], 95),
        puzzles_per_s=batch_size / percentile(t["runs"], 50),
        gflops=flops / step_total / 1e9 if step_total else None,
        gflop_per_step=flops_per_step(runtime.config) / 1e9, peak_rss_mb=peak_rss_mb())
