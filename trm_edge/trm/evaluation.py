"""The trainer's evaluation: exact and cell accuracy after every supervision step and with halting, on a test
split shared among the ranks (summed by one all-reduce)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from trm_edge.bundle.contract import halts
from trm_edge.trm.data import meta, training_labels
from trm_edge.trm.distributed import Dist
from trm_edge.trm.losses import IGNORE_LABEL_ID, TRAIN_HALT_THRESHOLD
from trm_edge.trm.model import TRM


@torch.no_grad()
def evaluate_by_step(model: TRM, split: Any, *, d: Dist, batch: int, max_examples: int, device: torch.device,
                     autocast: Callable[[], AbstractContextManager]) -> dict[str, Any]:
    """Accuracy after every supervision step (all halt_max_steps run, the official evaluation) and with halting
    (each sample stops at the first step that halts at ``TRAIN_HALT_THRESHOLD``). The q_halt accuracy counts the
    steps where that same halting decision agrees with the answer being exact. ``max_examples`` <= 0: all."""
    n = len(split.inputs) if max_examples <= 0 else min(max_examples, len(split.inputs))
    index = np.arange(n)[d.rank::d.world_size]
    owners = np.searchsorted(np.asarray(split.puzzle_indices), index, side="right") - 1
    ids_all = np.asarray(split.puzzle_identifiers, dtype=np.int64)[owners]
    steps = model.config.halt_max_steps
    # sums: count, per-step exact[steps], per-step cell[steps], per-step q_halt right[steps],
    #       halting exact, halting cell, halting steps
    sums = torch.zeros(1 + 3 * steps + 3, dtype=torch.float64, device=device)
    ignore = meta(split, "ignore_label_id")
    for start in range(0, len(index), batch):
        chunk = index[start:start + batch]
        inputs = torch.from_numpy(np.asarray(split.inputs[chunk], dtype=np.int64)).to(device)
        labels = torch.from_numpy(training_labels(np.asarray(split.labels[chunk]), ignore)).to(device)
        ids = torch.from_numpy(ids_all[start:start + batch]).to(device)
        b = len(chunk)
        mask = labels != IGNORE_LABEL_ID
        counts = mask.sum(-1)
        valid = counts > 0
        z_H, z_L = model.initial_state(b)
        z_H, z_L = z_H.to(device), z_L.to(device)
        puzzle = model.puzzle_embedding(ids, b)
        done = torch.zeros(b, dtype=torch.bool, device=device)
        for s in range(steps):
            with autocast():
                z_H, z_L, logits, q = model.step_embedded(inputs, z_H, z_L, puzzle)
            z_H, z_L = z_H.float(), z_L.float()
            right = mask & (logits.argmax(-1) == labels)
            exact = valid & (right.sum(-1) == counts)
            cell = right.sum(-1) / counts.clamp_min(1)
            sums[1 + s] += exact.sum()
            sums[1 + steps + s] += cell[valid].sum()
            halted = halts(q, TRAIN_HALT_THRESHOLD)
            sums[1 + 2 * steps + s] += (valid & (halted == exact)).sum()
            stop = ~done & (halted | (s == steps - 1)) & valid
            sums[-3] += (stop & exact).sum()
            sums[-2] += cell[stop].sum()
            sums[-1] += stop.sum() * (s + 1)
            done |= stop
        sums[0] += valid.sum()
    if d.joined:
        dist.all_reduce(sums)
    v = sums.tolist()
    count = max(v[0], 1.0)
    by_step = [x / count for x in v[1:1 + steps]]
    cell_by_step = [x / count for x in v[1 + steps:1 + 2 * steps]]
    return {
        "count": int(v[0]),
        "exact_accuracy": by_step[-1],
        "cell_accuracy": cell_by_step[-1],
        "exact_accuracy_by_step": by_step,
        "cell_accuracy_by_step": cell_by_step,
        "q_halt_accuracy": v[3 * steps] / count,
        "q_halt_accuracy_by_step": [x / count for x in v[1 + 2 * steps:1 + 3 * steps]],
        "halt_exact_accuracy": v[-3] / count,
        "halt_cell_accuracy": v[-2] / count,
        "halt_mean_steps": v[-1] / count,
    }
