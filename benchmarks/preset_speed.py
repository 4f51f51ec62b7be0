"""How long each training preset takes on this machine: seconds per optimiser step at a small batch, measured
with the real trainer on random puzzles of the preset's shape, scaled to the preset's global batch and step count
(CPU step time grows about linearly with the batch). The figures the preset descriptions and the Makefile state.

    .venv/bin/python benchmarks/preset_speed.py [--batch 8] [--steps 3] [--preset NAME ...] [--json out.json]

Name the CPU beside the figures: they differ between machines several-fold.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time

import numpy as np
import torch

from trm_edge.config import PRESETS
from trm_edge.puzzles.dataset import Split
from trm_edge.trm.distributed import Dist
from trm_edge.trm.train import Trainer

TASK_SHAPE = {"sudoku": (81, 11), "maze": (900, 6), "arc": (900, 12)}
MINI_SHAPE = {"maze-mini": (81, 6)}  # the shipped maze model's 9x9 mazes


def measure(name: str, batch: int, steps: int) -> dict:
    preset = PRESETS[name]
    seq_len, vocab = MINI_SHAPE.get(name, TASK_SHAPE[preset.task])
    rng = np.random.default_rng(0)
    labels = rng.integers(2, vocab, size=(4 * batch, seq_len))
    inputs = np.where(rng.random(labels.shape) < 0.5, labels, 1)
    split = Split.single_examples(inputs, labels, group_size=1, vocab_size=vocab)
    model = dataclasses.replace(preset.model, seq_len=seq_len, vocab_size=vocab, num_puzzle_identifiers=1)
    train = dataclasses.replace(preset.train, global_batch_size=batch, augment=False)
    trainer = Trainer(model, train, split, None, task=preset.task, d=Dist(), device=torch.device("cpu"))
    trainer.train_step()  # warm-up
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - started)
    per_step = float(np.median(times))
    full = per_step * preset.train.global_batch_size / batch
    return {"preset": name, "batch": batch, "s_per_step": round(per_step, 3),
            "global_batch_size": preset.train.global_batch_size, "train_steps": preset.train.train_steps,
            "s_per_step_at_global_batch": round(full, 2),
            "hours_for_train_steps": round(full * preset.train.train_steps / 3600, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--preset", action="append", choices=sorted(PRESETS))
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads")
    for name in args.preset or sorted(PRESETS):
        rows.append(measure(name, args.batch, args.steps))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
