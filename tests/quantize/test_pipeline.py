"""bundle -> bundle: formats per target, the manifest record, the parity report, bad input, the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.conftest import PRESET_FAMILIES, TINY_CONFIGS
from tests.quantize.conftest import TASKS, make_model
from trm_edge.errors import OutputExistsError, QuantizationError


def _options(**changes):
    from trm_edge.quantize.pipeline import QuantizeOptions

    return QuantizeOptions(**{"calib_task": "sudoku", "calib_n": 16, "eval_n": 0, "report": False, **changes})


@pytest.fixture(scope="module")
def x86_int8(bundle, tmp_path_factory):
    from trm_edge.quantize.pipeline import quantize_bundle

    out = tmp_path_factory.mktemp("q") / "x86-int8"
    return quantize_bundle(bundle(), out, _options(eval_n=8, report=True, batch_size=4))


def test_x86_bundle_is_u8_activations_s8_per_channel_weights(x86_int8):
    from trm_edge.bundle.store import load_bundle

    b = load_bundle(x86_int8.output)  # every file hashed and verified
    assert b.precision == "int8" and b.manifest.graphs["step"]["precision"] == "int8"
    q = b.manifest.quantization
    assert q["format"]["label"] == "qdq-u8s8-per-channel" and q["backend"]["backend"] == "ort"
    assert q["method"] == "minmax"  # u8 activations' default: nothing met at any depth is clipped
    assert q["calibration"]["steps"] == b.config.halt_max_steps and q["calibration"]["states"] == 16 * 4
    assert q["verify"]["ok"] and q["sizes"]["ratio"] < 0.45  # tiny model: norms/embeddings weigh more than at 5M
    model = onnx.load(str(b.step_graph_path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in matmuls:
        act, weight = (producers[i] for i in node.input)
        assert act.op_type == weight.op_type == "DequantizeLinear", node.name
        assert inits[act.input[2]].dtype == np.uint8 and inits[weight.input[2]].dtype == np.int8
        assert inits[weight.input[0]].dtype == np.int8 and not inits[weight.input[2]].any()  # symmetric weights
        out_channels = inits[weight.input[0]].shape[1]
        assert inits[weight.input[1]].shape == (out_channels,)  # per output channel
        assert next(a.i for a in weight.attribute if a.name == "axis") == 1
    calibration = json.loads((x86_int8.output / "calibration.json").read_text())
    assert all(row["covered"] == 1.0 for row in calibration["coverage_by_step"])


def test_verify_holds_a_quantized_bundle_to_float32_and_refuses_a_runtime_that_drops_zero_points(x86_int8,
                                                                                                  tmp_path):
    """The golden I/O of a quantized bundle carries the float32 outputs; verify passes onnxruntime's own kernels and
    refuses the same graph run with its activation zero points at 0 (what an importer that ignores asymmetric
    quantization computes)."""
    from trm_edge.bundle.store import load_bundle
    from trm_edge.bundle.tolerances import REFERENCE_MARGIN
    from trm_edge.quantize.evaluate import open_runtime
    from trm_edge.runtimes.verify import verify_golden

    b = load_bundle(x86_int8.output)
    golden = b.golden()
    with open_runtime(b) as rt:
        report = verify_golden(rt, golden, precision="int8")
    assert report.ok and report.worst.ratio < 1 / REFERENCE_MARGIN.factor, report.lines
    model = onnx.load(str(b.step_graph_path))
    for tensor in model.graph.initializer:
        value = numpy_helper.to_array(tensor)
        if value.dtype == np.uint8 and value.ndim == 0:  # the activations' zero points
            tensor.CopyFrom(numpy_helper.from_array(np.zeros_like(value), tensor.name))
    onnx.save(model, str(tmp_path / "no-zero-points.onnx"))
    with open_runtime(b, tmp_path / "no-zero-points.onnx", precision="int8") as rt:
        report = verify_golden(rt, golden, precision="int8")
    assert not report.ok, report.lines


def test_parity_report_is_in_the_bundle(x86_int8):
    report = json.loads((x86_int8.output / "parity.json").read_text())
    assert (x86_int8.output / "parity.png").stat().st_size > 10_000
    parity = report["parity"]
    assert parity["puzzles"] == 8 and len(parity["per_step"]) == 4
    assert {"exact", "cell"} <= set(parity["accuracy"]) and "answer_agreement" in parity["answers"]
    assert {"mean_steps", "steps_agreement", "exact"} <= set(parity["halting"])
    assert all(0 <= r["argmax_agreement"] <= 1 for r in parity["per_step"])
    speed = report["throughput"]  # timed on the teacher-forced pass: 2 full batches of 4, 4 steps each
    assert speed["measured"] == "teacher-forced pass" and speed["batch"] == 4 and speed["timed_steps"] == 8
    assert speed["float"]["puzzles_per_s"] > 0 and speed["quantized"]["puzzles_per_s"] > 0
    assert report["sizes"]["step_bytes"] < report["sizes"]["float_step_bytes"]


def test_default_puzzle_counts_scale_with_the_puzzles_tokens():
    """64 calibration and 128 report puzzles of 81 tokens, 16 at a time; a 900-token model (ARC, Maze-Hard) gets
    16 of each (an hour of this CPU otherwise), 4 at a time; an explicit count wins, --no-report evaluates
    nothing."""
    from types import SimpleNamespace

    from trm_edge.quantize.pipeline import default_batch, default_puzzles

    assert [default_puzzles(64, n) for n in (81, 225, 900)] == [64, 23, 16]
    assert [default_puzzles(128, n) for n in (81, 225, 900)] == [128, 46, 16]
    assert [default_batch(n) for n in (81, 225, 900, 5000)] == [16, 16, 4, 1]
    arc = SimpleNamespace(seq_len=900)
    options = _options(calib_n=None, eval_n=None, report=True)
    assert (options.calibration_puzzles(arc), options.evaluation_puzzles(arc), options.batch(arc)) == (16, 16, 4)
    assert _options(batch_size=8).batch(arc) == 8
    assert _options(calib_n=40, eval_n=None, report=False).calibration_puzzles(arc) == 40
    assert _options(eval_n=None, report=False).evaluation_puzzles(arc) == 0


def test_a_report_without_held_out_puzzles_benches_the_throughput(bundle, tmp_path):
    from trm_edge.quantize.pipeline import quantize_bundle

    result = quantize_bundle(bundle(), tmp_path / "q", _options(eval_n=0, report=True, bench_steps=1))
    report = json.loads((result.output / "parity.json").read_text())
    assert "parity" not in report
    speed = report["throughput"]
    assert speed["measured"] == "bench" and speed["batch"] == 16 and speed["quantized"]["step_ms"] > 0


def test_jetson_bundle_has_only_int8_zero_points(bundle, tmp_path):
    """TensorRT's explicit quantization: symmetric int8 everywhere, zero points 0, GEMM biases float, and the
    graph passes the target's TensorRT op-list check."""
    from trm_edge.bundle.store import load_bundle
    from trm_edge.export.passes import check_target
    from trm_edge.quantize.graph import zero_points
    from trm_edge.quantize.pipeline import quantize_bundle
    from trm_edge.targets import get_target

    result = quantize_bundle(bundle("mlp", "jetson-orin-nano"), tmp_path / "jetson", _options())
    model = onnx.load(str(load_bundle(result.output).step_graph_path))
    points = zero_points(model)
    assert len(points) > 50
    assert all(z is not None and z.dtype == np.int8 and not z.any() for _, _, z in points)
    assert not check_target(model, get_target("jetson-orin-nano"))
    assert result.quantization["format"]["label"] == "qdq-s8s8-symmetric-per-channel"
    assert result.quantization["method"] == "percentile"  # symmetric activations' default


