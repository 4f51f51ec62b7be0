"""Validation of exported graphs against the torch reference, in onnxruntime.

Step graph: teacher-forced. From the initial state, torch runs the trajectory of the validation
puzzles step by step; at every step onnxruntime is fed torch's state and its four outputs are
compared. Then one step from random states (states the trajectory may not visit). Whole random
trajectories are chaotic (DESIGN.md), so they are never compared directly.

Unrolled graph: compared with looping the (already validated) step graph in onnxruntime.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from trm_edge.export.bundle import STEP_OUTPUTS, UNROLLED_OUTPUTS
from trm_edge.export.tolerances import SCALE_PREFIX, OutputCheck, error_ratio, raise_for_failures, tolerance_for


def ort_session(path, *, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


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


def _feeds(inputs, z_H, z_L, puzzle, *, with_puzzle: bool) -> dict[str, np.ndarray]:
    feeds = {"inputs": np.asarray(inputs, dtype=np.int32), "z_H": z_H.numpy(), "z_L": z_L.numpy()}
    if with_puzzle:
        feeds["puzzle_embedding"] = puzzle.numpy()
    return feeds


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
    session=None,
) -> ValidationReport:
    """Teacher-forced parity of a step graph with ``model`` on ``tokens`` ``[P, seq_len]`` for ``steps``
    supervision steps (default ``halt_max_steps``), plus one step from ``random_states`` random states.
    ``golden_steps`` (1-based) selects the steps whose feeds and reference outputs are returned in
    ``report.golden``. Never raises for a mismatch: call ``report.raise_for_failures()``."""
    cfg = model.config
    steps = steps or cfg.halt_max_steps
    tolerance = tolerance_for(precision)
    session = session or ort_session(onnx_path)
    with_puzzle = cfg.has_puzzle_table
    checks = {name: OutputCheck(name, tolerance) for name in STEP_OUTPUTS}
    per_step: dict[str, list[float]] = {name: [] for name in STEP_OUTPUTS}
    golden: dict[str, list[np.ndarray]] = {}

    inputs = torch.as_tensor(np.asarray(tokens), dtype=torch.int32)
    batch = inputs.shape[0]
    ids = None if puzzle_ids is None else torch.as_tensor(np.asarray(puzzle_ids), dtype=torch.long)
    with torch.no_grad():
        puzzle = model.puzzle_embedding(ids, batch)
        z_H, z_L = model.initial_state(batch)
        for step in range(1, steps + 1):
            feeds = _feeds(inputs, z_H, z_L, puzzle, with_puzzle=with_puzzle)
            ref_t = model.step_embedded(inputs, z_H, z_L, puzzle)
            ref, scales = [t.numpy() for t in ref_t], feed_scales(model, ref_t[0], ref_t[1])
            got = session.run(list(STEP_OUTPUTS), feeds)
            for name, g, r in zip(STEP_OUTPUTS, got, ref, strict=True):
                checks[name].update(g, r, f"step {step}", scales[name])
                per_step[name].append(error_ratio(g, r, scales[name], checks[name].tolerance))
            if step in golden_steps:
                _record(golden, feeds, ref, scales, step)
            z_H, z_L = ref_t[0], ref_t[1]  # teacher forcing

        if random_states:
            generator = torch.Generator().manual_seed(seed)
            shape = (random_states, cfg.total_len, cfg.hidden_size)
            z_H, z_L = torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
            rows = torch.arange(random_states) % batch
            r_inputs = inputs[rows]
            r_puzzle = None if puzzle is None else puzzle[rows]
            feeds = _feeds(r_inputs, z_H, z_L, r_puzzle, with_puzzle=with_puzzle)
            ref_t = model.step_embedded(r_inputs, z_H, z_L, r_puzzle)
            ref, scales = [t.numpy() for t in ref_t], feed_scales(model, ref_t[0], ref_t[1])
            got = session.run(list(STEP_OUTPUTS), feeds)
            for name, g, r in zip(STEP_OUTPUTS, got, ref, strict=True):
                checks[name].update(g, r, "random state", scales[name])
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


def run_step_loop(session, inputs: np.ndarray, z_H: np.ndarray, z_L: np.ndarray, steps: int,
                  puzzle: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Drive a step graph for ``steps`` steps in onnxruntime: final logits/q and per-step q."""
    q_steps = []
    logits = q_halt = None
    for _ in range(steps):
        feeds = {"inputs": inputs, "z_H": z_H, "z_L": z_L}
        if puzzle is not None:
            feeds["puzzle_embedding"] = puzzle
        z_H, z_L, logits, q_halt = session.run(list(STEP_OUTPUTS), feeds)
        q_steps.append(q_halt)
    return {"logits": logits, "q_halt_logits": q_halt, "q_halt_logits_per_step": np.stack(q_steps, axis=1)}


def validate_unrolled_graph(
    unrolled_path,
    step_path,
    *,
    tokens: np.ndarray,
    initial_state: tuple[np.ndarray, np.ndarray],
    steps: int,
    puzzle_embedding: np.ndarray | None = None,
    precision: str = "fp32",
) -> ValidationReport:
    """The unrolled graph must equal looping the (validated) step graph from the initial state."""
    tolerance = tolerance_for(precision)
    tokens = np.asarray(tokens, dtype=np.int32)
    step_session = ort_session(step_path)
    shape = tuple(d if isinstance(d, int) else len(tokens) for d in step_session.get_inputs()[1].shape)
    z_H = np.ascontiguousarray(np.broadcast_to(initial_state[0], shape), dtype=np.float32)
    z_L = np.ascontiguousarray(np.broadcast_to(initial_state[1], shape), dtype=np.float32)
    ref = run_step_loop(step_session, tokens, z_H, z_L, steps, puzzle_embedding)
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
