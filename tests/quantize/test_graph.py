"""Graph passes around quantization: exact pre-passes, node groups and --exclude, the float-consumer post-pass."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest

from tests.quantize.conftest import native_x86_target
from trm_edge.errors import QuantizationError


def _session(model: onnx.ModelProto, *, optimize: bool = True):
    """onnxruntime on ``model``; ``optimize=False`` runs Q/DQ as written (the format's reference semantics: the
    fused int8 kernels round differently, and random-weight TRM amplifies that within one step)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _feeds(cfg, batch: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (batch, cfg.total_len, cfg.hidden_size)
    return {"inputs": rng.integers(1, cfg.vocab_size, (batch, cfg.seq_len), dtype=np.int32),
            "z_H": rng.standard_normal(shape, dtype=np.float32), "z_L": rng.standard_normal(shape, dtype=np.float32)}


def test_prepare_is_exact_keeps_weights_shared_and_lets_onnxruntime_fuse(bundle, tmp_path):
    from trm_edge.bundle.store import load_bundle
    from trm_edge.export.passes import check_weights_once
    from trm_edge.quantize.graph import node_groups, prepare

    b = load_bundle(bundle())
    original = onnx.load(str(b.step_graph_path))
    prepared, report = prepare(onnx.load(str(b.step_graph_path)))
    ops = collections.Counter(n.op_type for n in prepared.graph.node)
    before = collections.Counter(n.op_type for n in original.graph.node)
    cfg = b.config
    calls = cfg.H_cycles * (cfg.L_cycles + 1)  # applications of the shared block per step
    assert report["matmuls_split"] == cfg.L_layers * 2 * calls  # gate_up of mlp_t and mlp at every call site
    assert ops["Slice"] == before["Slice"] - 2 * report["matmuls_split"]  # the logits slice stays
    assert ops["MatMul"] == before["MatMul"] + report["matmuls_split"]
    assert report["norms_for_fusion"] == cfg.L_layers * 2 * calls
    assert not check_weights_once(prepared)
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(prepared.SerializeToString(), so, providers=["CPUExecutionProvider"])
    fused = collections.Counter(n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node)
    assert fused["SimplifiedLayerNormalization"] == report["norms_for_fusion"] and not fused["Split"]
    groups = node_groups(prepared, ("MatMul", "Gemm"))
    block = [g for g in groups if "/L_level/" in g.name]
    assert len(block) == cfg.L_layers * 6 and all(len(g.nodes) == calls for g in block)
    feeds = _feeds(cfg)
    for ref, got in zip(_session(original).run(None, feeds), _session(prepared).run(None, feeds), strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_exclude_resolves_nodes_op_types_groups_and_globs(calibrated):
    from trm_edge.quantize.graph import node_groups, resolve_excludes

    c = calibrated()
    model, ops = c["prepared"], c["spec"].quantize_ops
    groups = node_groups(model, ops)
    down = next(g for g in groups if g.name.endswith("layers.1/mlp/down_proj/MatMul"))
    assert resolve_excludes(model, [down.name], ops) == list(down.nodes)  # a group: every call site
    assert resolve_excludes(model, [down.nodes[3]], ops) == [down.nodes[3]]  # one call site
    assert resolve_excludes(model, ["*lm_head*"], ops) == ["/lm_head/MatMul"]
    assert len(resolve_excludes(model, ["MatMul"], ops)) == sum(len(g.nodes) for g in groups if g.op_type == "MatMul")
    with pytest.raises(QuantizationError, match=r"matches no quantizable node.*groups"):
        resolve_excludes(model, ["/nope/MatMul"], ops)


def test_only_gemm_inputs_are_quantized(calibrated):
    """The residual stream, norms and the next step's state stay float: every DequantizeLinear of an activation
    feeds only quantized GEMMs, and no graph output comes out of a DequantizeLinear."""
    from trm_edge.quantize.backends import quantize_int8
    from trm_edge.quantize.formats import Backend, Method

    c = calibrated(native_x86_target())
    model, info = quantize_int8(c["prepared"], c["spec"], backend=Backend.ORT, method=Method.MINMAX,
                                ranges=c["ranges"].merged())
    assert info["float_consumers_rewired"] > 0
    inits = {t.name for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    users = collections.defaultdict(list)
    for node in model.graph.node:
        for name in node.input:
            users[name].append(node)
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] not in inits:
            assert {u.op_type for u in users[node.output[0]]} <= {"MatMul", "Gemm"}, node.name
    for out in model.graph.output:
        assert producers[out.name].op_type != "DequantizeLinear", out.name
    # the next step's state is float: one quantized step moves z_H by rounding in the GEMMs only
    feeds = c["trajectories"].feeds(1)
    ref = _session(c["prepared"]).run(None, feeds)
    got = _session(model).run(None, feeds)
    assert np.isfinite(got[0]).all() and np.abs(got[0] - ref[0]).max() < np.abs(ref[0]).max()


def test_retyping_activations_is_exact(calibrated):
    """int8 activations with zero point z are uint8 ones with z + 128 (NNCF writes the former, VNNI wants the
    latter)."""
    from trm_edge.quantize.backends import quantize_int8
    from trm_edge.quantize.formats import Backend, Method
    from trm_edge.quantize.graph import retype_activations, zero_points

    c = calibrated()
    model, _ = quantize_int8(c["prepared"], c["spec"], backend=Backend.ORT, method=Method.MINMAX,
                             ranges=c["ranges"].merged())
    retyped = onnx.ModelProto()
    retyped.CopyFrom(model)
    assert retype_activations(retyped, "int8") > 0
    acts = [z for name, op, z in zero_points(retyped) if op == "QuantizeLinear"]
    assert acts and all(z.dtype == np.int8 for z in acts)
    feeds = c["trajectories"].feeds(2)
    reference = _session(model, optimize=False).run(None, feeds)
    for a, b in zip(reference, _session(retyped, optimize=False).run(None, feeds), strict=True):
        np.testing.assert_array_equal(a, b)


def test_tensorrt_format_gives_quantized_matmuls_2d_operands_without_changing_the_function(calibrated):
    """TensorRT quantizes MatMul weights per channel only for 2-D products: in its format every weight MatMul
    reads a [rows, K] activation, and the graph computes exactly what the unflattened one does."""
    import dataclasses

    from trm_edge.quantize.backends import quantize_int8
    from trm_edge.quantize.formats import Backend, Method
    from trm_edge.quantize.graph import quantizable_nodes

    c = calibrated("jetson-orin-nano")
    assert c["spec"].matmul_2d
    args = {"backend": Backend.ORT, "method": Method.MINMAX, "ranges": c["ranges"].merged()}
    model, info = quantize_int8(c["prepared"], c["spec"], **args)
    plain, plain_info = quantize_int8(c["prepared"], dataclasses.replace(c["spec"], matmul_2d=False), **args)
    weight_matmuls = len(quantizable_nodes(c["prepared"], ("MatMul",)))
    assert info["matmuls_made_2d"] == weight_matmuls and plain_info["matmuls_made_2d"] == 0
    inferred = onnx.shape_inference.infer_shapes(model).graph
    rank = {v.name: len(v.type.tensor_type.shape.dim) for v in inferred.value_info}
    inits = {t.name for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.op_type == "MatMul" and producers.get(node.input[1]) and producers[node.input[1]].input[0] in inits:
            assert rank[node.input[0]] == 2, node.name
    feeds = c["trajectories"].feeds(1)
    want = _session(plain, optimize=False).run(None, feeds)
    for ref, got in zip(want, _session(model, optimize=False).run(None, feeds), strict=True):
        np.testing.assert_array_equal(got, ref)
