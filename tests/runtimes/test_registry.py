"""The runtime registry: names, aliases, what to install, defaults per model source."""

from __future__ import annotations

import sys

import pytest

from trm_edge.errors import RuntimeUnavailableError
from trm_edge.runtimes import RUNTIMES, available_runtimes, get_runtime, open_runtime, open_source
from trm_edge.runtimes.registry import parse_runtime_spec
from trm_edge.runtimes.sources import default_runtime

# Where each registered runtime is tested; the guard below fails when a runtime is added untested.
TESTED_IN = {
    "onnxruntime": "test_parity.py (teacher-forced vs torch on every tiny config), test_cli.py",
    "torch": "test_solver.py (solver == model.predict), test_parity.py",
    "tensorrt": "test_trt.py (buffer logic on a numpy CUDA stand-in; real engines under -m gpu)",
    "openvino": "test_parity.py (teacher-forced vs torch on every tiny config), test_openvino.py",
}


# Where each parity claim (RuntimeEntry.parity: the bundle precisions a runtime may be picked by default for) is
# tested; the guard fails on a claim without a test.
PARITY_TESTED_IN = {
    ("onnxruntime", "fp32"): "test_parity.py (teacher-forced vs torch, every tiny config)",
    ("onnxruntime", "fp16"): "tests/quantize/test_pipeline.py (every preset family quantizes and verifies)",
    ("onnxruntime", "int8"): "tests/quantize/test_pipeline.py (every preset family, both INT8 formats)",
    ("openvino", "fp32"): "test_parity.py (teacher-forced vs torch, every tiny config), test_openvino.py",
    ("openvino", "int8"): "tests/quantize/test_pipeline.py (verify against float32 through OpenVINO, every family)",
    ("tensorrt", "fp32"): "test_trt.py (fake CUDA; a real engine verified under -m gpu)",
    ("tensorrt", "fp16"): "test_trt.py (-m gpu: an FP16 engine verified on the golden I/O)",
    ("tensorrt", "int8"): "benchmarks/gpu_check.py --int8-bundle (an INT8 engine verified; needs a GPU)",
    ("torch", "fp32"): "test_solver.py, test_parity.py (the reference)",
}


def test_every_registered_runtime_is_tested():
    assert set(RUNTIMES) == set(TESTED_IN)
    assert {(name, p) for name, entry in RUNTIMES.items() for p in entry.parity} == set(PARITY_TESTED_IN)


def test_the_default_is_the_fastest_measured_runtime_that_holds_parity(bundles, monkeypatch):
    """x86-avx512's profile measured OpenVINO fastest for float32 and INT8 bundles: it is the default where it is
    installed and can be verified; otherwise the next in the ranking."""
    _, bundle = bundles("mlp")
    source = open_source(bundle)
    monkeypatch.setattr(source, "target", "x86-avx512")
    assert default_runtime(source) == "openvino"
    monkeypatch.setattr(source, "precision", "int8")
    golden = source.bundle.manifest.golden
    monkeypatch.setitem(golden, "keys", [*golden["keys"], "fp32.logits"])  # a quantized bundle's float32 reference
    assert default_runtime(source) == "openvino"
    monkeypatch.setitem(golden, "keys", [k for k in golden["keys"] if not k.startswith("fp32.")])
    assert default_runtime(source) == "onnxruntime"  # older INT8 bundles: nothing to verify other kernels by
    monkeypatch.setattr(source, "precision", "fp32")
    monkeypatch.setitem(sys.modules, "openvino", None)  # not installed
    assert default_runtime(source) == "onnxruntime"
    monkeypatch.setattr(source, "target", "x86-avx2")  # not measured: the listed order
    assert default_runtime(source) == "onnxruntime"


def test_names_aliases_and_devices():
    assert parse_runtime_spec("ort") == ("onnxruntime", None)
    assert parse_runtime_spec("onnxruntime:CUDA") == ("onnxruntime", "cuda")
    assert parse_runtime_spec("trt") == ("tensorrt", None)
    assert parse_runtime_spec("pytorch:cpu") == ("torch", "cpu")
    assert parse_runtime_spec("ov:CPU:bf16") == ("openvino", "cpu:bf16")
    with pytest.raises(RuntimeUnavailableError,
                       match=r"unknown runtime 'tflite'.*'onnxruntime', 'tensorrt', 'openvino', 'torch'"):
        get_runtime("tflite")


def test_missing_package_names_what_to_install_and_what_is_available(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # importlib finds nothing: "not installed"
    assert "tensorrt" not in available_runtimes()
    with pytest.raises(RuntimeUnavailableError) as error:
        get_runtime("tensorrt")
    message = str(error.value)
    assert "pip install 'trm-edge[tensorrt]'" in message
    assert "available runtimes: 'onnxruntime', 'openvino', 'torch'" in message
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(RuntimeUnavailableError, match="pip install onnxruntime"):
        get_runtime("onnxruntime")


def test_importing_the_runtimes_pulls_in_no_backend():
    import subprocess

    code = ("import sys, trm_edge.runtimes, trm_edge.runtimes.solver, trm_edge.commands.runtime, trm_edge.cli; "
            "print([m for m in ('torch', 'onnxruntime', 'tensorrt', 'openvino', 'onnx', 'matplotlib') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_defaults_per_source(bundles, tmp_path, monkeypatch):
    from trm_edge.trm.checkpoint import save_checkpoint

    model, bundle = bundles("mlp")
    source = open_source(bundle)
    assert source.kind == "bundle" and default_runtime(source) == "onnxruntime"
    checkpoint = save_checkpoint(model, tmp_path / "ckpt", task="sudoku")
    assert default_runtime(open_source(checkpoint)) == "torch"
    with pytest.raises(RuntimeUnavailableError, match="runs checkpoints, not the bundle"):
        open_runtime(bundle, "torch")
    with pytest.raises(RuntimeUnavailableError, match="runs bundles, not the checkpoint"):
        open_runtime(checkpoint, "onnxruntime")
    # A checkpoint on a bundle runtime is exported to a temporary CPU bundle first (host side).
    import shutil

    import trm_edge.export
    from trm_edge.export.temporary import export_temporary_bundle, needs_bundle

    calls = []

    def export_bundle(model, output, *, target, task):  # stands in for the export tested in tests/export
        calls.append((target, task, model.config == source.config))
        shutil.copytree(bundle, output)
        return output

    monkeypatch.setattr(trm_edge.export, "export_bundle", export_bundle, raising=False)
    checkpoint_source = open_source(checkpoint)
    assert needs_bundle(checkpoint_source, "onnxruntime") and not needs_bundle(checkpoint_source, "torch")
    runtime = open_runtime(export_temporary_bundle(checkpoint_source), "onnxruntime")
    assert runtime.source.kind == "bundle" and runtime.name == "onnxruntime"
    assert calls == [("cpu", "sudoku", True)]


def test_jetson_bundle_falls_back_to_onnxruntime_without_an_engine(bundles, monkeypatch):
    _, bundle = bundles("mlp")
    source = open_source(bundle)
    monkeypatch.setattr(source, "target", "jetson")  # runtimes: [tensorrt, onnxruntime]
    assert default_runtime(source) == "onnxruntime"  # no engine built (and no TensorRT here)


@pytest.mark.parametrize(("device", "available", "expected"), [
    ("cpu", ["CPUExecutionProvider"], ["CPUExecutionProvider"]),
    (None, ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    ("tensorrt", ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
     ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]),
])
def test_onnxruntime_providers_end_with_cpu_once(device, available, expected):
    from trm_edge.runtimes.ort import select_providers

    assert select_providers(device, available) == expected
