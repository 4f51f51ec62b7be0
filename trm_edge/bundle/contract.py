"""The step graph's contract (docs/design.md, "Contracts"): its input and output names, the feed checks, and the
halting rule. Export builds graphs to it, runtimes run them by it, and the recursion core halts by it.

numpy only: the device side imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trm_edge.config import TRMConfig
from trm_edge.errors import BundleError, TrmEdgeError, choices

# Step graph: one supervision step. ``puzzle_embedding`` only when the model has a puzzle table (several identifiers;
# a single embedding is folded into the graph).
STEP_INPUTS = ("inputs", "z_H", "z_L", "puzzle_embedding")
STEP_OUTPUTS = ("z_H_next", "z_L_next", "logits", "q_halt_logits")
# Unrolled graph: every supervision step from the initial state in one graph (no halting).
UNROLLED_INPUTS = ("inputs", "puzzle_embedding")
UNROLLED_OUTPUTS = ("logits", "q_halt_logits", "q_halt_logits_per_step")
# Which state output feeds which state input at the next step.
NEXT_STATE = {"z_H": "z_H_next", "z_L": "z_L_next"}


def input_names(config: TRMConfig) -> tuple[str, ...]:
    """The step graph's inputs for this config (``puzzle_embedding`` only with a puzzle table)."""
    return STEP_INPUTS if config.has_puzzle_table else STEP_INPUTS[:3]


def halts(q_halt_logits: Any, threshold: float) -> Any:
    """The halting rule, the same for every runtime, the trainer's evaluation and ``TRM.predict``: a puzzle stops
    after the first supervision step whose ``q_halt_logits`` exceed the model's calibrated ``threshold`` (a logit;
    0 is sigmoid 0.5). Works on numpy arrays and torch tensors alike."""
    return q_halt_logits > threshold


def step_shapes(config: TRMConfig) -> dict[str, tuple[int, ...]]:
    """The shape after the batch axis of each step input and output, for this config."""
    state = (config.total_len, config.hidden_size)
    return {"inputs": (config.seq_len,), "z_H": state, "z_L": state, "puzzle_embedding": (config.puzzle_emb_ndim,),
            "z_H_next": state, "z_L_next": state, "logits": (config.seq_len, config.vocab_size), "q_halt_logits": ()}


def check_graph(config: TRMConfig, inputs: Mapping[str, Sequence[Any]], outputs: Mapping[str, Sequence[Any]], *,
                where: str) -> None:
    """A step graph's declared inputs and outputs (name -> dims; a dim that is not an int is dynamic) against the
    manifest's model config: the contract's input names exactly and every static dim after the batch axis equal.
    A manifest that does not describe its graph is one BundleError before any step, not a backend's error at one."""
    expected_inputs = input_names(config)
    problems = []
    if set(inputs) != set(expected_inputs):
        problems.append(f"inputs {choices(sorted(inputs))}, the config's {choices(expected_inputs)}")
    missing = [n for n in STEP_OUTPUTS if n not in outputs]
    if missing:
        problems.append(f"no output(s) {choices(missing)}")
    for name, wanted in step_shapes(config).items():
        dims = inputs.get(name, outputs.get(name))
        if dims is None:
            continue
        got = tuple(dims)[1:]
        if len(got) != len(wanted) or any(isinstance(g, int) and g > 0 and g != w for g, w in zip(got, wanted)):
            problems.append(f"{name!r} is [batch, {', '.join(map(str, got))}] where the config gives "
                            f"[batch, {', '.join(map(str, wanted))}]")
    if problems:
        raise BundleError(f"{where}: the step graph does not match the manifest's model config: "
                          + "; ".join(problems[:4]))


def check_feeds(config: TRMConfig, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Names, dtypes and shapes of step feeds; returns contiguous arrays of the contract's dtypes."""
    expected = input_names(config)
    if set(feeds) != set(expected):
        raise TrmEdgeError(f"step feeds {choices(sorted(feeds))} do not match the step graph's inputs "
                           f"{choices(expected)}")
    out = {"inputs": np.ascontiguousarray(feeds["inputs"], dtype=np.int32)}
    for name in expected[1:]:
        out[name] = np.ascontiguousarray(feeds[name], dtype=np.float32)
    batch = out["inputs"].shape[0]
    shapes = step_shapes(config)
    for name in expected:
        if out[name].shape != (batch, *shapes[name]):
            raise TrmEdgeError(f"step feed {name!r} has shape {out[name].shape}, expected {(batch, *shapes[name])}")
    if batch == 0:
        raise TrmEdgeError("step feeds hold no rows")
    return out
