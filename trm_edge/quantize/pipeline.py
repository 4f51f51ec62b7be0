"""bundle -> bundle: ``quantize_bundle`` is what ``trm-edge quantize`` runs.

INT8: exact pre-passes -> puzzles -> float32 trajectories (states at every supervision step, per-step ranges
in the same pass) -> ranges by method -> backend (ort | nncf) in the target profile's format -> accuracy control
(``max_drop``) -> target checks -> the output bundle (step graph, calibration.json, golden outputs of the
quantized graph, manifest) -> parity report (parity.json + parity.png). FP16: the same minus calibration.
Everything is written in a temporary directory renamed at the end: an error leaves no output bundle.
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from trm_edge.errors import QuantizationError, RuntimeUnavailableError, choices
from trm_edge.io import claims_output
from trm_edge.quantize.formats import Backend, Method, Precision, default_method, int8_format, parse_enum
from trm_edge.targets.profile import Int8Format

CALIBRATION_FILE = "calibration.json"


@dataclass(frozen=True)
class QuantizeOptions:
    """Everything ``trm-edge quantize`` takes besides the bundle and the output path."""

    precision: Precision = Precision.INT8
    backend: Backend = Backend.ORT
    method: Method | None = None  # activation ranges (None: the format's default, formats.default_method)
    calib_dir: str | None = None  # a dataset directory (train split: calibration + validation; test: held out)
    calib_task: str | None = None  # or draw puzzles of this task with its generator
    calib_n: int | None = None  # calibration puzzles (x halt_max_steps states each); default: default_puzzles
    val_n: int | None = None  # validation puzzles for --max-drop (default 200 with it, else 0)
    eval_n: int | None = None  # held-out puzzles for the parity report (0: sizes and throughput only)
    seed: int = 0
    max_drop: float | None = None  # exact-accuracy points
    exclude: tuple[str, ...] = ()
    calib_halt: bool = False  # stop a puzzle's trajectory at its halting step (default: every step)
    calib_steps: int | None = None  # supervision steps recorded (default halt_max_steps)
    batch_size: int | None = None  # puzzles per pass of calibration and report; default: default_batch
    bench_steps: int = 2  # timed steps per throughput bench (when the report has no full batch to time)
    report: bool = True
    smooth: float | None = 0.8  # SwiGLU smoothing strength alpha (None: off); exact, see graph.smooth_swiglu
    attention_int8: bool = False  # also quantize attention's q @ k^T and weighted sum (onnxruntime backend)

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", parse_enum(Precision, self.precision, "precision"))
        object.__setattr__(self, "backend", parse_enum(Backend, self.backend, "--backend"))
        if self.method is not None:
            object.__setattr__(self, "method", parse_enum(Method, self.method, "--method"))
        if self.smooth is not None and not 0.0 <= self.smooth <= 1.0:
            raise QuantizationError(f"--smooth {self.smooth} must be within 0..1 (the migration strength alpha)")
        if self.max_drop is not None and self.max_drop < 0:
            raise QuantizationError(f"--max-drop {self.max_drop} must be >= 0 (exact-accuracy points)")
        for name in ("calib_n", "eval_n", "batch_size", "bench_steps"):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "eval_n" else 1):
                raise QuantizationError(f"{name.replace('_', '-')} {value} is out of range")

    @property
    def validation_puzzles(self) -> int:
        return self.val_n if self.val_n is not None else (200 if self.max_drop is not None else 0)

    def calibration_puzzles(self, config) -> int:
        return self.calib_n if self.calib_n is not None else default_puzzles(CALIB_PUZZLES, config.seq_len)

    def evaluation_puzzles(self, config) -> int:
        if not self.report:
            return 0
        return self.eval_n if self.eval_n is not None else default_puzzles(EVAL_PUZZLES, config.seq_len)

    def batch(self, config) -> int:
        return self.batch_size if self.batch_size is not None else default_batch(config.seq_len)


CALIB_PUZZLES, EVAL_PUZZLES = 64, 128  # the defaults, for Sudoku's 81 tokens
MIN_DEFAULT_PUZZLES = 16


def default_puzzles(base: int, seq_len: int) -> int:
    """``base`` 81-token puzzles' worth of tokens, at least 16 puzzles: a 900-token graph (ARC, Maze-Hard) gets 16,
    which still give calibration more token activations per step than 64 Sudokus (14,400 vs 5,184); 64 and 128
    of them would take over an hour of this 2-core CPU (docs/quantization.md)."""
    return max(MIN_DEFAULT_PUZZLES, min(base, round(base * 81 / seq_len)))


def default_batch(seq_len: int) -> int:
    """About 3,600 tokens a pass, at most 16 puzzles: 4 for a 900-token graph, which on arc-agi-1 here ran a
    puzzle-step 10% faster than batch 16 (fp32 991 vs 1,120 ms, INT8 544 vs 597 ms) in 0.8 GB instead of 2.9."""
    return max(1, min(16, round(3600 / seq_len)))


@dataclass
class QuantizeResult:
    output: Path
    precision: str
    quantization: dict[str, Any]
    report: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"output": str(self.output), "precision": self.precision, "quantization": self.quantization,
                "report": self.report}


@claims_output()
def quantize_bundle(bundle: str | Path, output: str | Path, options: QuantizeOptions | None = None, *,
                    force: bool = False, log: Callable[[str], None] | None = None) -> QuantizeResult:
    """Quantize the fp32 bundle ``bundle`` into the new bundle ``output`` (see the module docstring)."""
    from trm_edge.bundle.store import load_bundle
    from trm_edge.targets import get_target

    options = options or QuantizeOptions()
    log = log or (lambda line: None)
    started = time.perf_counter()
    src = load_bundle(bundle)
    if src.precision != "fp32" or src.manifest.quantization:
        raise QuantizationError(f"bundle {str(src.path)!r} is already quantized (precision {src.precision!r}); "
                                "quantize the fp32 bundle it came from")
    output = Path(output)
    if output.resolve() == src.path.resolve():
        raise QuantizationError("the output bundle must not replace the input bundle")
    if options.calib_steps is not None and not 1 <= options.calib_steps <= src.config.halt_max_steps:
        raise QuantizationError(f"--calib-steps {options.calib_steps} is out of range: the model runs "
                                f"1..{src.config.halt_max_steps} supervision steps")
    target = get_target(src.target)
    with tempfile.TemporaryDirectory(prefix="trm-edge-quantize-") as work:
        work_dir = Path(work)
        if options.precision is Precision.INT8:
            model, info, calibration = _int8(src, target, options, work_dir, log)
        else:
            model, info, calibration = _fp16(src, target, options, log)
        _check(model, target, options.precision)
        info["seconds"] = round(time.perf_counter() - started, 1)
        return _write(src, model, info, calibration, output, options, force=force, log=log)


# -- INT8 ----------------------------------------------------------------------------------------------------


def _load_graph(src) -> onnx.ModelProto:
    """The source bundle's step graph as verified when it was loaded (weights past the 2 GB protobuf limit come
    from their verified file beside it)."""
    if src.graph_has_external_data():
        return onnx.load(str(src.step_graph_path))
    return onnx.load_from_string(src.graph_bytes())


def _preflight(prepared: onnx.ModelProto, fmt: Int8Format, backend: Backend, tensors: list[str],
               excluded: list[str], attention: bool) -> None:
    """Fail in seconds what would otherwise fail after minutes of calibration: the backend is installed, and
    (onnxruntime) the graph quantizes in this format, tried with placeholder ranges on a copy."""
    from trm_edge.quantize.backends import check_backend, quantize_int8

    check_backend(backend, fmt, attention=attention)
    if backend is Backend.ORT:
        placeholder = dict.fromkeys(tensors, (-1.0, 1.0))
        quantize_int8(copy.deepcopy(prepared), fmt, backend=backend, method=Method.MINMAX, ranges=placeholder,
                      exclude=excluded, attention=attention)


def _int8(src, target, options: QuantizeOptions, work: Path, log) -> tuple[onnx.ModelProto, dict, dict]:
    from trm_edge.quantize import accuracy as ac
    from trm_edge.quantize.backends import quantize_int8
    from trm_edge.quantize.calibration import StateReader, histogram_ranges, load_calibration, quantized_inputs, record
    from trm_edge.quantize.evaluate import StateProbe, exact_accuracy, open_runtime
    from trm_edge.quantize.graph import node_groups, prepare, resolve_excludes, smooth_swiglu, swiglu_pairs

    fmt = int8_format(target)
    method = options.method or default_method(fmt)
    if options.backend is Backend.NNCF and method is Method.ENTROPY:
        raise QuantizationError("--method entropy is onnxruntime's (--backend ort); NNCF offers minmax and "
                                "percentile")
    prepared, passes = prepare(_load_graph(src))
    excluded = resolve_excludes(prepared, list(options.exclude), fmt.quantize_ops)
    tensors = quantized_inputs(prepared, fmt.quantize_ops, attention=options.attention_int8)
    _preflight(prepared, fmt, options.backend, tensors, excluded, options.attention_int8)
    data = load_calibration(src, calib_dir=options.calib_dir, task=options.calib_task,
                            n=options.calibration_puzzles(src.config), val_n=options.validation_puzzles,
                            eval_n=options.evaluation_puzzles(src.config), seed=options.seed)
    if options.max_drop is not None:
        resolution = 100.0 / len(data.validation)
        if resolution > max(options.max_drop, 1e-9):
            need = int(np.ceil(100.0 / max(options.max_drop, 1e-9)))
            raise QuantizationError(f"{len(data.validation)} validation puzzles resolve {resolution:.2f} points; "
                                    f"--max-drop {options.max_drop} needs at least {need} (--val-n)")
    steps = options.calib_steps or src.config.halt_max_steps
    batch = options.batch(src.config)
    pairs = swiglu_pairs(prepared, fmt.quantize_ops) if options.smooth is not None else []
    log(f"calibration: {len(data.calibration)} puzzles x {steps} supervision steps of float32 trajectories "
        f"({'with' if options.calib_halt else 'without'} halting), {len(tensors)} activation tensors")
    trajectories, step_ranges = record(prepared, src, data.calibration, tensors=tensors, max_steps=steps,
                                       channels=[t for pair in pairs for t in pair.tensors],
                                       halt=options.calib_halt, threshold=src.halt_threshold,
                                       batch_size=batch)
    smoothing = None
    if pairs:
        scales = smooth_swiglu(prepared, pairs, step_ranges.channel_absmax(), alpha=options.smooth)
        for pair in pairs:
            for tensor in pair.tensors:
                step_ranges.rescale_channels(tensor, scales[pair.down_weight])
        smoothing = {"alpha": options.smooth, "pairs": [
            {"up": p.up_weight, "down": p.down_weight, "call_sites": len(p.tensors),
             "scale_min": float(scales[p.down_weight].min()), "scale_max": float(scales[p.down_weight].max())}
            for p in pairs]}
        log(f"smoothing {len(pairs)} SwiGLU down-projection inputs into their up projections (alpha "
            f"{options.smooth}; exact in float)")
    reader = StateReader(trajectories, batch_size=batch)
    ranges = step_ranges.merged()
    if options.backend is Backend.ORT and method is not Method.MINMAX:
        log(f"{method.value} ranges from onnxruntime's histogram calibrator")
        onnx.save(prepared, str(work / "prepared.onnx"))
        ranges = histogram_ranges(work / "prepared.onnx", reader, method.value, tensors, workdir=work)

    last: dict[str, Any] = {}

    def build(nodes: list[str]) -> onnx.ModelProto:
        model, last["info"] = quantize_int8(prepared, fmt, backend=options.backend, method=method,
                                            ranges=ranges, reader=reader, exclude=nodes,
                                            attention=options.attention_int8)
        last["excluded"] = list(nodes)
        return model

    log(f"quantizing with {options.backend.value} as {fmt.label} ({target.name})")
    control_info = None
    if options.max_drop is None:
        model = build(excluded)
    else:
        float_rt = open_runtime(src)
        validation = data.validation
        val_traj, _ = record(prepared, src, validation, max_steps=steps, batch_size=batch)
        probe = StateProbe(val_traj, float_rt)
        float_acc, _ = exact_accuracy(float_rt, validation, halt=False, batch_size=batch)
        counter = iter(range(10**6))

        def save(model: onnx.ModelProto) -> Path:
            path = work / f"candidate-{next(counter)}.onnx"
            onnx.save(model, str(path))
            return path

        def exact(model: onnx.ModelProto) -> float:
            with open_runtime(src, save(model), precision="int8") as rt:
                return exact_accuracy(rt, validation, halt=False, batch_size=batch)[0]

        def score(model: onnx.ModelProto) -> dict[str, float]:
            with open_runtime(src, save(model), precision="int8") as rt:
                return probe.disagreement(rt)

        groups = node_groups(prepared, fmt.quantize_ops)
        model, control_info = ac.control(groups=groups, build=build, exact=exact, score=score,
                                         float_accuracy=float_acc, max_drop=options.max_drop,
                                         base_excluded=excluded, log=log)
    excluded, backend_info = last["excluded"], last["info"]  # the chosen candidate is the last one built
    groups = node_groups(prepared, fmt.quantize_ops)
    float_groups = [g.name for g in groups if set(g.nodes) <= set(excluded)]
    info = {
        "precision": "int8",
        "format": {"target": target.name, **fmt.to_dict(), "label": fmt.label},
        "backend": backend_info,
        "method": method.value,
        "attention_int8": options.attention_int8,
        "graph_passes": passes,
        "smoothing": smoothing,
        "calibration": {**data.recipe, "steps": trajectories.steps, "states": trajectories.states,
                        "halt": options.calib_halt, "tensors": len(tensors), "file": CALIBRATION_FILE,
                        "reader": "float32 trajectories of the float bundle's step graph, every supervision step"},
        "excluded_nodes": excluded,
        "float_groups": float_groups,
        "exclude_reasons": {**dict.fromkeys(options.exclude, "--exclude"),
                            **(dict.fromkeys(control_info.float_groups, "accuracy control (--max-drop)")
                               if control_info else {})},
        "accuracy_control": control_info.to_dict() if control_info else None,
    }
    calibration = {
        "method": method.value,
        "ranges": {t: list(r) for t, r in ranges.items()},
        "per_step": step_ranges.to_dict(),
        "coverage_by_step": step_ranges.coverage(ranges),
        "coverage_if_step1_only": step_ranges.coverage(step_ranges.merged([1])),
    }
    return model, info, {"calibration": calibration, "data": data}


# -- FP16 ----------------------------------------------------------------------------------------------------


def _fp16(src, target, options: QuantizeOptions, log) -> tuple[onnx.ModelProto, dict, dict]:
    from trm_edge.quantize.fp16 import to_fp16
    from trm_edge.quantize.graph import prepare

    if "fp16" not in target.precisions:
        raise QuantizationError(f"target {target.name!r} cannot run fp16 (its precisions: "
                                f"{choices(target.precisions)}); fp16 is for GPU targets")
    if options.max_drop is not None or options.exclude:
        raise QuantizationError("--max-drop and --exclude apply to --int8")
    prepared, passes = prepare(_load_graph(src))
    log("converting to float16 (float32 I/O and RMSNorm)")
    model, fp16_info = to_fp16(prepared)
    data = None
    eval_n = options.evaluation_puzzles(src.config)
    if eval_n and (options.calib_dir or options.calib_task):
        from trm_edge.quantize.calibration import load_calibration

        data = load_calibration(src, calib_dir=options.calib_dir, task=options.calib_task,
                                n=options.calibration_puzzles(src.config), eval_n=eval_n, seed=options.seed)
    info = {"precision": "fp16", "format": {"label": "fp16", **fp16_info}, "backend": fp16_info,
            "graph_passes": passes, "calibration": None, "excluded_nodes": [], "float_groups": []}
    return model, info, {"calibration": None, "data": data}


# -- checks, writing, report ------------------------------------------------------------------------------


def _check(model: onnx.ModelProto, target, precision: Precision) -> None:
    from trm_edge.export.passes import check_target, check_weights_once

    problems = check_target(model, target)
    problems += [f"weight stored twice: {p}" for p in check_weights_once(model)]
    if problems:
        raise QuantizationError(f"the {precision.value} graph does not fit target {target.name!r}: "
                                + "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5
                                                             else ""))


def _write(src, model: onnx.ModelProto, info: dict, extra: dict, output: Path, options: QuantizeOptions, *,
           force: bool, log) -> QuantizeResult:
    from trm_edge.bundle import store as B
    from trm_edge.export.passes import save_model
    from trm_edge.io import atomic_directory

    precision = info["precision"]
    src_files = src.manifest.files
    step_rel = src.manifest.graph_file("step")
    skip = {step_rel, *(f for f in src_files if f.startswith(step_rel + "."))}
    dropped = [k for k in src.graphs if k != "step"]
    for kind in dropped:  # only the step graph is quantized; an unrolled float graph would contradict precision
        skip.add(src.graphs[kind]["file"])
        skip |= {f for f in src_files if f.startswith(src.graphs[kind]["file"] + ".")}
    with atomic_directory(output, force=force) as tmp:
        for rel in src_files:
            if rel not in skip and rel != B.GOLDEN_FILE:
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                (tmp / rel).write_bytes(src.read(rel))
        files = save_model(model, tmp / step_rel)
        float_bytes = sum(len(src.read(f)) for f in src_files if f == step_rel or f.startswith(step_rel + "."))
        quant_bytes = sum(f.stat().st_size for f in files)
        step = {**src.graphs["step"], "bytes": quant_bytes, "precision": precision, "nodes": len(model.graph.node)}
        info["sizes"] = {"float_step_bytes": float_bytes, "step_bytes": quant_bytes,
                         "ratio": round(quant_bytes / float_bytes, 4)}
        if dropped:
            info["graphs_dropped"] = dict.fromkeys(dropped, "only the step graph is quantized")
        if extra.get("calibration"):
            (tmp / CALIBRATION_FILE).write_text(json.dumps(extra["calibration"]) + "\n")
        golden_info = _golden(src, tmp / step_rel, tmp / B.GOLDEN_FILE, precision, dropped)
        manifest = src.manifest.replace(precision=precision, graphs={"step": step}, quantization=info,
                                        golden={**src.manifest.golden, **golden_info} if golden_info else None)
        B.write_manifest(tmp, manifest)
        out = B.load_bundle(tmp)
        verify = _verify(out, precision)
        info["verify"] = verify
        report: dict[str, Any] = {}
        if options.report:
            from trm_edge.quantize.report import REPORT_JSON, REPORT_PNG, plot

            report = _report(src, out, info, extra, options, log)
            (tmp / REPORT_JSON).write_text(json.dumps(report, indent=2, default=_jsonable) + "\n")
            plot(report, tmp / REPORT_PNG)
            info["report"] = {"json": REPORT_JSON, "png": REPORT_PNG}
        B.write_manifest(tmp, manifest.replace(quantization=info))
    log(f"wrote {output} ({precision}, step graph {quant_bytes / 1e6:.2f} MB = "
        f"{info['sizes']['ratio']:.2f} x fp32)")
    return QuantizeResult(output, precision, info, report)


def _golden(src, graph: Path, golden_path: Path, precision: str, dropped: list[str]) -> dict[str, Any] | None:
    """The bundle's golden step feeds with *this* graph's outputs (onnxruntime, CPU) and, under ``fp32.`` keys,
    the float32 graph's: ``trm-edge verify`` on the device holds any runtime's kernels to float32, within a
    margin of how far onnxruntime's lie from it (runtimes.verify.verify_golden)."""
    if not src.manifest.golden:
        return None
    import onnxruntime as ort

    from trm_edge.bundle.contract import input_names
    from trm_edge.bundle.tolerances import FLOAT_PREFIX, REFERENCE_MARGIN, tolerance_for
    from trm_edge.quantize.evaluate import open_runtime

    golden = {k: v for k, v in src.golden().items() if not any(k.startswith(d + ".") for d in dropped)}
    try:
        with open_runtime(src, graph, precision=precision) as runtime:
            outputs = runtime.step({n: golden[n] for n in input_names(src.config)})
    except RuntimeUnavailableError as error:
        raise QuantizationError(f"onnxruntime cannot run the {precision} graph on this CPU: {error}") from None
    for name, value in outputs.items():
        if name in golden:
            golden[FLOAT_PREFIX + name] = golden[name]
        golden[name] = value
    np.savez(golden_path, **golden)
    return {"keys": sorted(golden), "tolerance": asdict(tolerance_for(precision)),
            "reference_margin": asdict(REFERENCE_MARGIN),
            "reference": f"onnxruntime {ort.__version__} CPU on this {precision} step graph; {FLOAT_PREFIX}* keys: "
                         "the float32 graph's outputs, which every runtime is held to (see docs/bundle-format.md)"}


