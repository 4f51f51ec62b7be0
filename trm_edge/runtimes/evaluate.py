"""Measuring runtimes: accuracy on a dataset split, parity between two runtimes, and latency.

numpy only (the device side): these back ``trm-edge eval``, ``compare``, ``bench`` and ``verify``.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trm_edge.errors import DatasetError, TrmEdgeError, ValidationError
from trm_edge.runtimes.base import Runtime, input_names
from trm_edge.runtimes.solver import SolveOutput, Solver
from trm_edge.trm.config import flops_per_step

# -- data ------------------------------------------------------------------------------------------------


@dataclass
class Examples:
    """Puzzles with optional labels, as the solver takes them."""

    inputs: np.ndarray  # [N, seq_len] int32
    labels: np.ndarray | None = None  # [N, seq_len]
    puzzle_identifiers: np.ndarray | None = None  # [N]
    ignore_label_id: int | None = 0

    def __len__(self) -> int:
        return len(self.inputs)

    def head(self, n: int | None) -> Examples:
        if n is None:
            return self
        return Examples(self.inputs[:n], None if self.labels is None else self.labels[:n],
                        None if self.puzzle_identifiers is None else self.puzzle_identifiers[:n],
                        self.ignore_label_id)


def read_examples(data_dir: str, split: str, *, config: Any = None) -> Examples:
    """A split of a dataset in the official layout, one row per example (identifiers expanded)."""
    from trm_edge.puzzles.dataset import read_split

    s = read_split(data_dir, split)
    inputs = np.asarray(s.inputs)
    labels = np.asarray(s.labels)
    ids = None
    if getattr(s, "puzzle_identifiers", None) is not None and getattr(s, "puzzle_indices", None) is not None:
        per_puzzle = np.asarray(s.puzzle_identifiers)
        counts = np.diff(np.asarray(s.puzzle_indices))
        if counts.sum() == len(inputs) and len(counts) == len(per_puzzle):
            ids = np.repeat(per_puzzle, counts)
    metadata = getattr(s, "metadata", None)
    ignore = _meta(metadata, "ignore_label_id", 0)
    if config is not None:
        if inputs.ndim != 2 or inputs.shape[1] != config.seq_len:
            raise DatasetError(f"{data_dir!r} {split}: puzzles of length {inputs.shape[-1]}; the model expects "
                               f"{config.seq_len}")
        vocab = _meta(metadata, "vocab_size", None)
        if vocab is not None and int(vocab) > config.vocab_size:
            raise DatasetError(f"{data_dir!r}: vocabulary of {vocab} tokens; the model has {config.vocab_size}")
    return Examples(inputs.astype(np.int32), labels, ids, None if ignore is None else int(ignore))


def _meta(metadata: Any, key: str, default: Any) -> Any:
    if metadata is None:
        return default
    if isinstance(metadata, dict):
        return metadata.get(key, default)
    return getattr(metadata, key, default)


def random_inputs(config: Any, n: int, *, seed: int = 0) -> np.ndarray:
    """Random tokens of the model's vocabulary, PAD (0) excluded: stand-in puzzles for benchmarks."""
    rng = np.random.default_rng(seed)
    return rng.integers(1, max(2, config.vocab_size), size=(n, config.seq_len), dtype=np.int32)


# -- accuracy --------------------------------------------------------------------------------------------


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
    return {**result.metrics, "tasks_without_prediction": result.missing}, result.submission


# -- parity -----------------------------------------------------------------------------------------------


def teacher_forced(a: Runtime, b: Runtime, examples: Examples, *, steps: int, batch_size: int = 16,
                   threshold: float | None = None, on_step: Callable[[int], Any] | None = None
                   ) -> list[dict[str, Any]]:
    """Per step: feed the state of A's trajectory to both runtimes, compare their outputs.

    Returns one record per supervision step with the logits' max/mean absolute and max relative
    difference, argmax (predicted cell) agreement, the q_halt difference and halting agreement (at
    ``threshold``, default A's calibrated one), and the state difference. Random-weight TRM is chaotic
    (DESIGN.md): this is the meaningful parity test; whole trajectories are compared by answers
    (``free_running``)."""
    return teacher_forced_run(a, b, examples, steps=steps, batch_size=batch_size, threshold=threshold,
                              on_step=on_step).per_step


