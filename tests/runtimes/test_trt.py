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
from tests.runtimes.fake_cuda import AllocationFailed, NumpyMemory, OrtContext
from trm_edge.errors import BundleError, RuntimeUnavailableError, TrmEdgeError
from trm_edge.runtimes import Solver, open_runtime, open_source
from trm_edge.runtimes.cuda import GpuInfo, parse_device_index
from trm_edge.runtimes.trt import (
    DeviceInfo,
    EngineRecord,
    TensorRTRuntime,
    check_engine_device,
    enumerate_runs,
)
from trm_edge.runtimes.trt_build import plan_build, record_engine, trtexec_command


def fake_trt(bundle, *, max_batch: int = 8, fixed: int | None = None, memory: NumpyMemory | None = None):
    ort = open_runtime(bundle, "onnxruntime").load()
    memory = memory or NumpyMemory()
    context = OrtContext(ort.session, memory, profile=(fixed, fixed) if fixed else (1, max_batch))
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
    # Each (rows, ping-pong side) pair runs eagerly once and is captured; every later step is a graph replay,
    # and the solver's close released every graph.
    eager = len(context.runs) - memory.replays
    assert memory.replays > 0 and eager <= 2 * len(set(device.step_rows)) and memory.captured == []
    # Per step only q_halt_logits comes back; logits only once per puzzle, when it finishes.
    per_puzzle_logits = cfg.seq_len * cfg.vocab_size * 4
    assert memory.downloaded == 4 * sum(device.step_rows) + per_puzzle_logits * len(tokens)


def test_a_failed_graph_capture_falls_back_to_eager_steps(bundles):
    _, bundle = bundles("mlp")
    runtime, ort, memory, context = fake_trt(bundle, memory=NumpyMemory(capture_fails=True))
    tokens = random_tokens(runtime.config, 9, seed=3)
    with pytest.warns(RuntimeWarning, match="CUDA graph capture failed"):
        device = Solver(runtime, batch_size=4, halt=True).run(tokens)
    host = Solver(ort, batch_size=4, halt=True).run(tokens)
    np.testing.assert_array_equal(device.preds, host.preds)
    assert not runtime.cuda_graphs and memory.replays == 0 and device.step_rows == context.runs


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
        np.testing.assert_array_equal(rec.logits(np.arange(rec.batch)), host.logits(np.arange(host.batch)))
        np.testing.assert_array_equal(rec.step(), host.step())
        np.testing.assert_array_equal(rec.logits(np.arange(rec.batch)), host.logits(np.arange(host.batch)))
    with pytest.raises(TrmEdgeError, match="ascending"):
        rec.keep(np.array([0, 0]))
    buffers = len(rec.buffers)
    rec.close()
    assert memory.freed == buffers


def test_closing_the_runtime_frees_every_buffer_and_the_stream(bundles):
    _, bundle = bundles("many-puzzles")
    runtime, _, memory, _ = fake_trt(bundle, max_batch=4)
    cfg = runtime.config
    left_open = runtime.start(capacity=4)
    left_open.add(random_tokens(cfg, 2), runtime.puzzle_embedding(random_ids(cfg, 2)))
    left_open.step()
    runtime.start(capacity=2).close()
    golden = open_source(bundle).bundle.golden()
    for rows in (1, 3, 6):  # host steps of several batch sizes share one scratch recurrence
        runtime.step({k: golden[k][:rows] for k in runtime.input_names})
    assert len(runtime._recurrences) == 2  # left_open and the scratch
    runtime.close()
    assert memory.blocks == {} and memory.captured == [] and memory.closed


def test_an_allocation_that_fails_halfway_frees_what_it_had(bundles):
    _, bundle = bundles("mlp")
    for allocated in (0, 3, 8):
        runtime, _, memory, _ = fake_trt(bundle, memory=NumpyMemory(fail_after=allocated))
        with pytest.raises(AllocationFailed):
            runtime.start(capacity=4)
        assert memory.blocks == {} and runtime._recurrences == []


