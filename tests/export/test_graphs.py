"""Graph builders and passes: weights once, primitive ops, opsets, batch axes, unrolled graph, validation
failures, external data. (Step parity at every step: test_bundle.py.)"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.conftest import TINY_CONFIGS
from tests.export.conftest import TASKS, make_model
from trm_edge.bundle.store import load_bundle
from trm_edge.errors import ValidationError
from trm_edge.export import passes
from trm_edge.export.graphs import build_graph, export_step_onnx
from trm_edge.export.samples import puzzle_tokens
from trm_edge.export.validate import ort_session, validate_step_graph, validate_unrolled_graph
from trm_edge.targets import get_target


def _tokens(name: str, count: int = 2) -> np.ndarray:
    cfg = TINY_CONFIGS[name]
    return puzzle_tokens(TASKS[name], cfg.seq_len, cfg.vocab_size, count, seed=1)


@pytest.mark.parametrize("name", ["mlp", "rope"])
def test_weights_are_stored_once(name, bundle_dir):
    model = make_model(name)
    manifest = load_bundle(bundle_dir(name)).manifest.to_dict()
    cleanup = manifest["graphs"]["step"]["cleanup"]
    assert cleanup["identities_bypassed"] > 0  # the exporter shares weights through Identity nodes ...
    graph = onnx.load(str(bundle_dir(name) / "step.onnx"))
    assert passes.check_weights_once(graph) == []  # ... and the clean-up keeps one copy of each
    params = sum(p.numel() * 4 for n, p in model.named_parameters() if not n.startswith("puzzle_emb"))
    rope = sum(b.numel() * 4 for b in model.buffers()) if name == "rope" else 0
    assert passes.graph_stats(graph).initializer_bytes <= params + rope + 64 * 1024
    assert cleanup["after"]["nodes"] < cleanup["before"]["nodes"]


def test_rms_norm_is_primitive_ops_within_tensorrt_8_5(bundle_dir):
    graph = onnx.load(str(bundle_dir("learned", "jetson") / "step.onnx"))
    ops = {n.op_type for n in graph.graph.node}
    assert not ops & {"RMSNormalization", "LayerNormalization", "SimplifiedLayerNormalization"}
    assert {"ReduceMean", "Sqrt", "Div"} <= ops
    assert passes.default_opset(graph) == 17
    assert passes.check_target(graph, get_target("jetson")) == []
    reduce_means = [n for n in graph.graph.node if n.op_type == "ReduceMean"]
    assert all(len(n.input) == 1 and any(a.name == "axes" for a in n.attribute) for n in reduce_means)


@pytest.mark.slow
def test_opset_18_takes_reduce_mean_axes_as_input(tmp_path):
    model = make_model("learned")
    built = build_graph(model, kind="step", opset=18)
    assert passes.default_opset(built.model) == 18
    reduce_means = [n for n in built.model.graph.node if n.op_type == "ReduceMean"]
    assert reduce_means and all(len(n.input) == 2 for n in reduce_means)
    passes.save_model(built.model, tmp_path / "step.onnx")
    assert validate_step_graph(model, tmp_path / "step.onnx", tokens=_tokens("learned")).passed
    assert any("opset 18" in p for p in passes.check_target(built.model, get_target("jetson")))


def test_static_and_dynamic_batch(tmp_path):
    model = make_model("learned")
    static = export_step_onnx(model, tmp_path / "static.onnx", batch=3)
    dims = [d.dim_value for d in onnx.load(str(static)).graph.input[1].type.tensor_type.shape.dim]
    assert dims == [3, model.config.total_len, model.config.hidden_size]
    assert validate_step_graph(model, static, tokens=_tokens("learned", 3), random_states=3).passed
    dynamic = export_step_onnx(model, tmp_path / "dynamic.onnx")
    first = onnx.load(str(dynamic)).graph.input[1].type.tensor_type.shape.dim[0]
    assert first.dim_param == "batch"
    session = ort_session(dynamic)
    for batch in (1, 5):
        z = np.zeros((batch, model.config.total_len, model.config.hidden_size), np.float32)
        out = session.run(None, {"inputs": _tokens("learned", batch), "z_H": z, "z_L": z})
        assert out[2].shape == (batch, model.config.seq_len, model.config.vocab_size)


def test_unrolled_graph_equals_looping_the_step_graph(tmp_path):
    model = make_model("mlp")
    step = export_step_onnx(model, tmp_path / "step.onnx")
    built = build_graph(model, kind="unrolled")
    assert passes.check_weights_once(built.model) == []
    step_weights = passes.graph_stats(onnx.load(str(step))).initializer_bytes
    assert built.cleanup.after.initializer_bytes <= step_weights + 4096  # not once per step
    passes.save_model(built.model, tmp_path / "unrolled.onnx")
    tokens = _tokens("mlp", 3)
    initial = (model.H_init.numpy(), model.L_init.numpy())
    report = validate_unrolled_graph(tmp_path / "unrolled.onnx", step, tokens=tokens, initial_state=initial,
                                     steps=model.config.halt_max_steps, config=model.config)
    assert report.passed, report.lines()
    out = ort_session(tmp_path / "unrolled.onnx").run(None, {"inputs": tokens})
    assert out[2].shape == (3, model.config.halt_max_steps)


@pytest.mark.slow
def test_unrolled_graph_with_puzzle_table(tmp_path):
    model = make_model("many-puzzles")
    step = export_step_onnx(model, tmp_path / "step.onnx")
    built = build_graph(model, kind="unrolled")
    passes.save_model(built.model, tmp_path / "unrolled.onnx")
    puzzle = model.puzzle_emb.weights[[1, 2]].detach().numpy()
    report = validate_unrolled_graph(tmp_path / "unrolled.onnx", step, tokens=_tokens("many-puzzles"),
                                     initial_state=(model.H_init.numpy(), model.L_init.numpy()),
                                     steps=model.config.halt_max_steps, puzzle_embedding=puzzle,
                                     config=model.config)
    assert report.passed, report.lines()


def test_validation_reports_every_failing_output(bundle_dir):
    path = bundle_dir("learned") / "step.onnx"
    other = make_model("learned", seed=1)  # a different network behind the same graph signature
    report = validate_step_graph(other, path, tokens=_tokens("learned"), steps=2)
    assert not report.passed
    lines = report.lines()
    assert sum(line.startswith("✗") for line in lines) >= 3 and len(lines) == 4
    with pytest.raises(ValidationError) as raised:
        report.raise_for_failures()
    message = str(raised.value)
    assert all(name in message for name in ("z_H_next", "z_L_next", "logits"))
    assert len(raised.value.checks) == 4


def test_external_data_for_large_graphs(bundle_dir, tmp_path):
    graph = onnx.load(str(bundle_dir("learned") / "step.onnx"))
    files = passes.save_model(graph, tmp_path / "step.onnx", external_data_threshold=0)
    assert [f.name for f in files] == ["step.onnx", "step.onnx.data"]
    assert files[1].stat().st_size > files[0].stat().st_size
    passes.check_model(files[0])
    z = np.zeros((1, 36, 32), np.float32)
    out = ort_session(files[0]).run(None, {"inputs": _tokens("learned", 1), "z_H": z, "z_L": z})
    assert np.isfinite(out[2]).all()


@pytest.mark.slow
def test_clean_up_without_onnxslim_still_stores_weights_once(tmp_path):
    """onnxslim is optional: onnx's own passes keep the graph correct, TensorRT-parsable and deduplicated."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; sys.modules['onnxslim'] = None\n"
            "from tests.export.conftest import make_model\n"
            "from trm_edge.export.exporter import export_bundle\n"
            f"export_bundle(make_model('rope'), {str(tmp_path / 'b')!r}, target='jetson', task='sudoku')\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
    manifest = load_bundle(tmp_path / "b").manifest.to_dict()
    assert manifest["graphs"]["step"]["cleanup"]["tool"] == "onnx"
    assert passes.check_weights_once(onnx.load(str(tmp_path / "b" / "step.onnx"))) == []