def _verify(bundle, precision: str) -> dict[str, Any] | None:
    if not bundle.manifest.golden:
        return None
    from trm_edge.quantize.evaluate import open_runtime
    from trm_edge.runtimes.verify import verify_golden

    with open_runtime(bundle) as rt:
        result = verify_golden(rt, bundle.golden(), precision=precision)
    result.raise_if_failed(what=f"the {precision} bundle")
    report = result.to_dict()
    return {key: report[key] for key in ("ok", "worst", "lines")}


def _report(src, out, info: dict, extra: dict, options: QuantizeOptions, log) -> dict[str, Any]:
    from trm_edge.puzzles.examples import random_inputs
    from trm_edge.quantize.evaluate import open_runtime
    from trm_edge.quantize.report import parity, throughput

    report: dict[str, Any] = {
        "precision": info["precision"],
        "format": info["format"].get("label"),
        "target": out.target,
        "backend": info["backend"],
        "sizes": info["sizes"],
        "excluded_nodes": len(info["excluded_nodes"]),
        "float_groups": info["float_groups"],
        "accuracy_control": info.get("accuracy_control"),
    }
    if extra.get("calibration"):
        cal = extra["calibration"]
        report["calibration"] = {"recipe": info["calibration"], "coverage_by_step": cal["coverage_by_step"],
                                 "coverage_if_step1_only": cal["coverage_if_step1_only"]}
    data = extra.get("data")
    batch = options.batch(src.config)
    with open_runtime(src) as float_rt, open_runtime(out) as quant_rt:
        evaluation = None if data is None else data.evaluation
        speed = None
        if evaluation is not None and evaluation.labels is not None and len(evaluation):
            report["parity"], speed = parity(float_rt, quant_rt, evaluation, batch_size=batch, log=log)
        if speed is None:
            inputs = evaluation.inputs if evaluation is not None else random_inputs(src.config, batch)
            speed = throughput(float_rt, quant_rt, inputs, batch_size=batch,
                               steps=options.bench_steps, log=log)
        report["throughput"] = speed
    return report


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
