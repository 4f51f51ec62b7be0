"""The parity report written into a quantized bundle (``parity.json`` + ``parity.png``): float vs quantized.

Sections: ``accuracy`` (exact/cell accuracy of both on held-out puzzles, all steps, the official evaluation),
``answers`` (answer agreement, puzzles solved by one side only), ``halting`` (with the runtime's early exit:
mean steps of both, halting-step agreement, exact accuracy), ``per_step`` (teacher-forced: both graphs fed
the float trajectory's state at each step; logits error and argmax agreement), ``sizes`` and ``throughput``
(both graphs' step latency side by side in one process: read off the teacher-forced pass, whose steps
alternate between the two on the same feeds, or ``trm-edge bench``'s measurement when there was no report
pass over a full batch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

REPORT_JSON = "parity.json"
REPORT_PNG = "parity.png"


def parity(float_rt, quant_rt, examples, *, batch_size: int = 16, max_steps: int | None = None,
           threshold: float | None = None, log=lambda s: None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Accuracy, answers, halting (at ``threshold``, default the float model's calibrated one) and per-step
    divergence on labelled held-out ``examples``; and the throughput section measured by its teacher-forced pass
    (None without a full batch of ``batch_size``)."""
    from trm_edge.runtimes.accuracy import evaluate, score
    from trm_edge.runtimes.parity import free_running, teacher_forced_run
    from trm_edge.runtimes.solver import Solver

    threshold = float_rt.source.halt_threshold if threshold is None else threshold
    steps = max_steps or float_rt.config.halt_max_steps
    report: dict[str, Any] = {"puzzles": len(examples), "max_steps": steps, "halt_threshold": threshold}
    log(f"teacher-forced per-step divergence on {len(examples)} held-out puzzles (the float graph's trajectory is "
        "also its all-steps run)")
    forced = teacher_forced_run(float_rt, quant_rt, examples, steps=steps, batch_size=batch_size,
                                threshold=threshold)
    per_step, float_out = forced.per_step, forced.a_run
    runs = {("float", False): (score(float_rt, examples, float_out, threshold=threshold, max_steps=steps, halt=False),
                               float_out)}
    log(f"evaluating the quantized graph on {len(examples)} held-out puzzles (all steps; halting read from them)")
    solver = Solver(quant_rt, batch_size=batch_size, max_steps=steps, halt=False, threshold=threshold)
    runs[("quantized", False)] = evaluate(quant_rt, examples, solver=solver, by_step=True)
    for name, rt in (("float", float_rt), ("quantized", quant_rt)):
        halting = runs[(name, False)][1].halting(threshold)
        runs[(name, True)] = (score(rt, examples, halting, threshold=threshold, max_steps=steps, halt=True), halting)
    (mf, of), (mq, oq) = runs[("float", False)], runs[("quantized", False)]
    report["accuracy"] = {
        "exact": {"float": mf["exact_accuracy"], "quantized": mq["exact_accuracy"],
                  "drop_points": 100.0 * (mf["exact_accuracy"] - mq["exact_accuracy"])},
        "cell": {"float": mf["cell_accuracy"], "quantized": mq["cell_accuracy"]},
    }
    report["answers"] = free_running(of, oq, examples).to_dict()
    (hf, ohf), (hq, ohq) = runs[("float", True)], runs[("quantized", True)]
    report["halting"] = {
        "exact": {"float": hf["exact_accuracy"], "quantized": hq["exact_accuracy"]},
        "mean_steps": {"float": hf["mean_steps"], "quantized": hq["mean_steps"]},
        "steps_agreement": float((ohf.steps == ohq.steps).mean()) if len(examples) else 0.0,
        "halted_fraction": {"float": hf["halting"]["halted_fraction"], "quantized": hq["halting"]["halted_fraction"]},
        "answer_agreement": float(np.all(ohf.preds == ohq.preds, axis=-1).mean()) if len(examples) else 0.0,
    }
    report["per_step"] = [r.to_dict() for r in per_step]
    full_batches = [i for i, rows in enumerate(forced.a_run.step_rows) if rows == batch_size]
    if not full_batches:
        return report, None
    seconds = {"float": forced.a_run.step_seconds, "quantized": forced.b_step_seconds}
    step_ms = {name: 1e3 * float(np.median([t[i] for i in full_batches])) for name, t in seconds.items()}
    return report, _throughput(float_rt.config, step_ms, batch_size=batch_size, timed_steps=len(full_batches),
                               measured="teacher-forced pass")


