"""Every preset family at full size through the user's path, command by command (issue 11's "by hand"):
an official checkpoint (bf16 state dict + all_config.yaml, random weights) -> ``import`` -> ``export`` for
x86-avx512 and jetson-orin-nano -> ``quantize --int8`` in each target's format and ``--fp16`` for the Jetson ->
``verify`` of every quantized bundle (the x86 INT8 one also through OpenVINO, against float32). Each command
runs in its own process: wall seconds, CPU seconds and peak RSS (benchmarks/pipeline_cost.run).

    .venv/bin/python benchmarks/full_size_families.py --work /tmp/families
    .venv/bin/python benchmarks/full_size_families.py --work /tmp/families-900 --presets maze-hard,arc-agi-1 \\
        --calib-steps 2

Calibration: 16 puzzles (generated for Sudoku and mazes; ARC from synthetic tasks, as in pipeline_cost.py),
``--calib-steps`` supervision steps each (default: all), no parity report: this checks that every family
quantizes and verifies at full size and what each command costs, not INT8 accuracy (random weights).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.pipeline_cost import run, synthetic_arc_tasks  # noqa: E402

PRESETS = ("sudoku-extreme-mlp", "sudoku-extreme-att", "maze-hard", "arc-agi-1", "arc-agi-2")


def official_checkpoint(preset: str, data: Path | None, out: Path) -> Path:
    """A random model of ``preset`` written as the official trainer writes it (its puzzle table sized to the ARC
    dataset's identifiers)."""
    from tests.conftest import random_trm
    from tests.trm.official_fixture import write_official_checkpoint
    from trm_edge.config import get_preset
    from trm_edge.puzzles.dataset import read_identifiers

    spec = get_preset(preset)
    config = spec.model
    if spec.task == "arc":
        config = config.replace(num_puzzle_identifiers=len(read_identifiers(data)))
    return write_official_checkpoint(random_trm(config), out)


def family(preset: str, work: Path, *, calib_steps: int | None, log) -> list[dict]:
    from trm_edge.config import get_preset

    task = get_preset(preset).task
    work.mkdir(parents=True)
    steps: list[dict] = []
    calibration = ["--calib-task", task, "--calib-n", "16"]
    import_args = ["--task", task]
    data = None
    if task == "arc":
        synthetic_arc_tasks(work / "tasks", count=32, seed=1)
        data = work / "data"
        steps.append(run("data", ["data", "build", "arc", "-o", str(data), "--source", str(work / "tasks" / "training"),
                                  "--source", str(work / "tasks" / "arc-agi_evaluation_challenges.json"), "--aug", "3",
                                  "--seed", "1"], log))
        calibration = ["--calib", str(data), "--calib-n", "16"]
        import_args += ["--identifiers", str(data)]
    if calib_steps:
        calibration += ["--calib-steps", str(calib_steps)]
    started = time.perf_counter()
    official = official_checkpoint(preset, data, work / "official")
    log(f"{preset}: official checkpoint written in {time.perf_counter() - started:.1f} s")
    steps.append(run("import", ["import", str(official), *import_args, "-o", str(work / "ckpt")], log))
    for target, precisions in (("x86-avx512", ["--int8"]), ("jetson-orin-nano", ["--int8", "--fp16"])):
        fp32 = work / target
        steps.append(run(f"export {target}", ["export", str(work / "ckpt"), "--target", target, "-o", str(fp32)], log))
        for flag in precisions:
            out = work / f"{target}{flag}"
            extra = calibration if flag == "--int8" else []
            steps.append(run(f"quantize {flag[2:]} {target}", ["quantize", str(fp32), flag, *extra, "--eval-n", "0",
                                                               "--no-report", "-o", str(out)], log))
            runtimes = ["onnxruntime", "openvino"] if target == "x86-avx512" else ["onnxruntime"]
            for runtime in runtimes:
                step = run(f"verify {flag[2:]} {target} ({runtime})", ["verify", str(out), "--runtime", runtime,
                                                                       "--json"], log)
                step["ok"] = json.loads(step["stdout"])["ok"]
                steps.append(step)
    return [{**s, "preset": preset} for s in steps]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="Scratch directory (replaced).")
    parser.add_argument("--presets", default=",".join(PRESETS), help="Comma-separated presets.")
    parser.add_argument("--calib-steps", type=int, default=None, help="Supervision steps per calibration puzzle.")
    parser.add_argument("--json", type=Path, help="Write the measurements here.")
    args = parser.parse_args()

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    shutil.rmtree(args.work, ignore_errors=True)
    rows = []
    for preset in args.presets.split(","):
        rows += family(preset, args.work / preset, calib_steps=args.calib_steps, log=log)
    if args.json:
        args.json.write_text(json.dumps({"cpus": os.cpu_count(), "calib_steps": args.calib_steps, "steps": rows},
                                        indent=2) + "\n")
    print("| preset | command | wall s | CPU s | peak RSS (MB) | verify |\n|---|---|---:|---:|---:|---|")
    for r in rows:
        verdict = "" if "ok" not in r else ("PASS" if r["ok"] else "FAIL")
        print(f"| {r['preset']} | {r['step']} | {r['seconds']} | {r['cpu_seconds']} | {r['peak_rss_mb']} | {verdict} |")


if __name__ == "__main__":
    main()
