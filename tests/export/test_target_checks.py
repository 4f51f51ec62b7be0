"""Opset and op-list checks of exported graphs against every target profile."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from trm_edge.export import passes
from trm_edge.targets import get_target, list_targets


@pytest.mark.parametrize("target", [t.name for t in list_targets()])
def test_exported_graphs_fit_every_target(target, bundle_dir):
    profile = get_target(target)
    for name in ("mlp", "rope", "many-puzzles"):
        graph = onnx.load(str(bundle_dir(name) / "step.onnx"))
        assert passes.check_target(graph, profile) == [], (name, target)


def _graph(nodes, *, opset=17, initializers=()):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_unsupported_ops_and_opsets_are_named():
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [4], [1.0] * 4)
    layer_norm = _graph([helper.make_node("LayerNormalization", ["x", "scale"], ["y"])], initializers=[scale])
    problems = passes.check_target(layer_norm, get_target("jetson"))
    assert problems and "LayerNormalization" in problems[0] and "tensorrt-8.5" in problems[0]
    assert passes.check_target(layer_norm, get_target("jetson-orin-nano")) == []
    assert passes.check_target(layer_norm, get_target("cpu")) == []
    at_18 = _graph([helper.make_node("Relu", ["x"], ["y"])], opset=18)
    assert any("opset 18" in p for p in passes.check_target(at_18, get_target("jetson")))
    contrib = _graph([helper.make_node("FusedMatMul", ["x", "x"], ["y"], domain="com.microsoft")])
    assert passes.check_target(contrib, get_target("jetson"))
    assert passes.check_target(contrib, get_target("x86-avx512")) == []


def test_tensorrt_input_restrictions():
    axes = helper.make_node("Shape", ["x"], ["axes"], start=0, end=1)
    dynamic = _graph([axes, helper.make_node("Unsqueeze", ["x", "axes"], ["y"])])
    problems = passes.check_target(dynamic, get_target("jetson"))
    assert any("Unsqueeze" in p and "initializer" in p for p in problems)
    zero = helper.make_tensor("zp", TensorProto.INT8, [], [3])
    one = helper.make_tensor("s", TensorProto.FLOAT, [], [0.1])
    qdq = _graph([helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"])], initializers=[zero, one])
    assert sum("zero point must be an int8 0" in p for p in passes.check_target(qdq, get_target("jetson"))) == 2
    assert passes.check_target(qdq, get_target("cpu")) == []
    # The parser also wants the zero point given, as int8, and every scale positive.
    unsigned = helper.make_tensor("uzp", TensorProto.UINT8, [], [0])
    bad_scale = helper.make_tensor("neg", TensorProto.FLOAT, [2], [0.1, 0.0])
    lax = _graph([helper.make_node("QuantizeLinear", ["x", "s"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "neg", "uzp"], ["y"])],
                 initializers=[one, unsigned, bad_scale])
    problems = passes.check_target(lax, get_target("jetson-orin-nano"))
    assert any("QuantizeLinear" in p and "zero point must be given" in p for p in problems)
    assert any("DequantizeLinear" in p and "int8 0 (is uint8" in p for p in problems)
    assert any("DequantizeLinear" in p and "scale must be a positive constant" in p for p in problems)
    assert len(problems) == 3
