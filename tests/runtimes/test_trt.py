"""The TensorRT runtime.

Without a GPU (CI, this dev box) the device-side logic is checked against stand-ins: device memory is
numpy (tests/runtimes/fake_cuda.py), and the engine is the bundle's step graph in onnxruntime, reading
and writing those buffers by address as TensorRT would. That covers the ping-pong state, compaction of
halted rows, refill, what is copied back each step, static batches, the engine record and the refusal
of foreign engines. The ``gpu`` tests build and run a real engine and skip cleanly without one.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.runtimes.conftest import random_ids, random_tokens
from tests.runtimes.fake_cuda import NumpyMemory, OrtContext
from trm_edge.errors import BundleError, TrmEdgeError
from trm_edge.runtimes import Solver, open_runtime, open_source
from trm_edge.runtimes.trt import (
    DeviceInfo,
    EngineRecord,
    TensorRTRuntime,
    check_engine_device,
    enumerate_runs,
    plan_build,
    record_engine,
    trtexec_command,
)


def fake_trt(bundle, *, max_batch: int = 8, fixed: int | None = None):
    ort = open_runtime(bundle, "onnxruntime").load()
    memory = NumpyMemory()
    context = OrtContext(ort.session, memory)
    runtime = TensorRTRuntime.from_parts(ort.source, context=context, memory=memory, max_batch=max_batch,
                                         fixed_batch=fixed)
    return runtime, ort, memory, context


@pytest.mark.parametrize("name", ["mlp", "many-puzzles"])
@pytest.mark.parametrize("refill", [True, False])
def test_device_state_loop_equals_the_host_loop(bundles, name, refill):
    _, bundle = bundles(name)
    runtime, ort, memory, context = fake_trt(bundle)
    cfg = runtime.config
    tokens, ids = random_tokens(cfg, 13, seed=7), random_ids(cfg, 13, seed=8)
    device = Solver(runtime, batch_size=5, halt=True, refill=refill).run(tokens, ids)
    host = Solver(ort, batch_size=5, halt=True, refill=refill).run(tokens, ids)
    assert len(set(device.steps.tolist())) > 1, "halting should vary so that rows leave mid-batch"
    np.testing.assert_array_equal(device.steps, host.steps)
    np.testing.assert_array_equal(device.preds, host.preds)
    np.testing.assert_array_equal(device.q_halt_logits, host.q_halt_logits)
    assert device.step_rows == host.step_rows == context.runs
    # Per step only q_halt_logits comes back; logits only once per puzzle, when it finishes.
    per_puzzle_logits = cfg.seq_len * cfg.vocab_size * 4
    assert memory.downloaded == 4 * sum(device.step_rows) + per_puzzle_logits * len(tokens)


def test_compaction_never_overlaps_and_keeps_the_right_rows(bundles):
    _, bundle = bundles("learned")
    runtime, ort, memory, _ = fake_trt(bundle, max_batch=8)
    cfg = runtime.config
    tokens = random_tokens(cfg, 8, seed=9)
    rec, host = runtime.start(capacity=8), ort.start(capacity=8)
    for r in (rec, host):
        r.add(tokens, None)
        r.step()
    for keep in ([1, 2, 3, 4, 5, 6, 7], [0, 2, 3, 6], [2, 3], [1]):  # shifts of 1 row need chunked copies
        rec.keep(np.array(keep))
        host.keep(np.array(keep))
        np.testing.assert_array_equal(rec.state()[0], host.state()[0])
        np.testing.assert_array_equal(rec.step(), host.step())
        np.testing.assert_array_equal(rec.logits(np.arange(rec.batch)), host.logits(np.arange(host.batch)))
    with pytest.raises(TrmEdgeError, match="ascending"):
        rec.keep(np.array([0, 0]))
    buffers = len(rec.buffers)
    rec.close()
    assert memory.freed == buffers


def test_host_step_for_verify_and_compare(bundles):
    _, bundle = bundles("many-puzzles")
    runtime, ort, _, _ = fake_trt(bundle, max_batch=4)
    golden = open_source(bundle).bundle.golden()
    feeds = {k: golden[k] for k in runtime.input_names}
    got, want = runtime.step(feeds), ort.step(feeds)  # 6 cases > max batch 4: split in two runs
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])


def test_static_batch_engine_runs_every_row(bundles):
    _, bundle = bundles("learned", batch=4)
    runtime, ort, _, context = fake_trt(bundle, fixed=4)
    tokens = random_tokens(runtime.config, 6, seed=11)
    device = Solver(runtime, batch_size=16, halt=True).run(tokens)
    host = Solver(ort, batch_size=16, halt=True).run(tokens)
    assert set(context.runs) == {4}
    np.testing.assert_array_equal(device.preds, host.preds)
    np.testing.assert_array_equal(device.steps, host.steps)


def test_enumerate_runs():
    assert list(enumerate_runs(np.array([3, 4, 5, 9, 11, 12]))) == [(0, (3, 3)), (3, (9, 1)), (4, (11, 2))]
    assert list(enumerate_runs(np.array([], dtype=int))) == []


RECORD = EngineRecord(file="step.engine", precision="fp16", gpu="Orin", compute_capability="8.7", tensorrt="10.3.0",
                      min_batch=1, opt_batch=16, max_batch=16, built_at="2026-11-25T00:00:00+00:00", trtexec="trtexec")


def test_an_engine_from_another_gpu_or_tensorrt_is_refused():
    check_engine_device(RECORD, DeviceInfo("Orin", "8.7", "10.3.0"), bundle="b")
    for other in (DeviceInfo("NVIDIA H100 80GB HBM3", "9.0", "10.3.0"), DeviceInfo("Orin", "8.7", "10.7.0")):
        with pytest.raises(BundleError) as error:
            check_engine_device(RECORD, other, bundle="b")
        message = str(error.value)
        assert "built on Orin (sm_87) with TensorRT 10.3.0" in message
        assert other.describe() in message and "trm-edge build-engine b" in message


def test_trtexec_line():
    from tests.conftest import TINY_CONFIGS

    cfg = TINY_CONFIGS["many-puzzles"]
    line = trtexec_command(Path("b/step.onnx"), Path("b/step.engine"), cfg, precision="int8", min_batch=1,
                           opt_batch=8, max_batch=16, static_batch=False, timing_cache=Path("t.cache"),
                           workspace_mb=1024)
    assert line.startswith("trtexec --onnx=b/step.onnx --saveEngine=b/step.engine ")
    assert "--minShapes=inputs:1x64,z_H:1x66x32,z_L:1x66x32,puzzle_embedding:1x48" in line
    assert "--optShapes=inputs:8x64," in line and "--maxShapes=inputs:16x64," in line
    assert line.endswith("--fp16 --int8 --timingCacheFile=t.cache --memPoolSize=workspace:1024")
    static = trtexec_command(Path("s.onnx"), Path("s.engine"), cfg, precision="fp32", min_batch=4, opt_batch=4,
                             max_batch=4, static_batch=True)
    assert static == "trtexec --onnx=s.onnx --saveEngine=s.engine"


def test_build_plan_checks_the_request(bundles):
    _, bundle = bundles("mlp")
    plan = plan_build(bundle, precision="fp16", max_batch=8, opt_batch=4)
    assert (plan.precision, plan.min_batch, plan.opt_batch, plan.max_batch) == ("fp16", 1, 4, 8)
    assert plan.static_batch is None
    assert "--fp16" in plan.trtexec and plan.engine == Path(bundle) / "step.engine"
    assert plan_build(bundle).precision == "fp32"
    with pytest.raises(TrmEdgeError, match="quantize it first"):
        plan_build(bundle, precision="int8")
    _, static = bundles("learned", batch=4)
    assert plan_build(static).static_batch == 4


def test_engine_record_in_the_manifest_is_checksummed_and_required(bundles, tmp_path, monkeypatch):
    import shutil

    _, original = bundles("mlp")
    bundle = tmp_path / "bundle"
    shutil.copytree(original, bundle)
    with pytest.raises(BundleError, match="has no TensorRT engine; build one on this device"):
        TensorRTRuntime(open_source(bundle)).load()
    (bundle / "step.engine").write_bytes(b"not really an engine")
    record_engine(bundle, replace(RECORD, precision="fp32"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["engines"]["tensorrt"]["gpu"] == "Orin" and "step.engine" in manifest["files"]
    source = open_source(bundle)  # checksums still verify
    # Loading on another GPU is refused before TensorRT deserializes anything.
    import trm_edge.runtimes.trt as trt_module

    class FakeTensorRT:
        __version__ = "10.3.0"

    monkeypatch.setattr(trt_module, "import_tensorrt", lambda: FakeTensorRT)
    monkeypatch.setattr(trt_module, "cuda_memory", lambda: NumpyMemory("NVIDIA GeForce RTX 4090", "8.9"))
    with pytest.raises(BundleError, match=r"built on Orin .* this device is NVIDIA GeForce RTX 4090 .*rebuild"):
        TensorRTRuntime(source).load()
    (bundle / "step.engine").write_bytes(b"tampered")
    with pytest.raises(BundleError, match="sha256"):
        open_source(bundle)


def test_build_engine_dry_run_prints_the_trtexec_line(bundles):
    from typer.testing import CliRunner

    from trm_edge.cli import app

    _, bundle = bundles("mlp")
    result = CliRunner().invoke(app, ["build-engine", str(bundle), "--fp16", "--max-batch", "4", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "trtexec --onnx=" in result.output and "--fp16" in result.output
    result = CliRunner().invoke(app, ["build-engine", str(bundle), "--fp16", "--int8", "--dry-run"])
    assert result.exit_code != 0


# -- on a real GPU ---------------------------------------------------------------------------------------

def _gpu_or_skip():
    try:
        from trm_edge.runtimes.trt import cuda_memory, import_tensorrt

        import_tensorrt()
        cuda_memory().close()
    except Exception as error:  # no TensorRT, no cuda-python/torch, no GPU: all mean "skip here"
        pytest.skip(f"needs an NVIDIA GPU with TensorRT: {error}")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_real_engine_build_verify_and_solve(bundles, tmp_path, precision):
    _gpu_or_skip()
    import shutil

    from trm_edge.runtimes.evaluate import verify_golden
    from trm_edge.runtimes.trt import build_engine

    _, original = bundles("many-puzzles")
    bundle = tmp_path / "bundle"
    shutil.copytree(original, bundle)
    record = build_engine(plan_build(bundle, precision=None if precision == "fp32" else precision, max_batch=8))
    assert record.precision == precision
    source = open_source(bundle)
    with open_runtime(source, "tensorrt") as trt, open_runtime(source, "onnxruntime") as ort:
        report = verify_golden(trt, source.bundle.golden(), precision=precision)
        assert report["ok"], report["lines"]
        tokens, ids = random_tokens(source.config, 12), random_ids(source.config, 12)
        a = Solver(trt, batch_size=5, max_steps=1).run(tokens, ids)
        b = Solver(ort, batch_size=5, max_steps=1).run(tokens, ids)
        assert (a.preds == b.preds).mean() > (0.999 if precision == "fp32" else 0.98)
