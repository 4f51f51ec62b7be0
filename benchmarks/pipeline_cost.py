"""Wall time and peak memory of the pipeline on the full-size 900-token presets (maze-hard, arc-agi-1).

Runs, as a user would, each command in its own process: a random checkpoint of the preset, ``export`` for
x86-avx512, ``quantize --int8`` with 16 calibration and 16 held-out puzzles, and ``eval`` of 16 puzzles on
the float and the INT8 bundle. For each command: wall seconds, CPU seconds (user + system: what the work
costs whatever else shares the machine) and peak RSS (the kernel's high-water mark of that process, from
``wait4``), and for the long ones the peak RSS between consecutive progress lines (what
each phase costs; RSS sampled every 0.2 s).

ARC needs task files and none ship with trm-edge: the dataset is drawn from synthetic tasks (a random
colour grid of random size up to 30x30 and its mirror image), which is what the measurement needs (900
tokens, a puzzle-embedding table), not what a model could learn.

    .venv/bin/python benchmarks/pipeline_cost.py --preset maze-hard --work /tmp/cost-maze
    .venv/bin/python benchmarks/pipeline_cost.py --preset arc-agi-1 --work /tmp/cost-arc --json arc.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLI = [sys.executable, "-m", "trm_edge"]


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(name: str, args: list[str], log) -> dict:
    """One command in its own process: wall time, peak RSS, and the peak RSS of each phase between the
    progress lines it prints on stderr."""
    start = time.perf_counter()
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    phases: list[dict] = [{"phase": "start", "t": 0.0, "peak_mb": 0.0}]
    stdout: list[str] = []

    def read_stderr() -> None:
        for line in proc.stderr:
            text = " ".join(line.split())
            if text:
                phases.append({"phase": text[:110], "t": round(time.perf_counter() - start, 1), "peak_mb": 0.0})

    readers = [threading.Thread(target=read_stderr, daemon=True),
               threading.Thread(target=lambda: stdout.extend(proc.stdout), daemon=True)]
    for reader in readers:
        reader.start()
    while True:
        done, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if done:
            break
        phases[-1]["peak_mb"] = max(phases[-1]["peak_mb"], _rss_kb(proc.pid) / 1024)
        time.sleep(0.2)
    wall = time.perf_counter() - start
    proc.returncode = status = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    peak = usage.ru_maxrss / 1024  # the kernel's high-water mark: no spike between samples is missed
    if status != 0:
        tail = "\n".join(p["phase"] for p in phases[-5:])
        raise SystemExit(f"{name} failed (exit {status}):\n{tail}")
    cpu = usage.ru_utime + usage.ru_stime
    log(f"{name}: {wall:.1f} s, {cpu:.1f} CPU s, peak RSS {peak:.0f} MB")
    return {"step": name, "command": "trm-edge " + " ".join(args), "seconds": round(wall, 1),
            "cpu_seconds": round(cpu, 1), "peak_rss_mb": round(peak),
            "phases": [{**p, "peak_mb": round(p["peak_mb"])} for p in phases], "stdout": "".join(stdout)}


def synthetic_arc_tasks(directory: Path, count: int, seed: int) -> None:
    """``count`` training tasks and ``count // 2`` evaluation tasks (challenges + solutions): mirror a grid."""
    rng = random.Random(seed)

    def grid() -> list[list[int]]:
        rows, cols = rng.randint(3, 30), rng.randint(3, 30)
        return [[rng.randrange(10) for _ in range(cols)] for _ in range(rows)]

    def task() -> dict:
        pairs = [grid() for _ in range(3)]
        return {"train": [{"input": g, "output": [row[::-1] for row in g]} for g in pairs[:2]],
                "test": [{"input": pairs[2], "output": [row[::-1] for row in pairs[2]]}]}

    training = directory / "training"
    training.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (training / f"t{i:03d}.json").write_text(json.dumps(task()))
    challenges, solutions = {}, {}
    for i in range(max(1, count // 2)):
        value = task()
        solutions[f"e{i:03d}"] = [pair.pop("output") for pair in value["test"]]
        challenges[f"e{i:03d}"] = value
    (directory / "arc-agi_evaluation_challenges.json").write_text(json.dumps(challenges))
    (directory / "arc-agi_evaluation_solutions.json").write_text(json.dumps(solutions))


def random_checkpoint(preset: str, data: Path | None, out: Path) -> None:
    """A random checkpoint of ``preset`` whose puzzle table matches ``data``'s identifiers (ARC)."""
    from tests.conftest import random_trm
    from trm_edge.config import get_preset
    from trm_edge.puzzles.dataset import read_identifiers
    from trm_edge.trm.checkpoint import save_checkpoint

    spec = get_preset(preset)
    names = read_identifiers(data) if data is not None and spec.task == "arc" else None
    config = spec.model.replace(num_puzzle_identifiers=len(names)) if names else spec.model
    save_checkpoint(random_trm(config), out, task=spec.task, identifiers=names, force=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="maze-hard", choices=["maze-hard", "arc-agi-1", "arc-agi-2"])
    parser.add_argument("--work", type=Path, required=True, help="Scratch directory (replaced).")
    parser.add_argument("--target", default="x86-avx512")
    parser.add_argument("--n", type=int, default=16, help="Calibration, held-out and evaluated puzzles.")
    parser.add_argument("--json", type=Path, help="Write the measurements here.")
    args = parser.parse_args()

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    import shutil

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    data = args.work / "data"
    steps = []
    if args.preset == "maze-hard":
        steps.append(run("data", ["data", "build", "maze", "-o", str(data), "--train", str(2 * args.n), "--test",
                                  str(args.n), "--seed", "1"], log))
        calibration = ["--calib-task", "maze"]
    else:
        synthetic_arc_tasks(args.work / "tasks", count=2 * args.n, seed=1)
        tasks = args.work / "tasks"
        steps.append(run("data", ["data", "build", "arc", "-o", str(data), "--source", str(tasks / "training"),
                                  "--source", str(tasks / "arc-agi_evaluation_challenges.json"), "--aug", "3",
                                  "--seed", "1"], log))
        calibration = ["--calib", str(data)]
    start = time.perf_counter()
    random_checkpoint(args.preset, data, args.work / "model")
    log(f"checkpoint: {time.perf_counter() - start:.1f} s")
    float_bundle, int8_bundle = args.work / "fp32", args.work / "int8"
    steps.append(run("export", ["export", str(args.work / "model"), "--target", args.target, "-o",
                                str(float_bundle)], log))
    steps.append(run("quantize", ["quantize", str(float_bundle), "--int8", *calibration, "--calib-n", str(args.n),
                                  "--eval-n", str(args.n), "-o", str(int8_bundle), "--json"], log))
    for name, bundle in (("eval fp32", float_bundle), ("eval int8", int8_bundle)):
        steps.append(run(name, ["eval", str(bundle), "--data", str(data), "--limit", str(args.n), "--batch",
                                str(args.n), "--no-halt", "--json"], log))
    result = {"preset": args.preset, "target": args.target, "n": args.n, "cpus": os.cpu_count(), "steps": steps}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"| {args.preset} | wall s | CPU s | peak RSS (MB) |\n|---|---:|---:|---:|")
    for step in steps:
        print(f"| {step['step']} | {step['seconds']} | {step['cpu_seconds']} | {step['peak_rss_mb']} |")
    quantize = next(s for s in steps if s["step"] == "quantize")
    print("\nquantize phases (peak RSS between progress lines):")
    for phase in quantize["phases"]:
        print(f"  {phase['t']:>7.1f} s  {phase['peak_mb']:>6} MB  {phase['phase']}")


if __name__ == "__main__":
    main()
