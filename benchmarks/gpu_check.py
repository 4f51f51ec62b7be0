"""The GPU checks a CPU-only CI cannot run, in one go (under 10 minutes on one GPU); paste the table into the note.

    python benchmarks/gpu_check.py [--json out.json] [--bundle BUNDLE] [--int8-bundle BUNDLE] [--train-steps 300]

Needs torch with CUDA and numpy; uses cuda-python, onnxruntime and TensorRT where installed and says so
where not (no network is needed, nothing is downloaded). Each row is one check:

- ``memory``: both CUDA memory backends (cuda-python, torch): upload/download/device copies at odd offsets,
  page-locked downloads, a captured CUDA graph replayed, memset; then 100 open/alloc/free/close cycles,
  leak = drop of the driver's free memory.
- ``solver``: the solver with halting that varies and refill, torch on CUDA against torch on the CPU
  (the same random-weight model: answer and step agreement).
- ``train``: the trainer's GPU path (bf16 autocast, torch.compile) for ``--train-steps`` steps, then the
  same under a one-process NCCL group (the collectives of a multi-GPU run).
- ``tensorrt``: fp32/fp16 (and int8 with ``--int8-bundle``) engine builds of a bundle, golden I/O verified
  against the bundle's float32 reference, where TensorRT is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trm_edge.errors import RuntimeUnavailableError

ROWS: list[dict] = []


def check(name: str, backend: str):
    """Decorator: run a check, record PASS/FAIL/SKIP with its detail and time."""
    def wrap(fn):
        def run(*args, **kwargs):
            started = time.perf_counter()
            try:
                ok, detail = fn(*args, **kwargs)
                result = "PASS" if ok else "FAIL"
            except (Unavailable, RuntimeUnavailableError) as why:  # no GPU, package not installed
                result, detail = "SKIP", str(why)
            except Exception as error:  # a check that crashes is a failure, with its reason
                result, detail = "FAIL", f"{type(error).__name__}: {error}"
                traceback.print_exc()
            ROWS.append({"check": name, "backend": backend, "result": result, "detail": detail,
                         "seconds": round(time.perf_counter() - started, 1)})
        return run
    return wrap


class Unavailable(Exception):
    pass


def memory_backend(name: str):
    from trm_edge.runtimes.cuda import CudaPythonMemory, TorchCudaMemory, import_cudart

    if name == "cuda-python" and import_cudart() is None:
        raise Unavailable("cuda-python not installed")
    return CudaPythonMemory if name == "cuda-python" else TorchCudaMemory


def round_trips(name: str):
    cls = memory_backend(name)
    m = cls()
    rng = np.random.default_rng(0)
    problems = []
    try:
        a, b = m.alloc(1 << 20), m.alloc(1 << 20)
        for offset in (0, 1, 4093, 65543, (1 << 20) - 3001):
            data = rng.integers(0, 256, 3001, dtype=np.uint8)
            m.upload(a, offset, data)
            plain, pinned = np.empty_like(data), m.host_array(3001, np.uint8)
            m.download(plain, a, offset)
            m.download(pinned, a, offset)
            m.copy(b, 17, a, offset, data.nbytes)
            back = np.empty_like(data)
            m.download(back, b, 17)
            m.synchronize()
            for what, got in (("download", plain), ("pinned download", pinned), ("device copy", back)):
                if not np.array_equal(got, data):
                    problems.append(f"{what} at offset {offset}")
        graph = m.capture(lambda: m.copy(b, 0, a, 0, 4096))  # a CUDA graph replays the copy on new data
        fresh = rng.integers(0, 256, 4096, dtype=np.uint8)
        m.upload(a, 0, fresh)
        m.replay(graph)
        replayed = np.empty_like(fresh)
        m.download(replayed, b, 0)
        m.synchronize()
        m.release(graph)
        if not np.array_equal(replayed, fresh):
            problems.append("CUDA graph replay")
        m.zero(a)
        whole = np.ones(1 << 20, np.uint8)
        m.download(whole, a, 0)
        m.synchronize()
        if whole.any():
            problems.append("memset left non-zero bytes")
        m.free(a)
        m.free(b)
    finally:
        m.close()
    return not problems, ("; ".join(problems)
                          or "5 offsets x (download, pinned, device copy), CUDA graph replay, memset: equal")


def leaks(name: str, cycles: int = 100):
    cls = memory_backend(name)
    probe = cls()
    release = (lambda: __import__("torch").cuda.empty_cache()) if name == "torch" else (lambda: None)
    release()
    before = probe.free_memory()
    for _ in range(cycles):
        m = cls()
        buffers = [m.alloc(8 << 20) for _ in range(9)]  # a recurrence's nine buffers
        m.host_array(1024, np.float32)
        for buffer in buffers:
            m.free(buffer)
        m.close()
    release()
    after = probe.free_memory()
    probe.close()
    leaked = (before - after) / 2**20
    return leaked < 8, f"{cycles} cycles of 9 x 8 MiB + pinned: free memory dropped {leaked:.1f} MiB"


def halting_model(config, seed: int = 0):
    """Random weights whose halting fires at varied steps (the trained-model init never halts)."""
    import torch

    from trm_edge.trm.model import build_model

    model = build_model(config, seed=seed).eval()
    with torch.no_grad():
        model.q_head.weight.normal_(0, 2.0 / config.hidden_size**0.5, generator=torch.Generator().manual_seed(seed))
        model.q_head.bias.fill_(0.0)
        tokens = torch.randint(1, config.vocab_size, (32, config.seq_len), generator=torch.Generator().manual_seed(1))
        z_H, z_L = model.initial_state(32)
        q = model.step_embedded(tokens, z_H, z_L, model.puzzle_embedding(torch.zeros(32, dtype=torch.long), 32))[3]
        model.q_head.bias[0] = -q.median()
    return model


def solver_parity(device: str):
    import torch

    from trm_edge.config import TRMConfig
    from trm_edge.runtimes.solver import Solver
    from trm_edge.runtimes.torch_ref import TorchRuntime

    if device == "cuda" and not torch.cuda.is_available():
        raise Unavailable("torch sees no CUDA device")
    config = TRMConfig(seq_len=81, vocab_size=11, num_puzzle_identifiers=1, hidden_size=128, num_heads=4,
                       pos_encodings="rope", H_cycles=2, L_cycles=3, halt_max_steps=16)
    tokens = np.random.default_rng(3).integers(1, 11, (64, 81)).astype(np.int32)
    out = {}
    for where in ("cpu", device):
        with TorchRuntime.from_model(halting_model(config), device=where) as runtime:
            out[where] = Solver(runtime, batch_size=16, halt=True, refill=True).run(tokens)
    cpu, gpu = out["cpu"], out[device]
    steps_equal = float((cpu.steps == gpu.steps).mean())
    cells_equal = float((cpu.preds == gpu.preds).mean())
    varied = len(set(cpu.steps.tolist()))
    detail = (f"64 puzzles, batch 16 with refill: {varied} distinct halting steps, steps equal {steps_equal:.3f}, "
              f"cells equal {cells_equal:.4f}")
    return varied > 1 and steps_equal >= 0.95 and cells_equal >= 0.99, detail


def toy_split(n: int, seq_len: int, seed: int):
    from trm_edge.trm.data import ArraySplit

    rng = np.random.default_rng(seed)
    inputs = rng.integers(1, 6, size=(n, seq_len))
    return ArraySplit.one_example_per_puzzle(inputs, 6 - inputs, vocab_size=6)


def train_path(steps: int, *, nccl: bool, device: str):
    import torch

    from trm_edge.config import TrainConfig, TRMConfig
    from trm_edge.trm.distributed import Dist, init_distributed
    from trm_edge.trm.train import Trainer

    if device == "cuda" and not torch.cuda.is_available():
        raise Unavailable("torch sees no CUDA device")
    config = TRMConfig(seq_len=81, vocab_size=6, num_puzzle_identifiers=1, hidden_size=128, num_heads=4,
                       pos_encodings="rope", H_cycles=2, L_cycles=2, halt_max_steps=4)
    on_gpu = device == "cuda"
    train_config = TrainConfig(global_batch_size=64, lr=1e-3, lr_warmup_steps=20, train_steps=steps, bf16=on_gpu,
                               compile=on_gpu, eval_interval=steps, checkpoint_interval=steps, log_interval=steps)
    d = Dist()
    if nccl:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29517", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0",
                          LOCAL_WORLD_SIZE="1")
        d = init_distributed()
    try:
        trainer = Trainer(config, train_config, toy_split(4096, 81, 0), toy_split(256, 81, 1), task="toy", d=d,
                          device=torch.device(device))
        first = trainer.train_step()["loss"]
        started = time.perf_counter()
        for _ in range(steps - 1):
            last = trainer.train_step()["loss"]
        if device == "cuda":
            torch.cuda.synchronize()
        rate = (steps - 1) / (time.perf_counter() - started)
        exact = trainer.evaluate()["exact_accuracy"]
    finally:
        if nccl:
            import torch.distributed as dist

            dist.destroy_process_group()
            for key in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
                os.environ.pop(key, None)
    backend = ("NCCL" if device == "cuda" else "gloo") + ", 1 process" if nccl else "no process group"
    return last < first, (f"{backend}: loss {first:.3f} -> {last:.3f} in {steps} steps, {rate:.1f} steps/s, "
                          f"eval exact {exact:.3f}")


def tensorrt_builds(bundle: Path, precision: str):
    from trm_edge.runtimes import open_runtime, open_source
    from trm_edge.runtimes.trt import import_tensorrt
    from trm_edge.runtimes.trt_build import build_engine, plan_build
    from trm_edge.runtimes.verify import verify_golden

    trt = import_tensorrt()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "bundle"
        shutil.copytree(bundle, copy)
        started = time.perf_counter()
        record = build_engine(plan_build(copy, precision=precision, max_batch=16), log=lambda m: None)
        built = time.perf_counter() - started
        source = open_source(copy)
        with open_runtime(source, "tensorrt") as runtime:
            report = verify_golden(runtime, source.bundle.golden(), precision=precision)
    worst = report.worst
    return report.ok, (f"TensorRT {trt.__version__} on {record.gpu}: built in {built:.0f} s, golden worst "
                       f"{worst.output} err/tol {worst.ratio:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--bundle", type=Path, default=Path("trm_edge/models/default/bundle"))
    parser.add_argument("--int8-bundle", type=Path, help="an INT8 bundle (jetson format) to build with --int8")
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cpu runs the solver and trainer checks on the CPU (to check this script without a GPU)")
    args = parser.parse_args()
    for name in ("cuda-python", "torch"):
        check("memory round trips", name)(round_trips)(name)
        check("memory leaks", name)(leaks)(name)
    check("solver halting+refill", f"torch {args.device} vs cpu")(solver_parity)(args.device)
    check("trainer", "bf16 + compile")(train_path)(args.train_steps, nccl=False, device=args.device)
    check("trainer", "bf16 + compile + NCCL")(train_path)(args.train_steps // 3, nccl=True, device=args.device)
    builds = [(args.bundle, "fp32"), (args.bundle, "fp16")] + ([(args.int8_bundle, "int8")] if args.int8_bundle else [])
    for bundle, precision in builds:
        check(f"tensorrt {precision} build+verify", str(bundle))(tensorrt_builds)(bundle, precision)
    print("| check | backend | result | detail | s |\n|---|---|---|---|---:|")
    for row in ROWS:
        print(f"| {row['check']} | {row['backend']} | {row['result']} | {row['detail']} | {row['seconds']} |")
    if args.json:
        args.json.write_text(json.dumps(ROWS, indent=2))
    return 1 if any(r["result"] == "FAIL" for r in ROWS) else 0


if __name__ == "__main__":
    sys.exit(main())
