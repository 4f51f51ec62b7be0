"""How much of the bare step time the solver's loop loses around it (issue 13), side by side in one process.

    python benchmarks/host_loop.py BUNDLE [BUNDLE...] --data DATASET [--batch 1 --batch 16] [--runtime openvino]

For each bundle and batch, after a warm-up run: the bare step (one ``session.run`` on fixed feeds, median of 20,
timed between the loops' runs so that it meets the same machine), then whole
puzzles at 16 supervision steps without halting through the in-place loop (``BoundRecurrence``) and the host
loop (``HostRecurrence``); efficiency = (steps x bare step time) / wall time (1.0: the loop costs nothing).
Runs alternate between loops so that load on a shared machine hits both alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trm_edge.puzzles.examples import read_examples
from trm_edge.runtimes import Solver, open_runtime
from trm_edge.runtimes.interface import HostRecurrence


def bare_step(runtime, batch: int, repeats: int) -> float:
    cfg = runtime.config
    h, l_ = runtime.initial_state()
    feeds = {"inputs": np.ones((batch, cfg.seq_len), np.int32),
             "z_H": np.broadcast_to(h, (batch, cfg.total_len, cfg.hidden_size)).copy(),
             "z_L": np.broadcast_to(l_, (batch, cfg.total_len, cfg.hidden_size)).copy()}
    if "puzzle_embedding" in runtime.input_names:
        feeds["puzzle_embedding"] = runtime.puzzle_embedding(np.zeros(batch, np.int64))
    names = ["z_H_next", "z_L_next", "logits", "q_halt_logits"]
    if runtime.name == "onnxruntime":
        def run() -> None:
            runtime.session.run(names, feeds)
    else:  # openvino: the compiled model's own call, outputs left where it wrote them
        def run() -> None:
            runtime.request.infer(feeds)
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundles", nargs="+")
    parser.add_argument("--data", required=True)
    parser.add_argument("--batch", type=int, action="append")
    parser.add_argument("--puzzles", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "openvino"],
                        help="openvino has the host loop only")
    args = parser.parse_args()
    rows = []
    for bundle in args.bundles:
        with open_runtime(bundle, args.runtime) as runtime:
            examples = read_examples(args.data, "test", config=runtime.config)
            tokens = examples.inputs[: args.puzzles]
            steps = runtime.config.halt_max_steps
            bound_start = runtime.start
            host = {"host": lambda *, capacity, rt=runtime: HostRecurrence(rt, capacity=capacity)}
            loops = {"in place": bound_start, **host} if args.runtime == "onnxruntime" else host
            for batch in args.batch or [1, 16]:
                Solver(runtime, batch_size=batch, halt=False).run(tokens[:batch])  # warm: threads, arena, shapes
                bares: list[float] = []
                walls: dict[str, list[float]] = {name: [] for name in loops}
                for _ in range(args.repeats):  # the bare step is timed between the loops' runs, under their load
                    bares.append(bare_step(runtime, batch, repeats=20))
                    for name, start in loops.items():
                        runtime.start = start
                        started = time.perf_counter()
                        Solver(runtime, batch_size=batch, halt=False).run(tokens)
                        walls[name].append(time.perf_counter() - started)
                runtime.start = bound_start
                bare = statistics.median(bares)
                ideal = bare * steps * int(np.ceil(len(tokens) / batch))
                for name, times in walls.items():
                    wall = statistics.median(times)
                    rows.append({"bundle": bundle, "runtime": args.runtime, "batch": batch, "loop": name,
                                 "bare_step_ms": 1000 * bare, "puzzles_per_s": len(tokens) / wall,
                                 "efficiency": ideal / wall})
    print("| bundle | runtime | batch | loop | bare step ms | puzzles/s | efficiency |")
    print("|---|---|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['bundle']} | {r['runtime']} | {r['batch']} | {r['loop']} | {r['bare_step_ms']:.1f} | "
              f"{r['puzzles_per_s']:.1f} | {r['efficiency']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
