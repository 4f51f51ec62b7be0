"""OpenVINO on the bundle's own ONNX: float32 unless asked, golden I/O verified, INT8 and static-batch bundles,
one-line errors. Step-by-step parity with torch is in test_parity.py."""

from __future__ import annotations

import numpy as np
import pytest

from tests.runtimes.conftest import random_tokens
from trm_edge.errors import RuntimeUnavailableError
from trm_edge.runtimes import Solver, open_runtime, open_source
from trm_edge.runtimes.openvino import parse_device
from trm_edge.runtimes.verify import verify_golden


def test_devices_and_precisions():
    assert parse_device(None) == ("CPU", "f32")  # never the CPU plugin's silent bf16
    assert parse_device("cpu:bf16") == ("CPU", "bf16")
    assert parse_device("gpu") == ("GPU", None)
    with pytest.raises(RuntimeUnavailableError, match=r"precision 'fp8'.*'f32', 'bf16'"):
        parse_device("cpu:fp8")


def test_golden_io_verifies_and_the_solver_agrees_with_onnxruntime(bundles):
    _, bundle = bundles("many-puzzles")
    source = open_source(bundle)
    with open_runtime(source, "openvino") as ov, open_runtime(source, "onnxruntime") as ort:
        assert ov.describe()["inference_precision"] == "f32"
        report = verify_golden(ov, source.bundle.golden(), precision="fp32")
        assert report.ok, report.lines
        tokens = random_tokens(source.config, 10, seed=2)
        ids = np.arange(10) % source.config.num_puzzle_identifiers
        a = Solver(ov, batch_size=4, max_steps=2, halt=True).run(tokens, ids)
        b = Solver(ort, batch_size=4, max_steps=2, halt=True).run(tokens, ids)
    assert (a.preds == b.preds).mean() > 0.995 and (a.steps == b.steps).mean() > 0.9


def test_static_batch_and_unknown_device(bundles):
    _, static = bundles("learned", batch=4)
    with open_runtime(static, "openvino") as ov:
        assert ov.fixed_batch == 4
        out = Solver(ov, batch_size=16, max_steps=1, halt=False).run(random_tokens(ov.config, 6, seed=5))
        assert out.preds.shape[0] == 6
    with pytest.raises(RuntimeUnavailableError, match="no NPU device here"):
        open_runtime(static, "openvino:npu").load()


def test_int8_bundle_is_as_close_to_float32_as_onnxruntimes_int8(bundles, tmp_path):
    """OpenVINO runs the Q/DQ graph with its own int8 kernels, which round differently from onnxruntime's: the
    bundle's golden I/O (onnxruntime's int8 outputs) is not its reference. What must hold is that one step is
    no further from the float32 step than onnxruntime's int8 step is."""
    from trm_edge.quantize import QuantizeOptions, quantize_bundle

    _, bundle = bundles("mlp")
    result = quantize_bundle(bundle, tmp_path / "int8", QuantizeOptions(precision="int8", calib_task="sudoku",
                                                                         calib_n=16, eval_n=0, report=False))
    golden = open_source(bundle).bundle.golden()
    feeds = {k: golden[k] for k in ("inputs", "z_H", "z_L")}
    with open_runtime(bundle, "onnxruntime") as f32, open_runtime(result.output, "onnxruntime") as ort, \
            open_runtime(result.output, "openvino") as ov:
        ref, theirs, ours = f32.step(feeds), ort.step(feeds), ov.step(feeds)
    for name in ("z_H_next", "z_L_next", "logits"):
        scale = np.abs(ref[name]).max()
        ours_error = np.abs(ours[name] - ref[name]).max() / scale
        theirs_error = np.abs(theirs[name] - ref[name]).max() / scale
        assert 0 < ours_error <= 1.5 * theirs_error + 0.02, (name, ours_error, theirs_error)


def test_verify_from_the_command_line(bundles):
    from typer.testing import CliRunner

    from trm_edge.cli import app

    _, bundle = bundles("mlp")
    result = CliRunner().invoke(app, ["verify", str(bundle), "--runtime", "openvino"])
    assert result.exit_code == 0, result.output
    assert "PASS on openvino" in result.output