def test_fp16_for_gpu_targets_keeps_float32_io_and_norms(bundle, tmp_path):
    from trm_edge.bundle.store import load_bundle
    from trm_edge.quantize.pipeline import quantize_bundle

    result = quantize_bundle(bundle("mlp", "jetson-orin-nano"), tmp_path / "fp16", _options(precision="fp16"))
    b = load_bundle(result.output)
    model = onnx.load(str(b.step_graph_path))
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in [*model.graph.input[1:],
                                                                                *model.graph.output])
    halves = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert sum(int(np.prod(t.dims)) for t in halves) > 0.9 * sum(int(np.prod(t.dims)) for t in model.graph.initializer
                                                                  if t.data_type in (1, 10))
    assert b.precision == "fp16" and result.quantization["sizes"]["ratio"] < 0.7  # tiny: I/O casts weigh
    assert result.quantization["verify"]["ok"]
    with pytest.raises(QuantizationError, match="cannot run fp16"):
        quantize_bundle(bundle(), tmp_path / "x86-fp16", _options(precision="fp16"))


def test_bad_input_is_refused_and_leaves_nothing(bundle, x86_int8, tmp_path):
    from trm_edge.quantize.pipeline import quantize_bundle

    out = tmp_path / "out"
    with pytest.raises(QuantizationError, match="already quantized"):
        quantize_bundle(x86_int8.output, out, _options())
    with pytest.raises(QuantizationError, match="does not match the bundle's task"):
        quantize_bundle(bundle(), out, _options(calib_task="maze"))
    with pytest.raises(QuantizationError, match="too few calibration puzzles"):
        quantize_bundle(bundle(), out, _options(calib_n=3))
    with pytest.raises(QuantizationError, match="--method entropy is onnxruntime's"):
        quantize_bundle(bundle(), out, _options(backend="nncf", method="entropy"))
    with pytest.raises(QuantizationError, match=r"resolve 6\.25 points"):
        quantize_bundle(bundle(), out, _options(max_drop=1.0, val_n=16))
    with pytest.raises(QuantizationError, match="'fast' is not one of 'ort', 'nncf'"):
        _options(backend="fast")
    with pytest.raises(QuantizationError, match=r"--calib-steps 9 is out of range: the model runs 1\.\.4"):
        quantize_bundle(bundle(), out, _options(calib_steps=9))
    assert not out.exists() and not list(tmp_path.glob(".out.*"))
    out.mkdir()
    with pytest.raises(OutputExistsError):
        quantize_bundle(bundle(), out, _options())


