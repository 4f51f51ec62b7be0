"""Validation of exported graphs against the torch reference, through the recursion core.

Step graph: teacher-forced. From the initial state, the torch reference runs the trajectory of the validation
puzzles step by step; at every step onnxruntime is fed torch's state (the recursion core's followers) and its four
outputs are compared. Then one step from random states (states the trajectory may not visit). Whole random
trajectories are chaotic (docs/design.md), so they are never compared directly.

Unrolled graph: compared with looping the (already validated) step graph in onnxruntime.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trm_edge.bundle.contract import STEP_OUTPUTS, UNROLLED_OUTPUTS
from trm_edge.bundle.manifest import Manifest
from trm_edge.bundle.store import Bundle
from trm_edge.bundle.tolerances import SCALE_PREFIX, OutputCheck, error_ratio, raise_for_failures, tolerance_for
from trm_edge.config import TRMConfig
from trm_edge.runtimes.model_source import bundle_source
from trm_edge.runtimes.ort import OnnxRuntime
from trm_edge.runtimes.recursion import Recursion
from trm_edge.runtimes.torch_ref import TorchRuntime


def ort_session(path, *, threads: int | None = None):
    """A plain onnxruntime CPU session on a graph that is not a step graph (the unrolled graph), or for tests."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def graph_runtime(path: str | Path, config: TRMConfig, initial_state: tuple[np.ndarray, np.ndarray], *,
                  precision: str = "fp32") -> OnnxRuntime:
    """onnxruntime (CPU) on a step graph that is not in a bundle yet: an in-memory bundle around it."""
    path = Path(path)
    manifest = Manifest(task=None, model=config, target="cpu", precision=precision,
                        graphs={"step": {"file": path.name}},
                        initial_state={"z_H": np.asarray(initial_state[0], np.float32).tolist(),
                                       "z_L": np.asarray(initial_state[1], np.float32).tolist()})
    return OnnxRuntime(bundle_source(Bundle(path.parent, manifest)), device="cpu")


@dataclass
class ValidationReport:
    graph: str
    precision: str
    checks: list[OutputCheck]
    steps: int = 0
    puzzles: int = 0
    random_states: int = 0
    per_step_ratio: dict[str, list[float]] = field(default_factory=dict)  # err/tol per output and step
    golden: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def lines(self) -> list[str]:
        return [c.line() for c in self.checks]

    def raise_for_failures(self) -> None:
        raise_for_failures(self.checks, what=f"{self.graph} graph ({self.precision})")

    def to_dict(self) -> dict[str, Any]:
        return {"graph": self.graph, "precision": self.precision, "passed": self.passed, "steps": self.steps,
                "puzzles": self.puzzles, "random_states": self.random_states,
                "outputs": [c.to_dict() for c in self.checks], "per_step_ratio": self.per_step_ratio}


def validate_step_graph(
    model,
    onnx_path,
    *,
    tokens: np.ndarray,
    puzzle_ids: np.ndarray | None = None,
    steps: int | None = None,
    precision: str = "fp32",
    random_states: int = 2,
    seed: int = 0,
    golden_steps: Sequence[int] = (),
) -> ValidationReport:
    """Teacher-forced parity of a step graph with ``model`` on ``tokens`` ``[P, seq_len]`` for ``steps``
    supervision steps (default ``halt_max_steps``), plus one step from ``random_states`` random states.
    ``golden_steps`` (1-based) selects the steps whose feeds and reference outputs are returned in
    ``report.golden``. Never raises for a mismatch: call ``report.raise_for_failures()``."""
    cfg = model.config
    steps = steps or cfg.halt_max_steps
    tolerance = tolerance_for(precision)
    checks = {name: OutputCheck(name, tolerance) for name in STEP_OUTPUTS}
    per_step: dict[str, list[float]] = {name: [] for name in STEP_OUTPUTS}
    golden: dict[str, list[np.ndarray]] = {}
    tokens = np.asarray(tokens, dtype=np.int32)
    batch = len(tokens)
    reference = TorchRuntime.from_model(model)
    graph = graph_runtime(onnx_path, cfg, reference.initial_state(), precision=precision)
    recursion = Recursion(reference, batch_size=batch, max_steps=steps, halt=False, refill=False, followers=[graph])
    with reference, graph:
        for result in recursion.steps(tokens, puzzle_ids):
            step = int(result.steps[0])
            ref = [result.outputs[name] for name in STEP_OUTPUTS]
            got = [result.follower_outputs[0][name] for name in STEP_OUTPUTS]
            scales = feed_scales(model, torch.from_numpy(ref[0]), torch.from_numpy(ref[1]))
            for name, g, r in zip(STEP_OUTPUTS, got, ref, strict=True):
                checks[name].update(g, r, f"step {step}", scales[name])
                per_step[name].append(error_ratio(g, r, scales[name], checks[name].tolerance))
            if step in golden_steps:
                _record(golden, result.feeds, ref, scales, step)
            if step == 1 and random_states:
                first = dict(result.feeds)

        if random_states:
            generator = torch.Generator().manual_seed(seed)
            shape = (random_states, cfg.total_len, cfg.hidden_size)
            rows = np.arange(random_states) % batch
            feeds = {name: value[rows] for name, value in first.items()}
            feeds["z_H"] = torch.randn(shape, generator=generator).numpy()
            feeds["z_L"] = torch.randn(shape, generator=generator).numpy()
            ref_out, got_out = reference.step(feeds), graph.step(feeds)
            scales = feed_scales(model, torch.from_numpy(ref_out["z_H_next"]), torch.from_numpy(ref_out["z_L_next"]))
            for name in STEP_OUTPUTS:
                checks[name].update(got_out[name], ref_out[name], "random state", scales[name])
    return ValidationReport("step", precision, list(checks.values()), steps=steps, puzzles=batch,
                            random_states=random_states, per_step_ratio=per_step,
                            golden={k: np.concatenate(v) for k, v in golden.items()})