@dataclass
class TeacherForcedRun:
    per_step: list[dict[str, Any]]  # :func:`teacher_forced`'s records
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
    threshold = a.source.halt_threshold if threshold is None else threshold
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
    for start in range(0, n, batch_size):
        inputs = examples.inputs[start:start + batch_size]
        rows = len(inputs)
        shape = (rows, cfg.total_len, cfg.hidden_size)
        feeds = {"inputs": inputs, "z_H": np.broadcast_to(h0, shape).copy(), "z_L": np.broadcast_to(l0, shape).copy()}
        if "puzzle_embedding" in input_names(cfg):
            ids = (np.zeros(rows, np.int64) if examples.puzzle_identifiers is None
                   else examples.puzzle_identifiers[start:start + batch_size])
            feeds["puzzle_embedding"] = a.puzzle_embedding(ids)
            emb_diff = max(emb_diff, float(np.abs(feeds["puzzle_embedding"] - b.puzzle_embedding(ids)).max()))
        for k in range(steps):
            started = time.perf_counter()
            out_a = a.step(feeds)
            middle = time.perf_counter()
            out_b = b.step(feeds)
            a_seconds.append(middle - started)
            b_seconds.append(time.perf_counter() - middle)
            step_rows.append(rows)
            r = acc[k]
            la, lb = out_a["logits"], out_b["logits"]
            step_preds[k, start:start + rows] = la.argmax(-1)
            step_q[k, start:start + rows] = np.asarray(out_a["q_halt_logits"]).reshape(rows)
            diff = np.abs(la.astype(np.float64) - lb)
            r["logits_max_abs"] = max(r["logits_max_abs"], float(diff.max()))
            r["logits_sum_abs"] += float(diff.sum())
            r["logits_ref_max"] = max(r["logits_ref_max"], float(np.abs(la).max()))
            r["cells"] += la.shape[0] * la.shape[1]
            r["cells_agree"] += int((la.argmax(-1) == lb.argmax(-1)).sum())
            qa, qb = out_a["q_halt_logits"], out_b["q_halt_logits"]
            r["q_max_abs"] = max(r["q_max_abs"], float(np.abs(qa - qb).max()))
            r["halt_agree"] += int(((qa > threshold) == (qb > threshold)).sum())
            r["puzzles"] += rows
            state = max(np.abs(out_a["z_H_next"] - out_b["z_H_next"]).max(),
                        np.abs(out_a["z_L_next"] - out_b["z_L_next"]).max())
            r["state_max_abs"] = max(r["state_max_abs"], float(state))
            feeds = {**feeds, "z_H": out_a["z_H_next"], "z_L": out_a["z_L_next"]}
            if on_step is not None:
                on_step(rows)
    records = []
    for r in acc:
        values = max(r["cells"], 1) * cfg.vocab_size
        records.append({
            "step": r["step"], "logits_max_abs": r["logits_max_abs"], "logits_mean_abs": r["logits_sum_abs"] / values,
            "logits_max_rel": r["logits_max_abs"] / max(r["logits_ref_max"], 1e-12),
            "argmax_agreement": r["cells_agree"] / max(r["cells"], 1), "q_halt_max_abs": r["q_max_abs"],
            "halt_agreement": r["halt_agree"] / max(r["puzzles"], 1), "state_max_abs": r["state_max_abs"],
            "initial_state_max_abs": init_diff, "puzzle_embedding_max_abs": emb_diff,
        })
    run_a = SolveOutput(step_preds[-1].copy(), np.full(n, steps, np.int32), step_q[-1].copy(), np.zeros(n, bool),
                        step_seconds=a_seconds, step_rows=step_rows, seconds=float(np.sum(a_seconds)),
                        step_preds=step_preds, step_q=step_q)
    return TeacherForcedRun(records, run_a, b_seconds)


def free_running(out_a: SolveOutput, out_b: SolveOutput, examples: Examples) -> dict[str, Any]:
    """Answer-level agreement of two whole solver runs (meaningful on trained models)."""
    same = np.all(out_a.preds == out_b.preds, axis=-1)
    report: dict[str, Any] = {
        "answer_agreement": float(same.mean()) if len(same) else 0.0,
        "cell_agreement": float((out_a.preds == out_b.preds).mean()) if len(same) else 0.0,
        "steps_agreement": float((out_a.steps == out_b.steps).mean()) if len(same) else 0.0,
        "mean_steps": [float(out_a.steps.mean()), float(out_b.steps.mean())] if len(same) else [0.0, 0.0],
    }
    if examples.labels is not None:
        ea = accuracy(out_a.preds, examples.labels, examples.ignore_label_id)[0]
        eb = accuracy(out_b.preds, examples.labels, examples.ignore_label_id)[0]
        report["exact_accuracy"] = [float(ea.mean()), float(eb.mean())]
        report["exact_accuracy_diff"] = float(eb.mean() - ea.mean())
        report["solved_by_a_only"] = int((ea & ~eb).sum())
        report["solved_by_b_only"] = int((eb & ~ea).sum())
        report["a_solved_kept"] = float((ea & eb).sum() / ea.sum()) if ea.any() else None  # of A's solved, B's share
    return report


