"""Where an INT8 step's time goes: the step graph of a bundle profiled node by node, by onnxruntime's profiler
and by OpenVINO's performance counters (at its float32 and bf16 precision hints), summed per op type and per place
in the block (which shows what an activation fused into a GEMM costs), beside the step's limit on this machine
(runtimes/ceiling.py: its GEMMs timed alone). Without --bundle it builds the 5M `sudoku-extreme-mlp` INT8 bundle
(random weights, `trm-edge init`, `export --target x86-avx512`, `quantize --int8`) under --work first.

    .venv/bin/python benchmarks/step_profile.py [--work /tmp/step-profile] [--bundle B] [--batch 16 --batch 1]
        [--steps 10] [--threads N] [--json out.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trm_edge.machine import describe, this_machine, usable_cores  # noqa: E402


def trm(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "trm_edge", *args], capture_output=True, text=True, cwd=ROOT)
    if result.returncode:
        raise SystemExit(f"trm-edge {' '.join(args)}: {result.stderr}")


def build_bundle(work: Path) -> Path:
    bundle = work / "int8"
    if not (bundle / "manifest.json").exists():
        trm("init", "--preset", "sudoku-extreme-mlp", "-o", str(work / "ckpt"), "--force")
        trm("export", str(work / "ckpt"), "--target", "x86-avx512", "-o", str(work / "fp32"), "--force")
        trm("quantize", str(work / "fp32"), "--int8", "--calib-task", "sudoku", "--calib-n", "16", "--eval-n", "0",
            "--no-report", "-o", str(bundle), "--force")
    return bundle


def step_feeds(bundle: Path, batch: int) -> dict[str, np.ndarray]:
    """The feeds of a first step of ``batch`` random puzzles, as the recursion core builds them."""
    from trm_edge.puzzles.examples import random_inputs
    from trm_edge.runtimes import open_runtime
    from trm_edge.runtimes.interface import HostRecurrence

    with open_runtime(bundle, "onnxruntime") as rt:
        recurrence = HostRecurrence(rt, capacity=batch)
        recurrence.add(random_inputs(rt.config, batch), rt.puzzle_embedding(np.zeros(batch, np.int64)))
        return {name: np.ascontiguousarray(value) for name, value in recurrence.feeds.items()}


def profile_onnxruntime(graph: Path, feeds: dict, steps: int, threads: int) -> tuple[dict, dict]:
    """ms per step by op type, and by op type and input shapes (onnxruntime's profiler, node events)."""
    import onnxruntime as ort

    from trm_edge.runtimes.ort import OrtOptions, session_options

    options = session_options(OrtOptions(intra_op_threads=threads))
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        feeds = {k: v for k, v in feeds.items() if k in names}
        session.run(None, feeds)  # warm-up, left out below
        session.end_profiling()
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        for _ in range(steps):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    by_op: dict[str, float] = collections.Counter()
    by_role: dict[str, float] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op, ms = event["args"]["op_name"], event["dur"] / 1e3 / steps
            shapes = [next(iter(i.values())) for i in event["args"].get("input_type_shape", [])]
            by_op[op] += ms
            by_role[f"{op} {' x '.join(str(s) for s in shapes[:2] if s)}"] += ms
    return dict(by_op), dict(by_role)


def profile_openvino(graph: Path, feeds: dict, steps: int, threads: int, precision: str = "f32") \
        -> tuple[dict, dict] | None:
    """ms per step by executed node type, and by node type and place in the block (OpenVINO's performance
    counters, at the ``precision`` hint); None without OpenVINO."""
    try:
        import openvino as ov
    except ImportError:
        return None
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(graph)), "CPU", {
        "PERF_COUNT": True, "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": precision,
        "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    names = {name for port in compiled.inputs for name in port.get_names()}
    feeds = {k: v for k, v in feeds.items() if k in names}
    request.infer(feeds)
    by_op: dict[str, float] = collections.Counter()
    by_role: dict[str, float] = collections.Counter()
    for _ in range(steps):
        request.infer(feeds)
        for node in request.profiling_info:
            ms = node.real_time.total_seconds() * 1e3 / steps
            by_op[f"{node.node_type} ({node.exec_type})"] += ms
            by_role[f"{node.node_type} {role(node.node_name)}"] += ms
    return dict(by_op), dict(by_role)


def role(node_name: str) -> str:
    """A node's place in a block, the same for every layer and application: ``/L_level/layers.0/mlp/Mul_3`` ->
    ``mlp/Mul`` (the split gate and up halves of a SwiGLU keep their ``cols0`` / ``colsN`` suffix)."""
    name = re.sub(r"^/?L_level/(layers\.\d+(_\d+)?/)?", "", node_name)
    return re.sub(r"_\d+(?=/|$)", "", re.sub(r"/MatMul(?=/|$)", "", name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/step-profile"))
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--batch", type=int, action="append")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from trm_edge.bundle.store import load_bundle
    from trm_edge.runtimes.ceiling import measured_limit

    bundle = load_bundle(args.bundle or build_bundle(args.work))
    machine = this_machine(args.threads)
    print(f"# {describe(machine)}; {bundle.path} ({bundle.precision})")
    report = {**machine, "bundle": str(bundle.path), "batches": []}
    for batch in args.batch or [16, 1]:
        feeds = step_feeds(bundle.path, batch)
        limit = measured_limit(bundle.config, batch, bundle.precision, threads=args.threads)
        entry = {"batch": batch, "limit_ms": limit.ms if limit else None,
                 "gemm_limits": [g.__dict__ for g in limit.gemms] if limit else []}
        for runtime, profile, hint in (("onnxruntime", profile_onnxruntime, ()), ("openvino", profile_openvino, ()),
                                       ("openvino bf16", profile_openvino, ("bf16",))):
            found = profile(bundle.step_graph_path, feeds, args.steps, args.threads, *hint)
            if found is None:
                continue
            by_op, by_role = (dict(sorted(d.items(), key=lambda kv: -kv[1])) for d in found)
            total = sum(by_op.values())
            entry[runtime] = {"step_ms": total, "by_op_ms": by_op, "by_role_ms": by_role}
            print(f"\n## batch {batch}, {runtime}: {total:.1f} ms per step of node time; limit {entry['limit_ms']:.1f} "
                  f"ms ({100 * entry['limit_ms'] / total:.0f}% of it)")
            for title, table, rows in (("by op type", by_op, 12), ("by place in the block", by_role, 16)):
                print(f"### {title}")
                for op, ms in list(table.items())[:rows]:
                    print(f"{op:>60} {ms:9.2f} ms {100 * ms / total:5.1f}%")
        report["batches"].append(entry)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
