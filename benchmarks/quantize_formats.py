"""Which INT8 format and graph shape make the TRM step graph fast on this CPU? Side by side, one process.

Exports the step graph of a preset (random weights: speed does not depend on training) with the legacy
torch.onnx exporter (opset 17, dynamic batch), builds fp32 and int8 variants of it, and times them round-robin
(one supervision step per call, the state fed back, ``--rounds`` rounds, best and median reported) next to
PyTorch eager fp32. The machine is shared: read ratios, not absolute numbers.

    .venv/bin/python benchmarks/quantize_formats.py                      # 5M sudoku-extreme-mlp, batch 16
    .venv/bin/python benchmarks/quantize_formats.py --only torch,ort-fp32,qdq-u8s8-split --rounds 5
    .venv/bin/python benchmarks/quantize_formats.py --profile qdq-u8s8-split   # per-op-type kernel times

Results on the 2-core EPYC (quiet moment, 2026-11-25, best of 3; s per supervision step at batch 16):
torch eager fp32 1.83 | ORT fp32 (bundle graph) 2.13 | ORT fp32 prepared 1.84 | ORT default QDQ u8s8 1.47 |
trm_edge.quantize x86 (prepared, float consumers) 0.76 = 537 GOP/s | dynamic 0.74 | NNCF on prepared 0.74 |
s8s8 symmetric (Jetson format on CPU) 1.62 | NNCF out of the box 2.41 | weights via Identity (raw export) 2.29.
The ``ours`` variants skip SwiGLU smoothing (it rescales weights only: same graph, same speed).

Variants (``--list``): fp32 torch/onnxruntime at each graph optimisation level, and int8 as Q/DQ (u8 x s8,
s8 x s8 symmetric, with/without quantized MatMul outputs), QOperator, dynamic and NNCF, on the exported graph
and on the graph after the exact pre-quantization passes (onnxslim constant folding + SwiGLU weight split).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SUDOKU_LIST = Path("/work/shared/data/sudoku/magictour_top1465.txt")
IO_NAMES = ["inputs", "z_H", "z_L"]
OUT_NAMES = ["z_H_next", "z_L_next", "logits", "q_halt_logits"]


def sudoku_tokens(n: int, seed: int) -> np.ndarray:
    """Real hard puzzles when the shared list is there, else random givens (speed does not care)."""
    if SUDOKU_LIST.exists():
        lines = [ln.strip() for ln in SUDOKU_LIST.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        rows = [[1 if c in ".0" else int(c) + 1 for c in ln[:81]] for ln in lines[:n]]
        if len(rows) == n:
            return np.array(rows, np.int32)
    rng = np.random.default_rng(seed)
    return np.where(rng.random((n, 81)) < 0.3, rng.integers(2, 11, (n, 81)), 1).astype(np.int32)


def export_step(model, path: Path, opset: int = 17) -> None:
    """The step graph per docs/design.md (single puzzle embedding folded in), legacy exporter, dynamic batch."""
    import torch

    class Step(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m
            pe = m.puzzle_embedding(None, 1)
            self.register_buffer("pe", pe.detach().clone() if pe is not None else torch.zeros(0))

        def forward(self, inputs, z_H, z_L):
            pe = self.pe.expand(inputs.shape[0], -1) if self.pe.numel() else None
            return self.m.step_embedded(inputs, z_H, z_L, pe)

    zh, zl = model.initial_state(2)
    inputs = torch.ones(2, model.config.seq_len, dtype=torch.int32)
    with torch.no_grad():
        torch.onnx.export(Step(model), (inputs, zh, zl), str(path), opset_version=opset, dynamo=False,
                          input_names=IO_NAMES, output_names=OUT_NAMES,
                          dynamic_axes={k: {0: "batch"} for k in IO_NAMES + OUT_NAMES})


class Reader:
    """Calibration feeds: states along float32 trajectories (recursion-aware, every step up to ``steps``)."""

    def __init__(self, fp32_path: Path, inputs: np.ndarray, z_H: np.ndarray, z_L: np.ndarray, steps: int):
        import onnxruntime as ort

        sess = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
        self.items = []
        feeds = {"inputs": inputs, "z_H": z_H, "z_L": z_L}
        for _ in range(steps):
            self.items.append(dict(feeds))
            out = sess.run(["z_H_next", "z_L_next"], feeds)
            feeds = {"inputs": inputs, "z_H": out[0], "z_L": out[1]}
        self.rewind()

    def rewind(self):
        self._it = iter(self.items)

    def get_next(self):
        return next(self._it, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="sudoku-extreme-mlp")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=2, help="timed supervision steps per round and variant")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", default="/tmp/q")
    ap.add_argument("--only", default="", help="comma-separated variant names")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--profile", default="", help="print per-op-type kernel times of this variant and exit")
    ap.add_argument("--json", default="", help="also write the table as JSON here")
    ap.add_argument("--build-only", action="store_true", help="write the variants' graphs, time nothing")
    args = ap.parse_args()

    import onnx
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    from trm_edge.config import PRESETS, flops_per_step
    from trm_edge.quantize.graph import prepare, split_sliced_matmuls
    from trm_edge.trm.model import build_model

    torch.set_num_threads(args.threads)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    config = PRESETS[args.preset].model
    model = build_model(config, seed=0).eval()
    tag = args.preset
    fp32 = work / f"{tag}_fp32.onnx"
    if not fp32.exists():
        export_step(model, fp32)

    def clean() -> Path:
        """What a bundle holds: Identity-shared weights rewired, onnxslim, duplicates merged (export's passes)."""
        out = work / f"{tag}_fp32_clean.onnx"
        if not out.exists():
            from trm_edge.export.passes import cleanup

            m, _ = cleanup(onnx.load(str(fp32)))
            onnx.save(m, str(out))
        return out

    def split() -> Path:
        """clean + the SwiGLU weight split only (trm_edge.quantize.graph.split_sliced_matmuls)."""
        out = work / f"{tag}_fp32_split.onnx"
        if not out.exists():
            m, _ = split_sliced_matmuls(onnx.load(str(clean())))
            onnx.save(m, str(out))
        return out

    def prepared() -> Path:
        """clean + every pre-quantization pass (trm_edge.quantize.graph.prepare: split + RMSNorm for fusion)."""
        out = work / f"{tag}_fp32_prepared.onnx"
        if not out.exists():
            m, _ = prepare(onnx.load(str(clean())))
            onnx.save(m, str(out))
        return out

    calib_inputs = sudoku_tokens(8, seed=1)
    zh0, zl0 = (t.numpy() for t in model.initial_state(len(calib_inputs)))
    readers: dict[str, Reader] = {}

    def reader(src: Path) -> Reader:
        if str(src) not in readers:
            readers[str(src)] = Reader(src, calib_inputs, zh0, zl0, steps=4)
        r = readers[str(src)]
        r.rewind()
        return r

    def static(name: str, src: Callable[[], Path], *, fmt=QuantFormat.QDQ, act=QuantType.QUInt8,
               weight=QuantType.QInt8, symmetric=False, out_q=False, per_channel=True) -> Callable[[], Path]:
        """onnxruntime's quantize_static as is (its Q/DQ placement: every consumer reads the dequantized tensor)."""
        def build() -> Path:
            out = work / f"{tag}_{name}.onnx"
            if not out.exists():
                s = src()
                extra = {"ActivationSymmetric": symmetric, "WeightSymmetric": True, "MatMulConstBOnly": True}
                if not out_q:
                    extra["OpTypesToExcludeOutputQuantization"] = ["MatMul"]
                quantize_static(str(s), str(out), reader(s), quant_format=fmt, activation_type=act,
                                weight_type=weight, per_channel=per_channel, op_types_to_quantize=["MatMul"],
                                calibrate_method=CalibrationMethod.MinMax, extra_options=extra)
            return out
        return build

    def ours(name: str, src: Callable[[], Path], target: str, backend: str = "ort") -> Callable[[], Path]:
        """trm_edge.quantize: the target profile's format, recursion-aware ranges, GEMM inputs only quantized."""
        def build() -> Path:
            out = work / f"{tag}_{name}.onnx"
            if not out.exists():
                from trm_edge.puzzles.examples import Examples
                from trm_edge.quantize.backends import quantize_int8
                from trm_edge.quantize.calibration import StateReader, Trajectories, quantized_inputs, record
                from trm_edge.quantize.formats import Backend, Method, int8_format
                from trm_edge.targets import get_target

                class Source:  # what record() needs of a bundle
                    def __init__(self):
                        self.config = config

                    def initial_states(self, n):
                        return tuple(t.numpy() for t in model.initial_state(n))

                spec = int8_format(get_target(target))
                prepared = onnx.load(str(src()))
                tensors = quantized_inputs(prepared, spec.quantize_ops)
                traj, ranges = record(prepared, Source(), Examples(calib_inputs), tensors=tensors, max_steps=4,
                                      batch_size=8)
                q, _ = quantize_int8(prepared, spec, backend=Backend(backend), method=Method.MINMAX,
                                     ranges=ranges.merged(), reader=StateReader(traj))
                assert isinstance(traj, Trajectories)
                onnx.save(q, str(out))
            return out
        return build

    def dynamic(name: str, src: Callable[[], Path]) -> Callable[[], Path]:
        def build() -> Path:
            out = work / f"{tag}_{name}.onnx"
            if not out.exists():
                quantize_dynamic(str(src()), str(out), weight_type=QuantType.QInt8, per_channel=True,
                                 op_types_to_quantize=["MatMul"], extra_options={"MatMulConstBOnly": True})
            return out
        return build

    def nncf_default(name: str, src: Callable[[], Path]) -> Callable[[], Path]:
        """NNCF out of the box (default preset, every op type it quantizes)."""
        def build() -> Path:
            out = work / f"{tag}_{name}.onnx"
            if not out.exists():
                import nncf

                s = src()
                items = list(reader(s).items)
                q = nncf.quantize(onnx.load(str(s)), nncf.Dataset(items), subset_size=len(items))
                onnx.save(q, str(out))
            return out
        return build

    level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
             "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
             "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}
    raw = lambda: fp32  # noqa: E731  (the exporter's output as is: weights shared through Identity nodes)
    t = args.threads
    # name -> (graph builder, None for torch; onnxruntime graph optimisation level; intra-op threads)
    variants: dict[str, tuple[Callable[[], Path] | None, str, int]] = {
        "torch": (None, "-", t),
        "ort-fp32": (clean, "all", t),
        "ort-fp32-basic": (clean, "basic", t),
        "ort-fp32-split": (split, "all", t),
        "ort-fp32-prepared": (prepared, "all", t),
        "qdq-u8s8-raw": (static("qdq_u8s8_raw", raw), "all", t),
        "qdq-u8s8-ortdefault": (static("qdq_u8s8_outq", clean, out_q=True), "all", t),
        "qdq-u8s8-nooutq": (static("qdq_u8s8_noout", clean), "all", t),
        "qdq-u8s8": (ours("x86_nosplit", clean, "x86-avx512"), "all", t),
        "qdq-u8s8-split": (ours("x86_split", split, "x86-avx512"), "all", t),
        "qdq-u8s8-prepared": (ours("x86", prepared, "x86-avx512"), "all", t),
        "qdq-u8s8-prepared-ext": (ours("x86", prepared, "x86-avx512"), "extended", t),
        "qdq-u8s8-prepared-basic": (ours("x86", prepared, "x86-avx512"), "basic", t),
        "qdq-u8s8-prepared-1thr": (ours("x86", prepared, "x86-avx512"), "all", 1),
        "qdq-s8s8-sym-prepared": (ours("jetson", prepared, "jetson-orin-nano"), "all", t),
        "qdq-s8s8-asym-prepared": (ours("arm64", prepared, "arm64"), "all", t),
        "nncf-u8s8-prepared": (ours("x86_nncf", prepared, "x86-avx512", backend="nncf"), "all", t),
        "qop-u8s8-prepared": (static("qop_u8s8_prepared", prepared, fmt=QuantFormat.QOperator, out_q=True), "all", t),
        "dynamic-prepared": (dynamic("dyn_prepared", prepared), "all", t),
        "nncf-default": (nncf_default("nncf_default", clean), "all", t),
    }
    if args.list:
        print("\n".join(variants))
        return
    names = [n for n in (args.only.split(",") if args.only else variants) if n]
    unknown = [n for n in names if n not in variants]
    if unknown:
        sys.exit(f"unknown variant(s) {unknown}; see --list")
    if args.profile:
        names = [args.profile]

    batch = args.batch
    inputs = sudoku_tokens(batch, seed=2)
    zh, zl = (t.numpy() for t in model.initial_state(batch))

    runners: dict[str, Callable[[], float]] = {}
    info: dict[str, dict] = {}
    for name in names:
        build, lvl, threads = variants[name]
        t0 = time.perf_counter()
        if build is None:
            def run_torch(inputs=inputs, zh=zh, zl=zl) -> float:
                x, h, lo = torch.from_numpy(inputs), torch.from_numpy(zh), torch.from_numpy(zl)
                pe = model.puzzle_embedding(None, batch)
                with torch.inference_mode():
                    start = time.perf_counter()
                    for _ in range(args.steps):
                        h, lo, _, _ = model.step_embedded(x, h, lo, pe)
                return (time.perf_counter() - start) / args.steps
            runners[name] = run_torch
            info[name] = {"bytes": sum(p.numel() * 4 for p in model.parameters()), "kernels": "torch"}
            continue
        path = build()
        if args.build_only:
            print(f"{name}: {path} ({os.path.getsize(path) / 1e6:.1f} MB)")
            continue
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = level[lvl]
        opt_path = work / f"{path.stem}.{lvl}.opt.onnx"
        so.optimized_model_filepath = str(opt_path)
        if args.profile:
            so.enable_profiling = True
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        opt = onnx.load(str(opt_path), load_external_data=False)
        kinds = collections.Counter(n.op_type for n in opt.graph.node)
        mm = {k: v for k, v in kinds.items() if "MatMul" in k or k in ("Gemm", "QGemm")}
        info[name] = {"bytes": os.path.getsize(path), "kernels": " ".join(f"{k}x{v}" for k, v in sorted(mm.items())),
                      "nodes": sum(kinds.values()), "prep_s": round(time.perf_counter() - t0, 1)}

        def run_ort(sess=sess) -> float:
            feeds = {"inputs": inputs, "z_H": zh, "z_L": zl}
            start = time.perf_counter()
            for _ in range(args.steps):
                out = sess.run(["z_H_next", "z_L_next"], feeds)
                feeds = {"inputs": inputs, "z_H": out[0], "z_L": out[1]}
            return (time.perf_counter() - start) / args.steps
        runners[name] = run_ort
        runners[name]()  # warm-up (first run allocates and prepacks)
        if args.profile:
            run_ort()
            prof = json.loads(Path(sess.end_profiling()).read_text())
            per_op: collections.Counter = collections.Counter()
            for ev in prof:
                if ev.get("cat") == "Node" and ev["name"].endswith("_kernel_time"):
                    per_op[ev["args"]["op_name"]] += ev["dur"]
            total = sum(per_op.values())
            print(f"{name}: kernel time per step by op type ({total / 1e6 / (2 * args.steps):.3f} s)")
            for op, us in per_op.most_common():
                print(f"  {op:28s} {us / total:6.1%}")
            return
    if args.build_only:
        return
    if "torch" in runners:
        runners["torch"]()  # warm-up

    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.rounds):
        for name in names:
            times[name].append(runners[name]())

    gop = flops_per_step(config) * batch / 1e9
    base_torch = min(times["torch"]) if "torch" in times else None
    base_ort = min(times["ort-fp32"]) if "ort-fp32" in times else None
    print(f"\n{args.preset}, batch {batch}, {args.steps} steps x {args.rounds} rounds, {args.threads} threads; "
          f"{gop:.0f} GOP per step; s/puzzle@16 = s/step x 16 / batch")
    head = f"{'variant':22s} {'s/step':>7s} {'median':>7s} {'s/pz@16':>7s} {'GOP/s':>6s} {'xTorch':>6s} " \
           f"{'xORT32':>6s} {'MB':>6s}  kernels"
    print(head)
    rows = []
    for name in names:
        best, med = min(times[name]), statistics.median(times[name])
        row = {"variant": name, "s_per_step": best, "median_s_per_step": med, "s_per_puzzle_16": best * 16 / batch,
               "gops": gop / best, "x_torch": base_torch / best if base_torch else None,
               "x_ort_fp32": base_ort / best if base_ort else None, "mb": info[name]["bytes"] / 1e6,
               "kernels": info[name]["kernels"]}
        rows.append(row)
        xt = f"{row['x_torch']:6.2f}" if base_torch else "     -"
        xo = f"{row['x_ort_fp32']:6.2f}" if base_ort else "     -"
        print(f"{name:22s} {best:7.3f} {med:7.3f} {row['s_per_puzzle_16']:7.3f} {row['gops']:6.0f} {xt} {xo} "
              f"{row['mb']:6.1f}  {row['kernels']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"preset": args.preset, "batch": batch, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
