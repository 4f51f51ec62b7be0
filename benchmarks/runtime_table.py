"""The README's runtime table: torch eager fp32 (checkpoint) vs onnxruntime fp32 (bundle), one
``trm-edge bench CKPT BUNDLE`` run (their runs interleaved, so load on a shared machine hits both alike).

    .venv/bin/trm-edge init --preset sudoku-extreme-mlp -o /tmp/bench/ckpt
    .venv/bin/trm-edge export /tmp/bench/ckpt --target x86-avx512 -o /tmp/bench/bundle
    .venv/bin/python benchmarks/runtime_table.py /tmp/bench/ckpt /tmp/bench/bundle --batch 1 16 --max-steps 2

More models (an INT8 bundle, say) may follow the bundle. Add ``--halt`` for early exit (meaningful on a
trained model). ``--from-json BENCH.json ...`` prints the table of saved ``trm-edge bench --json`` reports instead
(benchmarks/cpu_runtimes.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trm_edge.commands.bench import runtime_label
from trm_edge.machine import describe


def print_table(report: dict) -> None:
    if report.get("machine"):
        print(describe(report["machine"]) + "\n")
    print("| model | runtime | batch | steps | step p50 (ms) | puzzles/s | vs first | GFLOP/s | % limit (ms) | "
          "peak RSS (MB) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for entry in report["models"]:
        name = os.path.basename(entry["model"].rstrip("/"))
        for r in entry["results"]:
            print(f"| {name} | {runtime_label(entry['runtime'])} | {r['batch']} | {r['mean_steps']:.1f} | "
                  f"{r['step_ms_p50']:.1f} | {r['puzzles_per_s']:.3f} | {r['speedup']:.2f}x | {r['gflops']:.0f} | "
                  f"{_percent_of_limit(r)} | {r['peak_rss_mb']:.0f} |")


def _percent_of_limit(result: dict) -> str:
    """``61% (22.2)``: bench's percentage of this machine's limit, with the limit's ms per step."""
    if not result.get("percent_of_limit") or not result.get("limit"):
        return "-"
    return f"{result['percent_of_limit']:.0f}% ({result['limit']['ms']:.1f})"


def main() -> None:
    if sys.argv[1:2] == ["--from-json"]:
        for path in sys.argv[2:]:
            with open(path) as f:
                print_table(json.load(f))
            print()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("bundles", nargs="+")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--halt", action="store_true")
    parser.add_argument("--data", default=None)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for every runtime")
    args = parser.parse_args()
    command = [sys.executable, "-m", "trm_edge", "bench", args.checkpoint, *args.bundles, "--repeats",
               str(args.repeats), "--json", *[flag for b in args.batch for flag in ("--batch", str(b))]]
    for flag, value in (("--max-steps", args.max_steps), ("--data", args.data), ("--threads", args.threads)):
        if value:
            command += [flag, str(value)]
    command.append("--halt" if args.halt else "--no-halt")
    print("$ trm-edge " + " ".join(command[3:]), file=sys.stderr, flush=True)
    report = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    print(f"\n(load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)\n")
    print_table(report)


if __name__ == "__main__":
    main()