def test_calib_steps_records_fewer_steps_and_says_what_it_left_unseen(bundle, tmp_path):
    """--calib-steps 2 (a quick calibration of a large model): trajectories of 2 steps, and calibration.json's
    coverage rows for the steps it recorded."""
    out = tmp_path / "q2"
    result = subprocess.run([sys.executable, "-m", "trm_edge", "quantize", str(bundle()), "--int8", "--calib-task",
                             "sudoku", "--calib-n", "16", "--calib-steps", "2", "--eval-n", "0", "--no-report", "-o",
                             str(out), "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    calibration = json.loads(result.stdout)["quantization"]["calibration"]
    assert calibration["steps"] == 2 and calibration["states"] == 16 * 2
    assert len(json.loads((out / "calibration.json").read_text())["coverage_by_step"]) == 2


def test_accuracy_control_keeps_the_most_sensitive_groups_float(calibrated, tmp_path):
    """Real candidates through the real runtime; the metric is agreement with fp32's answers on held-out
    puzzles (random weights solve nothing, so exact accuracy cannot drop): groups are ranked by ablation and
    restored to float in that order until the allowed drop is met."""
    from trm_edge.quantize.accuracy import control
    from trm_edge.quantize.backends import quantize_int8
    from trm_edge.quantize.evaluate import StateProbe, exact_accuracy, open_runtime
    from trm_edge.quantize.formats import Backend, Method
    from trm_edge.quantize.graph import node_groups

    c = calibrated()
    b, examples = c["bundle"], c["data"].evaluation
    with open_runtime(b) as float_rt:
        _, reference = exact_accuracy(float_rt, _labelled(examples, None), halt=False)
        probe = StateProbe(c["trajectories"], float_rt, per_step=4)
    labelled = _labelled(examples, reference.preds)
    groups = [g for g in node_groups(c["prepared"], c["spec"].quantize_ops) if "layers.1/mlp" in g.name]
    others = [n for g in node_groups(c["prepared"], c["spec"].quantize_ops) if g not in groups for n in g.nodes]
    counter = iter(range(100))

    def build(nodes):
        return quantize_int8(c["prepared"], c["spec"], backend=Backend.ORT, method=Method.MINMAX,
                             ranges=c["ranges"].merged(), exclude=nodes)[0]

    def run(model, fn):
        path = tmp_path / f"candidate{next(counter)}.onnx"
        onnx.save(model, str(path))
        with open_runtime(b, path, precision="int8") as rt:
            return fn(rt)

    model, result = control(groups=groups, build=build, float_accuracy=1.0, max_drop=0.0, base_excluded=others,
                            exact=lambda m: run(m, lambda rt: exact_accuracy(rt, labelled, halt=False)[0]),
                            score=lambda m: run(m, probe.disagreement))
    assert len(result.ranking) == len(groups) == 6
    gains = [r["gain"] for r in result.ranking]
    assert gains == sorted(gains, reverse=True)
    assert result.steps[0]["drop_points"] > 0 and result.final_drop <= 0.0
    assert result.float_groups == [r["group"] for r in result.ranking[:len(result.float_groups)]]
    assert result.to_dict()["met"] and isinstance(model, onnx.ModelProto)


def _labelled(examples, labels):
    from trm_edge.puzzles.examples import Examples

    return Examples(examples.inputs, examples.inputs if labels is None else labels, None, None)


@pytest.mark.slow
def test_nncf_backend_writes_the_same_format(bundle, tmp_path):
    from trm_edge.quantize.graph import zero_points
    from trm_edge.quantize.pipeline import quantize_bundle

    result = quantize_bundle(bundle(), tmp_path / "nncf", _options(backend="nncf"))
    model = onnx.load(str(result.output / "step.onnx"))
    acts = [z for _, op, z in zero_points(model) if op == "QuantizeLinear"]
    assert acts and all(z.dtype == np.uint8 for z in acts)
    assert result.quantization["backend"]["tool"].startswith("nncf")


def _cli(*args: str):
    return subprocess.run([sys.executable, "-m", "trm_edge", "quantize", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_errors_are_one_line_and_json_output(bundle, x86_int8, tmp_path):
    src = str(bundle())
    cases = [
        ([src, "--int8", "--fp16", "--calib-task", "sudoku", "-o", str(tmp_path / "a")], "choose one precision"),
        ([src, "--int8", "-o", str(tmp_path / "a")], "needs calibration puzzles"),
        ([str(x86_int8.output), "--int8", "--calib-task", "sudoku", "-o", str(tmp_path / "a")], "already quantized"),
        ([src, "--int8", "--calib-task", "sudoku", "--calib-n", "2", "-o", str(tmp_path / "a")], "too few"),
        ([src, "--int8", "--calib-task", "sudoku", "--exclude", "nope", "-o", str(tmp_path / "a")], "matches no"),
    ]
    for args, message in cases:
        proc = _cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "a").exists()
    proc = _cli(src, "--int8", "--calib-task", "sudoku", "--calib-n", "16", "--eval-n", "0", "--no-report",
                "--exclude", "*lm_head*", "-o", str(tmp_path / "b"), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["precision"] == "int8" and out["quantization"]["excluded_nodes"] == ["/lm_head/MatMul"]
    assert out["quantization"]["exclude_reasons"] == {"*lm_head*": "--exclude"}
    shutil.rmtree(tmp_path / "b")


def test_max_drop_is_measured_on_validation_puzzles_and_recorded(bundle, tmp_path):
    from trm_edge.bundle.store import load_bundle
    from trm_edge.quantize.pipeline import quantize_bundle

    result = quantize_bundle(bundle(), tmp_path / "controlled", _options(max_drop=5.0, val_n=20))
    control = load_bundle(result.output).manifest.quantization["accuracy_control"]
    assert control["max_drop_points"] == 5.0 and control["met"] and control["steps"]
    assert result.quantization["calibration"]["validation_puzzles"] == 20
    assert result.quantization["smoothing"]["alpha"] == 0.8 and len(result.quantization["smoothing"]["pairs"]) == 4


def test_a_graph_the_quantizer_refuses_fails_before_calibration(bundle, tmp_path, monkeypatch):
    """What the quantizer refuses is known from the graph alone, so it is found in seconds by a trial with
    placeholder ranges, before minutes of calibration (attention graphs used to fail only after them). The
    refusal is injected at the onnxruntime boundary: under test is the order, not onnxruntime."""
    import onnxruntime.quantization

    import trm_edge.quantize.calibration as calibration
    from trm_edge.quantize.pipeline import quantize_bundle

    def refuse(*args, **kwargs):
        raise ValueError("Quantization parameters are not specified for param /attn/Mul_4_output_0")

    def no_calibration(*args, **kwargs):
        raise AssertionError("calibration started")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_static", refuse)
    monkeypatch.setattr(calibration, "record", no_calibration)
    with pytest.raises(QuantizationError, match="onnxruntime quantization failed: Quantization parameters"):
        quantize_bundle(bundle("rope"), tmp_path / "q", _options())
    assert not (tmp_path / "q").exists()


@pytest.fixture(scope="module")
def family_data(tmp_path_factory):
    """``family_data(name)``: a calibration dataset for a tiny family (sudoku ones from the generator; the
    many-puzzles model's from random tokens over its identifiers, in the official layout)."""
    from trm_edge.puzzles.dataset import Split, write_dataset

    def get(name: str):
        cfg = TINY_CONFIGS[name]
        path = tmp_path_factory.mktemp("family") / name
        rng = np.random.default_rng(0)
        splits = {}
        for split, count in (("train", 16), ("test", 8)):
            inputs = rng.integers(1, cfg.vocab_size, (count, cfg.seq_len))
            splits[split] = Split.from_arrays(inputs, inputs, puzzle_identifiers=np.arange(count) % 7,
                                              puzzle_indices=np.arange(count + 1), group_indices=np.arange(count + 1),
                                              vocab_size=cfg.vocab_size, num_puzzle_identifiers=7)
        write_dataset(path, splits, [f"puzzle{i}" for i in range(7)])
        return path

    return get


@pytest.mark.parametrize("precision", ["int8 x86-avx512", "int8 jetson-orin-nano", "fp16 jetson-orin-nano"])
@pytest.mark.parametrize("family", sorted(set(PRESET_FAMILIES.values())))
def test_every_preset_family_quantizes_and_verifies(bundle, family_data, family, precision, tmp_path):
    """Token mixing by MLP or by RoPE attention, with or without a puzzle table: every format quantizes, runs and
    passes its golden I/O. Attention's projections are quantized; q @ k^T and the attention-weighted sum stay
    float (onnxruntime would otherwise need ranges for them)."""
    from trm_edge.bundle.store import load_bundle
    from trm_edge.quantize.pipeline import quantize_bundle

    kind, target = precision.split()
    src = bundle(family, target)
    calib = {"calib_task": "sudoku"} if TASKS[family] == "sudoku" else {"calib_task": None,
                                                                         "calib_dir": str(family_data(family))}
    result = quantize_bundle(src, tmp_path / "q", _options(precision=kind, **calib))
    quantized = load_bundle(result.output)
    assert quantized.precision == kind and result.quantization["verify"]["ok"]
    golden = quantized.golden()
    assert all(f"fp32.{name}" in golden for name in ("z_H_next", "z_L_next", "logits", "q_halt_logits"))
    if target == "x86-avx512":  # other kernels than the golden outputs' (onnxruntime's): held to float32
        from trm_edge.runtimes import open_runtime
        from trm_edge.runtimes.verify import verify_golden

        with open_runtime(result.output, "openvino") as ov:
            report = verify_golden(ov, golden, precision=kind)
        assert report.ok and report.reference.startswith("float32"), report.lines
    if kind == "int8":
        graph = onnx.load(str(quantized.step_graph_path)).graph
        producer = {out: n.op_type for n in graph.node for out in n.output}
        matmuls = [n for n in graph.node if n.op_type == "MatMul"]
        products = [n for n in matmuls if "self_attn" in n.name and "proj" not in n.name]  # q @ k^T, p @ v
        assert bool(products) == (not TINY_CONFIGS[family].mlp_t)
        assert all(producer.get(n.input[0]) != "DequantizeLinear" for n in products)
        assert all(producer.get(n.input[0]) == "DequantizeLinear" for n in matmuls if "proj" in n.name)


def test_every_preset_family_is_quantized_here():
    assert set(PRESET_FAMILIES.values()) <= set(TASKS)


def test_third_party_output_only_with_verbose(bundle, tmp_path):
    """onnxruntime's histogram calibrator prints a line per batch; the terminal sees it only with --verbose, and
    then on stderr (stdout stays one JSON object)."""
    src = str(bundle("mlp", "jetson-orin-nano"))
    args = ["quantize", src, "--int8", "--calib-task", "sudoku", "--calib-n", "16", "--eval-n", "0", "--no-report",
            "--json"]
    chatter = "Collecting tensor data"
    quiet = subprocess.run([sys.executable, "-m", "trm_edge", *args, "-o", str(tmp_path / "a")], capture_output=True,
                           text=True, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert chatter not in quiet.stdout + quiet.stderr
    verbose = subprocess.run([sys.executable, "-m", "trm_edge", "--verbose", *args, "-o", str(tmp_path / "b")],
                             capture_output=True, text=True, timeout=300)
    assert verbose.returncode == 0, verbose.stderr
    assert chatter in verbose.stderr and json.loads(verbose.stdout)["precision"] == "int8"


@pytest.mark.parametrize("target", ["x86-avx512", "jetson-orin-nano"])
@pytest.mark.parametrize("family", sorted({f for f in PRESET_FAMILIES.values() if not TINY_CONFIGS[f].mlp_t}))
def test_attention_int8_quantizes_both_inputs_of_q_k_and_p_v(bundle, family_data, family, target, tmp_path):
    """--attention-int8: q @ k^T and the weighted sum of v also take Q/DQ on both inputs (calibrated like every
    activation), and the bundle still runs and passes its golden I/O, in both INT8 formats."""
    from trm_edge.bundle.store import load_bundle
    from trm_edge.quantize.pipeline import quantize_bundle

    calib = {"calib_task": "sudoku"} if TASKS[family] == "sudoku" else {"calib_task": None,
                                                                         "calib_dir": str(family_data(family))}
    result = quantize_bundle(bundle(family, target), tmp_path / "q", _options(attention_int8=True, **calib))
    assert result.quantization["verify"]["ok"] and result.quantization["attention_int8"] is True
    graph = onnx.load(str(load_bundle(result.output).step_graph_path)).graph
    producer = {out: n.op_type for n in graph.node for out in n.output}
    products = [n for n in graph.node if n.op_type == "MatMul" and "self_attn" in n.name and "proj" not in n.name]
    assert products and all(producer.get(x) == "DequantizeLinear" for n in products for x in n.input[:2])


@pytest.mark.parametrize("family", sorted(set(PRESET_FAMILIES.values())))
def test_every_family_goes_from_an_official_checkpoint_to_verified_quantized_bundles(family_data, family, tmp_path):
    """The user's path, command by command: an official checkpoint (bf16 state dict + all_config.yaml) is imported,
    exported for the x86 and the Jetson target, quantized to INT8 in each target's format and to FP16 for the
    Jetson, and every bundle passes `verify` on its golden I/O."""
    from tests.trm.official_fixture import write_official_checkpoint

    def cli(*args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "trm_edge", *args], capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, f"{args[0]}: {result.stderr}"
        return result.stdout

    cfg = TINY_CONFIGS[family]
    official = write_official_checkpoint(make_model(family), tmp_path / "official")
    task = TASKS[family] or "arc"
    cli("import", str(official), "--task", task, "--seq-len", str(cfg.seq_len), "-o", str(tmp_path / "ckpt"))
    calib = ["--calib-task", "sudoku"] if task == "sudoku" else ["--calib", str(family_data(family))]
    for target, precisions in (("x86-avx512", ["--int8"]), ("jetson-orin-nano", ["--int8", "--fp16"])):
        fp32 = tmp_path / target
        cli("export", str(tmp_path / "ckpt"), "--target", target, "-o", str(fp32))
        for flag in precisions:
            out = tmp_path / f"{target}{flag}"
            args = [*calib, "--calib-n", "16"] if flag == "--int8" else []
            cli("quantize", str(fp32), flag, *args, "--eval-n", "0", "--no-report", "-o", str(out))
            assert json.loads(cli("verify", str(out), "--json"))["ok"] is True
