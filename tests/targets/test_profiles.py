"""Target profiles: every packaged profile loads and says what the issue requires; bad profiles are refused."""

from __future__ import annotations

import pytest
import yaml

from trm_edge.errors import TargetError
from trm_edge.targets import TARGETS_DIR, get_op_list, get_target, list_targets, load_target

# Per-target expectations; the guard test below fails when a target is added without an entry here.
EXPECTED = {
    "jetson": ("jetson", "tensorrt-8.5", "int8"),
    "jetson-xavier": ("jetson", "tensorrt-8.5", "int8"),
    "jetson-orin-nano": ("jetson", "tensorrt-10.3", "int8"),
    "jetson-orin-nx": ("jetson", "tensorrt-10.3", "int8"),
    "jetson-agx-orin": ("jetson", "tensorrt-10.3", "int8"),
    "jetson-thor": ("jetson", "tensorrt-10.3", "int8"),
    "nvidia-gpu": ("nvidia-gpu", "tensorrt-10.3", "int8"),
    "cpu": ("cpu", "onnxruntime", "uint8"),
    "x86-avx512": ("cpu", "onnxruntime", "uint8"),
    "x86-avx2": ("cpu", "onnxruntime", "uint8"),
    "arm64": ("cpu", "onnxruntime", "int8"),
}


def test_every_registered_target_has_expectations():
    assert sorted(t.name for t in list_targets()) == sorted(EXPECTED)
    assert [t.name for t in list_targets()][:2] == ["jetson", "cpu"]  # the family defaults come first


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_profile(name):
    target = get_target(name)
    family, op_list, activations = EXPECTED[name]
    assert (target.family, target.op_list.name, target.int8.activations) == (family, op_list, activations)
    assert target.opset <= target.op_list.max_opset and target.notes and target.memory_budget_mb > 0
    assert "fp32" in target.precisions and "int8" in target.precisions
    if "tensorrt" in target.runtimes:
        assert target.opset <= 17  # JetPack 5's TensorRT 8.5 parser stops at opset 17
        assert target.engine_build_on_device and target.tensorrt["version"]
        assert target.int8.symmetric_activations and target.int8.symmetric_weights and target.int8.per_channel
        assert "fp16" in target.precisions
    else:
        assert target.runtimes[0] == "onnxruntime" and not target.engine_build_on_device
        # OpenVINO is offered where it was measured (x86; issue 13), after onnxruntime
        assert ("openvino" in target.runtimes) == name.startswith("x86-")
        assert target.int8.weights == "int8" and target.int8.per_channel
    assert target.to_dict()["name"] == name


def test_int8_formats_follow_the_measurements_and_guidance():
    assert get_target("x86-avx512").int8.reduce_range is False  # VNNI: no saturation
    assert get_target("x86-avx2").int8.reduce_range is True  # vpmaddubsw saturates 16-bit sums
    assert get_target("jetson-orin-nx").tensorrt["dla_cores"] == 2
    assert get_target("jetson-orin-nano").tensorrt["dla_cores"] == 0


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(TargetError) as raised:
        get_target("jetson-nano-2019")
    assert "'jetson'" in str(raised.value) and "'x86-avx512'" in str(raised.value)


def test_op_lists():
    trt85, trt103, ort = get_op_list("tensorrt-8.5"), get_op_list("tensorrt-10.3"), get_op_list("onnxruntime")
    assert trt85.allows("ReduceMean", "", 17) and trt85.allows("Reciprocal", "", 17)
    assert not trt85.allows("LayerNormalization", "", 17) and trt103.allows("LayerNormalization", "", 17)
    assert not trt85.allows("RMSNormalization", "", 17) and not trt85.allows("MatMulInteger", "", 17)
    assert not trt85.allows("MatMul", "com.microsoft", 17)
    assert trt85.ops < trt103.ops
    assert ort.allows("MatMulInteger", "", 17) and ort.allows("QGemm", "com.microsoft", 17)
    assert not ort.allows("NoSuchOp", "", 17) and not ort.allows("RMSNormalization", "", 17)
    with pytest.raises(TargetError, match="known op lists"):
        get_op_list("tensorrt-7")


DROP = object()


def _write(tmp_path, **changes):
    data = yaml.safe_load((TARGETS_DIR / "x86-avx512.yaml").read_text())
    data.update(changes)
    data = {k: v for k, v in data.items() if v is not DROP}
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("changes, message", [
    ({"colour": "red"}, "unknown field"),
    ({"opset": 99}, "outside the supported range"),
    ({"opset": "17"}, "must be an integer"),
    ({"op_list": "tensorrt-7"}, "unknown op_list"),
    ({"precisions": ["fp32", "int4"]}, "unknown value"),
    ({"precisions": ["fp32"]}, "'int8:' section"),
    ({"runtimes": ["tensorrt"]}, "'tensorrt:' section"),
    ({"family": "fpga"}, "not one of"),
    ({"engine_build_on_device": "yes"}, "true or false"),
    ({"memory_budget_mb": -1}, "must be positive"),
    ({"description": DROP}, "missing field"),
    ({"int8": {"format": "qdq"}}, "missing field"),
    ({"speed": {"how": "here", "relative": {"tflite int8": 2.0}}}, "not 'RUNTIME PRECISION'"),
    ({"speed": {"how": "here", "relative": {"onnxruntime int4": 2.0}}}, "not 'RUNTIME PRECISION'"),
    ({"speed": {"how": "here", "relative": {"onnxruntime int8": 0}}}, "must be a positive number"),
    ({"speed": {"relative": {"onnxruntime int8": 2.0}}}, "missing field"),
])
def test_bad_profiles_are_refused(tmp_path, changes, message):
    with pytest.raises(TargetError, match=message):
        load_target(_write(tmp_path, **changes))


def test_measured_speed_ranks_the_runtimes_per_precision():
    """x86-avx512 was measured (benchmarks/cpu_runtimes.sh): OpenVINO first for float32 and INT8 bundles, INT8 on
    OpenVINO the fastest way overall; an unmeasured target keeps its listed order."""
    target = get_target("x86-avx512")
    assert target.ranking("fp32") == target.ranking("int8") == ("openvino", "onnxruntime")
    assert target.fastest()[:2] == ("openvino", "int8") and target.to_dict()["speed"]["how"]
    unmeasured = get_target("x86-avx2")
    assert unmeasured.ranking("int8") == unmeasured.runtimes and unmeasured.fastest() is None


def test_a_custom_profile_loads(tmp_path):
    target = load_target(_write(tmp_path, name="my-box", memory_budget_mb=None))
    assert target.name == "my-box" and target.memory_budget_mb is None


def test_tensorrt_targets_cannot_exceed_their_parser(tmp_path):
    path = _write(tmp_path, op_list="tensorrt-8.5", opset=18)
    with pytest.raises(TargetError, match=r"above what op list 'tensorrt-8\.5' parses"):
        load_target(path)


def test_every_jetson_profile_says_what_its_jetpack_ships():
    """The device install (Python, CUDA for cuda-python, TensorRT) follows the JetPack: each Jetson profile
    names all three, and those on JetPack 5 promise Python 3.8."""
    jetsons = [t for t in list_targets() if t.family == "jetson"]
    assert len(jetsons) >= 5
    for target in jetsons:
        trt = target.tensorrt
        assert trt["jetpack"] and trt["cuda"] and trt["python"], target.name
        if "5." in str(trt["jetpack"]):
            assert "3.8" in str(trt["python"]) and "11.4" in str(trt["cuda"]), target.name