def check_same_model(a: Runtime, b: Runtime) -> None:
    ca, cb = a.config.to_dict(), b.config.to_dict()
    keys = ("seq_len", "vocab_size", "hidden_size", "puzzle_emb_ndim", "puzzle_emb_len", "num_puzzle_identifiers")
    differ = [k for k in keys if ca[k] != cb[k]]
    if differ:
        raise TrmEdgeError("the two models have different shapes: " +
                           ", ".join(f"{k} {ca[k]} vs {cb[k]}" for k in differ))


# -- verify: golden I/O ---------------------------------------------------------------------------------


def verify_golden(runtime: Runtime, golden: dict[str, np.ndarray], *, precision: str) -> dict[str, Any]:
    """Run the bundle's golden step feeds through ``runtime`` and check every output with the export's
    tolerances for the bundle's precision (trm_edge.export.tolerances: the one place they live).

    A quantized bundle's golden I/O holds onnxruntime's outputs of the quantized graph and, under ``fp32.``
    keys, the float32 graph's: then every runtime is held to float32, no further from it than onnxruntime's
    kernels by ``REFERENCE_MARGIN`` (other runtimes' INT8 and FP16 kernels round differently, and rightly)."""
    from trm_edge.export.tolerances import FLOAT_PREFIX, SCALE_PREFIX, OutputCheck, reference_tolerance, tolerance_for

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
    worst = max(checks, key=lambda c: c.ratio) if checks else None
    note = None
    if precision != "fp32" and not against_float and runtime.name != "onnxruntime":
        note = (f"this bundle's golden I/O holds only onnxruntime's {precision} outputs, which other kernels do not "
                "reproduce; quantize the fp32 bundle again with this trm-edge to verify other runtimes against fp32")
    return {"ok": bool(checks) and all(c.passed for c in checks), "checks": [c.to_dict() for c in checks],
            "lines": [c.line() for c in checks], "cases": len(golden["inputs"]), "note": note,
            "reference": "float32, within the reference kernels' distance" if against_float else precision,
            "worst": None if worst is None else {"output": worst.output, "error_ratio": worst.ratio,
                                                 "max_abs": worst.max_abs, "case": worst.worst_case},
            "precision": precision, "runtime": runtime.describe()}


def raise_if_failed(report: dict[str, Any], *, what: str) -> None:
    """One ValidationError naming every output that missed its tolerance."""
    if not report["ok"]:
        bad = [line for line, c in zip(report["lines"], report["checks"]) if not c["passed"]]  # noqa: B905
        note = f" ({report['note']})" if report.get("note") else ""
        raise ValidationError(f"{what} failed verification: {'; '.join(bad) or 'no golden outputs to compare'}"
                              + note)


# -- latency ---------------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, np.float64), q)) if len(values) else float("nan")


def bench_side_by_side(runtimes: Sequence[Runtime], inputs: np.ndarray, *, batch_size: int,
                       max_steps: int | None, halt: bool, repeats: int, warmup: int,
                       puzzle_identifiers: np.ndarray | None = None,
                       on_run: Callable[[], Any] | None = None) -> list[dict[str, Any]]:
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
                     halt: bool) -> dict[str, Any]:
    flops = flops_per_step(runtime.config) * float(np.sum(t["step_rows"]))
    step_total = float(np.sum(t["step_seconds"]))
    return {
        "batch": batch_size,
        "max_steps": solver.max_steps,
        "halt": halt,
        "repeats": len(t["runs"]),
        "mean_steps": float(np.mean(t["steps"])),
        "step_ms_p50": 1e3 * percentile(t["step_seconds"], 50),
        "step_ms_p95": 1e3 * percentile(t["step_seconds"], 95),
        "puzzle_s_p50": percentile(t["runs"], 50),  # a puzzle's latency: its whole batch's run
        "puzzle_s_p95": percentile(t["runs"], 95),
        "puzzles_per_s": batch_size / percentile(t["runs"], 50),
        "gflops": flops / step_total / 1e9 if step_total else None,
        "gflop_per_step": flops_per_step(runtime.config) / 1e9,
        "peak_rss_mb": peak_rss_mb(),  # of the process: with several runtimes, of all of them together
    }
