"""Measure onnxruntime session options on a bundle's step graph: the numbers behind OrtOptions' defaults.

    .venv/bin/python benchmarks/ort_session_options.py BUNDLE [--batch 16] [--rounds 3]

For each variant: session creation time, and the latency of one supervision step at ``--batch``
(median over rounds; variants are run round-robin so that load on a shared machine spreads evenly).
Variants differ from the default in one option each. A "shrinking" column runs batches B, B-1, ..., 1
in turn (the solver's pattern when puzzles halt), where the memory-pattern planner and arena matter.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import numpy as np

from trm_edge.runtimes import open_source
from trm_edge.runtimes.ort import OnnxRuntime, OrtOptions

VARIANTS = {
    "default": OrtOptions(),
    "threads=1": OrtOptions(intra_op_threads=1),
    "opt=disable": OrtOptions(graph_optimization="disable"),
    "opt=basic": OrtOptions(graph_optimization="basic"),
    "opt=extended": OrtOptions(graph_optimization="extended"),
    "arena=off": OrtOptions(memory_arena=False),
    "mem_pattern=on": OrtOptions(memory_pattern=True),
    "spinning=off": OrtOptions(spinning=False),
    "parallel": OrtOptions(sequential=False),
    "spinning=off+threads=1": OrtOptions(spinning=False, intra_op_threads=1),
    "spinning=on": OrtOptions(spinning=True),
}


def feeds(runtime: OnnxRuntime, batch: int) -> dict[str, np.ndarray]:
    cfg = runtime.config
    h, l_ = runtime.initial_state()
    shape = (batch, cfg.total_len, cfg.hidden_size)
    out = {"inputs": np.random.default_rng(0).integers(1, cfg.vocab_size, (batch, cfg.seq_len)).astype(np.int32),
           "z_H": np.broadcast_to(h, shape).copy(), "z_L": np.broadcast_to(l_, shape).copy()}
    if cfg.has_puzzle_table:
        out["puzzle_embedding"] = runtime.puzzle_embedding(np.zeros(batch, np.int64))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundle")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=None, help="comma-separated variant names")
    parser.add_argument("--shrinking", action="store_true", help="also time a shrinking-batch sequence")
    args = parser.parse_args()
    source = open_source(args.bundle)
    names = args.only.split(",") if args.only else list(VARIANTS)
    runtimes, load = {}, {}
    for name in names:
        start = time.perf_counter()
        runtimes[name] = OnnxRuntime(source, options=VARIANTS[name]).load()
        load[name] = time.perf_counter() - start
    batch_feeds = feeds(runtimes[names[0]], args.batch)
    for rt in runtimes.values():  # warm-up (first run allocates)
        rt.step(batch_feeds)
    step: dict[str, list[float]] = {n: [] for n in names}
    shrink: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.rounds):
        for name, rt in runtimes.items():
            start = time.perf_counter()
            rt.step(batch_feeds)
            step[name].append(time.perf_counter() - start)
            if args.shrinking:
                start = time.perf_counter()
                for b in range(args.batch, 0, -max(1, args.batch // 4)):
                    rt.step({k: v[:b] for k, v in batch_feeds.items()})
                shrink[name].append(time.perf_counter() - start)
    rows = []
    for name in names:
        row = {"variant": name, "load_s": round(load[name], 3),
               "step_s_median": round(statistics.median(step[name]), 4),
               "step_s_min": round(min(step[name]), 4), "options": dataclasses.asdict(VARIANTS[name])}
        if args.shrinking:
            row["shrinking_s_median"] = round(statistics.median(shrink[name]), 4)
        rows.append(row)
        print(f"{name:<16} load {row['load_s']:7.3f} s   step@{args.batch} median {row['step_s_median']:.4f} s  "
              f"min {row['step_s_min']:.4f} s" + (f"   shrinking {row['shrinking_s_median']:.4f} s"
                                                  if args.shrinking else ""), flush=True)
    print(json.dumps({"bundle": args.bundle, "batch": args.batch, "rounds": args.rounds, "results": rows}))


if __name__ == "__main__":
    main()
