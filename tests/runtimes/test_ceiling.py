"""The step's limit on this machine (runtimes/ceiling.py): the model's own GEMMs, the graphs they are timed as,
the cache, the published figure for a GPU module, and what bench and targets print."""

from __future__ import annotations

import json
import platform

import numpy as np
import pytest

from tests.conftest import PRESET_FAMILIES, TINY_CONFIGS
from trm_edge.config import PRESETS, flops_per_step, step_gemms
from trm_edge.machine import cpu_flags


def test_the_5m_models_gemms_are_the_shapes_measured_in_the_issue():
    gemms = {g.name: (g.m, g.k, g.n, g.count) for g in step_gemms(PRESETS["sudoku-extreme-mlp"].model, 16)}
    assert gemms["channel SwiGLU gate+up"] == (1552, 512, 3072, 42)
    assert gemms["channel SwiGLU down"] == (1552, 1536, 512, 42)
    assert gemms["token-mixing gate+up"] == (8192, 97, 1024, 42)
    assert gemms["token-mixing down"] == (8192, 512, 97, 42)
    assert sum(g.flops for g in step_gemms(PRESETS["sudoku-extreme-mlp"].model, 16)) == pytest.approx(410e9, rel=0.01)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_the_gemms_of_a_step_scale_with_the_batch(preset):
    config = PRESETS[preset].model
    assert sum(g.flops for g in step_gemms(config, 3)) == 3 * flops_per_step(config)
    attention = [g for g in step_gemms(config) if not g.weights]
    assert bool(attention) == (not config.mlp_t)  # q @ k^T and weights @ v: activations only


def test_every_preset_family_has_its_gemms_here():
    assert set(PRESET_FAMILIES) == set(PRESETS)


