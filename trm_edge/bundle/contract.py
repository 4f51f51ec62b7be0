"""The step graph's contract (docs/design.md, "Contracts"): its input and output names, the feed checks, and the
halting rule. Export builds graphs to it, runtimes run them by it, and the recursion core halts by it.

numpy only: the device side imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from trm_edge.config import TRMConfig
from trm_edge.errors import TrmEdgeError, choices

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
    shapes = {"inputs": (batch, config.seq_len), "z_H": (batch, config.total_len, config.hidden_size),
              "z_L": (batch, config.total_len, config.hidden_size),
              "puzzle_embedding": (batch, config.puzzle_emb_ndim)}
    for name in expected:
        if out[name].shape != shapes[name]:
            raise TrmEdgeError(f"step feed {name!r} has shape {out[name].shape}, expected {shapes[name]}")
    if batch == 0:
        raise TrmEdgeError("step feeds hold no rows")
    return out