def throughput(float_rt, quant_rt, inputs: np.ndarray, *, batch_size: int = 16, steps: int = 2, rounds: int = 2,
               log=lambda s: None) -> dict[str, Any]:
    """``trm-edge bench FLOAT QUANTIZED``'s measurement (runtimes.bench.bench_side_by_side, no halting, runs
    interleaved ``rounds`` times), for a report without a teacher-forced pass over a full batch."""
    from trm_edge.runtimes.bench import bench_side_by_side

    log(f"bench float and quantized side by side: batch {batch_size}, {steps} steps, {rounds} rounds")
    rows = bench_side_by_side([float_rt, quant_rt], inputs, batch_size=batch_size, max_steps=steps, halt=False,
                              repeats=rounds, warmup=1)
    step_ms = {name: r.step_ms_p50 for name, r in zip(("float", "quantized"), rows, strict=True)}
    return _throughput(float_rt.config, step_ms, batch_size=batch_size, timed_steps=steps * rounds,
                       measured="bench")


def _throughput(config, step_ms: dict[str, float], *, batch_size: int, timed_steps: int,
                measured: str) -> dict[str, Any]:
    """``puzzles_per_s`` is for the model's full ``halt_max_steps`` steps, from the median step latency at
    ``batch_size``."""
    from trm_edge.config import flops_per_step

    full = config.halt_max_steps
    out: dict[str, Any] = {"batch": batch_size, "timed_steps": timed_steps, "full_steps": full,
                           "measured": measured}
    for name, ms in step_ms.items():
        out[name] = {"step_ms": ms, "puzzles_per_s": batch_size / (ms / 1e3 * full),
                     "gop_per_s": flops_per_step(config) * batch_size / (ms / 1e3) / 1e9}
    out["speedup"] = out["quantized"]["puzzles_per_s"] / out["float"]["puzzles_per_s"]
    return out


def plot(report: dict[str, Any], path: Path) -> None:
    """Per-step teacher-forced argmax agreement and logits error, plus the accuracy bars, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    per_step = report.get("parity", {}).get("per_step") or []
    title = f"{report.get('precision', '')} {report.get('format', '')} vs fp32"
    if per_step:
        steps = [r["step"] for r in per_step]
        axes[0].plot(steps, [100 * r["argmax_agreement"] for r in per_step], marker="o")
        axes[0].set(xlabel="supervision step", ylabel="cells agreeing with fp32 (%)",
                    title="teacher-forced argmax agreement")
        axes[1].semilogy(steps, [max(r["logits_mean_abs"], 1e-9) for r in per_step], marker="o", label="mean")
        axes[1].semilogy(steps, [max(r["logits_max_abs"], 1e-9) for r in per_step], marker="s", label="max")
        axes[1].set(xlabel="supervision step", ylabel="|logits - fp32 logits|", title="teacher-forced logits error")
        axes[1].legend()
    coverage = report.get("calibration", {}).get("coverage_by_step") or []
    accuracy = report.get("parity", {}).get("accuracy")
    if accuracy:
        names = ["exact fp32", "exact q", "cell fp32", "cell q"]
        values = [accuracy["exact"]["float"], accuracy["exact"]["quantized"], accuracy["cell"]["float"],
                  accuracy["cell"]["quantized"]]
        axes[2].bar(names, [100 * v for v in values], color=["C0", "C1", "C0", "C1"])
        axes[2].set(ylabel="%", title=f"held-out accuracy ({report['parity']['puzzles']} puzzles)")
    elif coverage:
        axes[2].plot([c["step"] for c in coverage], [100 * c["covered"] for c in coverage], marker="o")
        axes[2].set(xlabel="supervision step", ylabel="% tensors in range", title="calibration coverage")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