def feed_scales(model, z_H_next: torch.Tensor, z_L_next: torch.Tensor) -> dict[str, np.ndarray]:
    """Per case (batch row), the magnitude of what feeds each step output: the scale its float rounding
    is proportional to (docs/validation.md). States are weightless-RMSNorm outputs: the largest per-token
    RMS. The heads are dot products with ``z_H_next``: the largest ``|W| @ |z| + |b|``, the standard bound
    on a dot product's rounding, which stays large when the output itself cancels to near zero."""
    cfg = model.config

    def token_rms(z: torch.Tensor) -> torch.Tensor:
        return z.double().square().mean(-1).sqrt().amax(-1)

    z = z_H_next.double().abs()
    w_lm = model.lm_head.weight.detach().double().abs()
    w_q, b_q = model.q_head.weight.detach().double().abs()[0], model.q_head.bias.detach().double().abs()[0]
    scales = {
        "z_H_next": token_rms(z_H_next),
        "z_L_next": token_rms(z_L_next),
        "logits": (z[:, cfg.puzzle_positions:] @ w_lm.T).flatten(1).amax(-1),
        "q_halt_logits": z[:, 0] @ w_q + b_q,
    }
    return {name: value.numpy() for name, value in scales.items()}


def _record(golden: dict[str, list[np.ndarray]], feeds: dict[str, np.ndarray], ref: list[np.ndarray],
            scales: dict[str, np.ndarray], step: int) -> None:
    for name, value in feeds.items():
        golden.setdefault(name, []).append(value)
    for name, value in zip(STEP_OUTPUTS, ref, strict=True):
        golden.setdefault(name, []).append(value)
        golden.setdefault(f"{SCALE_PREFIX}{name}", []).append(scales[name].astype(np.float32))
    golden.setdefault("step", []).append(np.full(len(feeds["inputs"]), step, dtype=np.int32))
    golden.setdefault("puzzle", []).append(np.arange(len(feeds["inputs"]), dtype=np.int32))


def validate_unrolled_graph(
    unrolled_path,
    step_path,
    *,
    tokens: np.ndarray,
    initial_state: tuple[np.ndarray, np.ndarray],
    steps: int,
    puzzle_embedding: np.ndarray | None = None,
    precision: str = "fp32",
    config: TRMConfig,
) -> ValidationReport:
    """The unrolled graph must equal looping the (validated) step graph of the model of ``config`` from the
    initial state (the recursion core on onnxruntime, every step)."""
    tolerance = tolerance_for(precision)
    tokens = np.asarray(tokens, dtype=np.int32)
    step_runtime = graph_runtime(step_path, config, initial_state, precision=precision)
    q_steps = np.zeros((len(tokens), steps), np.float32)
    ref: dict[str, np.ndarray] = {}
    with step_runtime:
        recursion = Recursion(step_runtime, batch_size=len(tokens), max_steps=steps, halt=False, refill=False)
        for result in recursion.steps(tokens, puzzle_embeddings=puzzle_embedding):
            q_steps[result.puzzles, int(result.steps[0]) - 1] = result.q_halt_logits
            if result.done.all():
                ref = {"logits": result.logits(), "q_halt_logits": result.q_halt_logits.copy()}
    ref["q_halt_logits_per_step"] = q_steps
    feeds = {"inputs": tokens}
    if puzzle_embedding is not None:
        feeds["puzzle_embedding"] = puzzle_embedding
    got = ort_session(unrolled_path).run(list(UNROLLED_OUTPUTS), feeds)
    checks = []
    for name, value in zip(UNROLLED_OUTPUTS, got, strict=True):
        check = OutputCheck(name, tolerance)
        check.update(value, ref[name], f"{steps} steps")
        checks.append(check)
    report = ValidationReport("unrolled", precision, checks, steps=steps, puzzles=len(tokens))
    report.golden = {f"unrolled.{k}": v for k, v in ref.items()}
    return report


def check_lines(reports: Sequence[ValidationReport]) -> list[str]:
    return [f"{r.graph:>8}: {line}" for r in reports for line in r.lines()]


def raise_for_failures_all(reports: Sequence[ValidationReport]) -> None:
    checks = []
    for report in reports:
        for check in report.checks:
            renamed = OutputCheck(f"{report.graph}.{check.output}", check.tolerance, check.max_abs, check.ratio,
                                  check.argmax, check.cases, check.worst_case)
            checks.append(renamed)
    raise_for_failures(checks, what="export")
