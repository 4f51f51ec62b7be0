"""The README's runtime table: ``trm-edge bench`` for torch eager fp32 (checkpoint) vs onnxruntime fp32
(bundle), alternating runtimes per batch size so that load on a shared machine hits both alike.

    .venv/bin/trm-edge init --preset sudoku-extreme-mlp -o /tmp/bench/ckpt
    .venv/bin/trm-edge export /tmp/bench/ckpt --target x86-avx512 -o /tmp/bench/bundle
    .venv/bin/python benchmarks/runtime_table.py /tmp/bench/ckpt /tmp/bench/bundle --batch 1 16 --max-steps 2

Each row is one ``trm-edge bench MODEL --runtime R --batch B --max-steps N --repeats K --warmup 1 --json``
process (printed above the table). Add ``--halt`` for early exit (meaningful on a trained model).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def bench(model: str, runtime: str, batch: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, "-m", "trm_edge", "bench", model, "--runtime", runtime, "--batch", str(batch),
               "--repeats", str(args.repeats), "--warmup", "1", "--json"]
    if args.max_steps:
        command += ["--max-steps", str(args.max_steps)]
    if args.halt:
        command.append("--halt")
    if args.data:
        command += ["--data", args.data]
    if args.threads:
        command += ["--threads", str(args.threads)]
    print("$ trm-edge " + " ".join(command[3:]), file=sys.stderr, flush=True)
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["results"][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("bundle")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--halt", action="store_true")
    parser.add_argument("--data", default=None)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for both runtimes")
    args = parser.parse_args()
    rows = []
    for batch in args.batch:
        for label, model, runtime in (("torch eager fp32", args.checkpoint, "torch"),
                                      ("onnxruntime fp32", args.bundle, "onnxruntime")):
            result = bench(model, runtime, batch, args)
            rows.append((label, result))
            print(json.dumps({"runtime": label, **result}), file=sys.stderr, flush=True)
    load = os.getloadavg()[0]
    print(f"\n(load average at the end: {load:.1f} on {os.cpu_count()} cores)\n")
    print("| runtime | batch | steps | step p50 (ms) | puzzle p50 (s) | puzzles/s | GFLOP/s | peak RSS (MB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, r in rows:
        print(f"| {label} | {r['batch']} | {r['mean_steps']:.1f} | {r['step_ms_p50']:.0f} | {r['puzzle_s_p50']:.2f} | "
              f"{r['puzzles_per_s']:.3f} | {r['gflops']:.0f} | {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