@pytest.mark.parametrize("activations", ["uint8", "int8"])
def test_an_int8_gemm_is_timed_as_the_dequantized_matmul_it_stands_for(activations):
    """The timed graph computes the quantized product: int8 activations dequantized, times the dequantized int8
    weights (the activations' quantization belongs to the op before, as in the step graph)."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from trm_edge.config import Gemm
    from trm_edge.runtimes.ceiling import ORT_TYPES, feeds, gemm_graph

    if activations == "uint8" and not {"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags() and \
            platform.machine() in ("x86_64", "AMD64"):
        pytest.skip("onnxruntime's full-range u8 x s8 kernel saturates its 16-bit sums on x86 without VNNI "
                    "(vpmaddubsw), so its products are not the exact ones this test compares")
    gemm = Gemm("g", 8, 16, 4, 1)
    graph = gemm_graph(gemm, "int8", activations)
    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load_from_string(graph).graph.initializer}
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    x = feeds(gemm, {i.name: ORT_TYPES[i.type] for i in session.get_inputs()})["x"]
    assert x.dtype == np.dtype(activations) and len(np.unique(x)) > 100  # the type's whole range, not one value
    zero = 128 if activations == "uint8" else 0
    expected = (x.astype(np.float32) - zero) * 0.05 @ (weights["w_q"].astype(np.float32) * weights["w_scale"])
    np.testing.assert_allclose(session.run(None, {"x": x})[0], expected, rtol=1e-4, atol=1e-4)


def test_bf16_products_are_timed_by_openvino_at_its_bf16_hint(tmp_path):
    """Under openvino:cpu:bf16 the float products count as bf16, which only OpenVINO times; int8 ones stay int8."""
    pytest.importorskip("openvino")
    from trm_edge.runtimes.ceiling import measured_limit

    limit = measured_limit(TINY_CONFIGS["rope"], 2, "int8", threads=1, floats="bf16",
                           cache=tmp_path / "gemm-seconds.json")
    floats = [g for g in limit.gemms if "@" in g.name]
    assert floats and {(g.precision, g.runtime) for g in floats} == {("bf16", "openvino")}
    assert {g.precision for g in limit.gemms if g.name.startswith("channel")} == {"int8"}


def test_the_limit_is_measured_once_then_read_from_the_cache(tmp_path):
    from trm_edge.runtimes.ceiling import measured_limit, read_cache

    config = TINY_CONFIGS["rope"]
    cache = tmp_path / "gemm-seconds.json"
    first = measured_limit(config, 2, "int8", threads=1, cache=cache)
    assert first is not None and first.ms > 0
    assert [g.precision for g in first.gemms if "@" in g.name] == ["fp32", "fp32"]  # activations stay float
    assert {g.precision for g in first.gemms if g.name.startswith("channel")} == {"int8"}
    assert first.ms == pytest.approx(sum(g.ms * g.count for g in first.gemms))
    timed = read_cache(cache)
    assert len(timed) >= len(first.gemms)
    again = measured_limit(config, 2, "int8", threads=1, cache=cache)
    assert again == first and read_cache(cache) == timed  # nothing timed again
    cache.write_text("not json")
    assert read_cache(cache) == {}


def test_a_jetson_limit_is_the_modules_published_rate():
    from trm_edge.runtimes.ceiling import published_limit
    from trm_edge.targets import get_target

    published = get_target("jetson-orin-nano").published_dense
    limit = published_limit(PRESETS["sudoku-extreme-mlp"].model, 16, "int8", published)
    assert limit.ms == pytest.approx(410e9 / 20e12 * 1e3, rel=0.01)  # 410 GOP at 20 dense TOPS
    fp16 = published_limit(PRESETS["sudoku-extreme-mlp"].model, 16, "fp16", published)
    assert fp16.ms == pytest.approx(2 * limit.ms)
    assert limit.source.startswith("published: NVIDIA Jetson Orin Nano")
    assert published_limit(PRESETS["sudoku-extreme-mlp"].model, 16, "fp32", published) is None


def test_bench_prints_the_machine_and_the_steps_share_of_its_limit(bundles, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from trm_edge.cli import app

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    _, bundle = bundles("mlp")
    result = CliRunner().invoke(app, ["bench", str(bundle), "--batch", "2", "--repeats", "2", "--no-halt",
                                      "--runtime", "onnxruntime", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["machine"]["cpu"] and report["machine"]["threads"] >= 1
    row = report["models"][0]["results"][0]
    assert row["limit"]["batch"] == 2 and row["limit"]["source"].startswith("measured here (onnxruntime")
    assert row["percent_of_limit"] == pytest.approx(100 * row["limit"]["ms"] / row["full_step_ms_p50"])
    assert (tmp_path / "trm-edge" / "gemm-seconds.json").is_file()
    plain = CliRunner().invoke(app, ["bench", str(bundle), "--batch", "2", "--repeats", "1", "--no-halt",
                                     "--runtime", "onnxruntime"], catch_exceptions=False)
    assert "% limit" in plain.output and "threads" in plain.output


def test_bench_counts_openvinos_bf16_hint_in_the_limit(bundles, tmp_path, monkeypatch):
    """openvino:cpu:bf16 computes a float bundle's GEMMs in bf16, so its limit is the bf16 products' (else a bf16
    step would beat its own limit)."""
    pytest.importorskip("openvino")
    from typer.testing import CliRunner

    from trm_edge.cli import app

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    _, bundle = bundles("mlp")
    result = CliRunner().invoke(app, ["bench", str(bundle), str(bundle), "--runtime", "openvino", "--runtime",
                                      "openvino:cpu:bf16", "--batch", "2", "--repeats", "1", "--no-halt", "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    f32, bf16 = ({g["precision"] for g in entry["results"][0]["limit"]["gemms"]}
                 for entry in json.loads(result.stdout)["models"])
    assert (f32, bf16) == ({"fp32"}, {"bf16"})


def test_targets_names_this_machines_matrix_instructions():
    from typer.testing import CliRunner

    from trm_edge.cli import app
    from trm_edge.machine import cpu_features

    result = CliRunner().invoke(app, ["targets", "--json"], catch_exceptions=False)
    machine = json.loads(result.stdout)["this_machine"]
    assert machine["features"] == cpu_features() and "cpu" in machine["cpu_targets"]