def test_tensorrt_refusals_are_errors_not_silence(bundles):
    _, bundle = bundles("mlp")
    runtime, _, _, context = fake_trt(bundle, max_batch=8)
    context.profile = (1, 4)  # an engine built for at most 4 rows, whatever the record says
    rec = runtime.start(capacity=8)
    rec.add(random_tokens(runtime.config, 6), None)
    with pytest.raises(TrmEdgeError, match=r"rejected shape \(6, 81\) for 'inputs'"):
        rec.step()
    context.profile = (1, 8)
    context.reject_addresses = True
    with pytest.raises(TrmEdgeError, match="rejected the address of 'inputs'"):
        rec.step()


def test_runtime_device_index():
    assert parse_device_index(None) == 0 and parse_device_index("1") == 1 and parse_device_index("cuda:2") == 2
    with pytest.raises(RuntimeUnavailableError, match="not a GPU index"):
        parse_device_index("gpu")


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


RECORD = EngineRecord(file="step.engine", precision="fp16", gpu="Orin", compute_capability="8.7", multiprocessors=16,
                      memory_gib=61, tensorrt="10.3.0", min_batch=1, opt_batch=16, max_batch=16,
                      built_at="2026-11-25T00:00:00+00:00", trtexec="trtexec")
AGX_ORIN = DeviceInfo("Orin", "8.7", 16, 61, "10.3.0")


def test_an_engine_from_another_gpu_or_tensorrt_is_refused():
    check_engine_device(RECORD, AGX_ORIN, bundle="b")
    others = (DeviceInfo("NVIDIA H100 80GB HBM3", "9.0", 132, 79, "10.3.0"), replace(AGX_ORIN, tensorrt="10.7.0"),
              replace(AGX_ORIN, multiprocessors=8, memory_gib=7))  # an Orin Nano: same name and sm_87
    for other in others:
        with pytest.raises(BundleError) as error:
            check_engine_device(RECORD, other, bundle="b")
        message = str(error.value)
        assert "built on Orin (sm_87, 16 SMs, 61 GiB) with TensorRT 10.3.0" in message
        assert other.describe() in message and "trm-edge build-engine b" in message


def test_an_engine_record_without_the_device_fields_asks_for_a_rebuild():
    raw = {k: v for k, v in json.loads(json.dumps(RECORD.__dict__)).items() if k != "multiprocessors"}
    with pytest.raises(BundleError, match=r"malformed or from an older trm-edge.*build-engine"):
        EngineRecord.from_entry(raw)
    assert EngineRecord.from_entry({**raw, "multiprocessors": 16}) == RECORD


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
    assert plan_build(bundle).workspace_mb == 1024  # half the cpu target's 2048 MB budget


def test_fp16_and_int8_builds_keep_every_rmsnorm_in_float32(bundles):
    from trm_edge.bundle.graph_rules import norm_nodes

    _, bundle = bundles("mlp")
    import onnx

    norms = norm_nodes(onnx.load(str(Path(bundle) / "step.onnx")))
    assert len(norms) >= 5 * 4, "square, mean, eps, sqrt, divide of at least 4 norms"
    plan = plan_build(bundle, precision="fp16")
    assert plan.fp32_layers == tuple(norms) and len(plan.fp32_tensors) == len(norms)
    assert "--precisionConstraints=obey" in plan.trtexec
    assert f"--layerPrecisions={norms[0]}:fp32," in plan.trtexec.replace("'", "")
    fp32 = plan_build(bundle)
    assert fp32.fp32_layers == () and "precisionConstraints" not in fp32.trtexec


def test_an_fp16_bundle_builds_an_fp16_engine(bundles, tmp_path):
    from trm_edge.bundle.store import load_bundle

    _, original = bundles("mlp")
    bundle = load_bundle(original).copy_to(tmp_path / "fp16")
    bundle = bundle.write_manifest(bundle.manifest.replace(precision="fp16"))
    plan = plan_build(bundle.path)
    assert plan.precision == "fp16" and "--fp16" in plan.trtexec
    with pytest.raises(TrmEdgeError, match="is an fp16 bundle: build it with --fp16"):
        plan_build(bundle.path, precision="fp32")


def test_dla_builds_need_a_core_the_target_has_static_shapes_and_reduced_precision(bundles, tmp_path):
    from trm_edge.bundle.store import load_bundle

    _, dynamic = bundles("mlp")
    _, static = bundles("mlp", batch=4)
    with pytest.raises(TrmEdgeError, match="target 'cpu' has 0 DLA core"):
        plan_build(static, precision="fp16", dla_core=0)
    orin = load_bundle(static).copy_to(tmp_path / "orin")
    orin = orin.write_manifest(orin.manifest.replace(target="jetson-agx-orin")).path
    plan = plan_build(orin, precision="fp16", dla_core=1)
    assert plan.dla_core == 1 and "--useDLACore=1 --allowGPUFallback" in plan.trtexec
    assert plan.workspace_mb == 8192
    with pytest.raises(TrmEdgeError, match=r"has 2 DLA core\(s\) \(choices: 0, 1\)"):
        plan_build(orin, precision="fp16", dla_core=2)
    with pytest.raises(TrmEdgeError, match="DLA runs FP16 and INT8 only"):
        plan_build(orin, precision="fp32", dla_core=0)
    dynamic_orin = load_bundle(dynamic).copy_to(tmp_path / "dyn")
    dynamic_orin = dynamic_orin.write_manifest(dynamic_orin.manifest.replace(target="jetson-agx-orin"))
    with pytest.raises(TrmEdgeError, match=r"DLA needs static shapes .* export it with --batch N"):
        plan_build(dynamic_orin.path, precision="fp16", dla_core=0)


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
    memory = NumpyMemory(GpuInfo("NVIDIA GeForce RTX 4090", "8.9", 128, 24))
    monkeypatch.setattr(trt_module, "cuda_memory", lambda device: memory)
    with pytest.raises(BundleError, match=r"built on Orin .* this device is NVIDIA GeForce RTX 4090 .*rebuild"):
        TensorRTRuntime(source).load()
    assert memory.closed, "a refused load must release the CUDA stream it opened"
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
    """Skip only where TensorRT, cuda-python/torch or a GPU is missing; any other failure is a failure."""
    from trm_edge.runtimes.cuda import cuda_memory
    from trm_edge.runtimes.trt import import_tensorrt

    try:
        import_tensorrt()
        cuda_memory().close()
    except RuntimeUnavailableError as error:
        pytest.skip(f"needs an NVIDIA GPU with TensorRT: {error}")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_real_engine_build_verify_and_solve(bundles, tmp_path, precision):
    _gpu_or_skip()
    import shutil

    from trm_edge.runtimes.trt_build import build_engine
    from trm_edge.runtimes.verify import verify_golden

    _, original = bundles("many-puzzles")
    bundle = tmp_path / "bundle"
    shutil.copytree(original, bundle)
    record = build_engine(plan_build(bundle, precision=None if precision == "fp32" else precision, max_batch=8))
    assert record.precision == precision
    source = open_source(bundle)
    with open_runtime(source, "tensorrt") as trt, open_runtime(source, "onnxruntime") as ort:
        report = verify_golden(trt, source.bundle.golden(), precision=precision)
        assert report.ok, report.lines
        tokens, ids = random_tokens(source.config, 12), random_ids(source.config, 12)
        a = Solver(trt, batch_size=5, max_steps=3).run(tokens, ids)  # steps 2 and 3 replay CUDA graphs
        b = Solver(ort, batch_size=5, max_steps=3).run(tokens, ids)
        assert (a.preds == b.preds).mean() > (0.999 if precision == "fp32" else 0.98)
