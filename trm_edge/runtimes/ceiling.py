"""How fast this machine could run a model's step: the limit that ``trm-edge bench`` measures a step against.

The step's own matrix products (:func:`trm_edge.config.step_gemms` at the benchmarked batch) are each timed
alone, in the precision the runtime computes them in, on every installed CPU runtime that computes it. An int8
bundle's weight GEMMs are timed as the dequantized MatMul the quantizer writes, fed int8 activations in the
target's type (a runtime fuses the activation's quantization into the op before it, so it is not timed), and
attention's two activation products stay float. Float products run in bf16 under OpenVINO's bf16 hint
(``openvino:cpu:bf16``), timed by OpenVINO at that hint. The fastest runtime counts for each shape. The sum over
a step, count times time, is the time the step would take if everything around its GEMMs were free (norms,
activations, Q/DQ, transposes, copies).
Times are cached per machine, runtime version, thread count, precision and shape (``~/.cache/trm-edge``), so a
shape is timed once.

On a GPU module (a Jetson) the limit comes instead from the module's published dense int8/fp16 rate in the target
profile (``published_dense``), until a device measures it.

The graphs are built with the ``onnx`` package: without it there is no measured limit (None).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trm_edge.config import Gemm, TRMConfig, step_gemms
from trm_edge.machine import cpu_features, cpu_name

CACHE_FORMAT = 5  # 5: int8 GEMMs fed int8 activations; 4: bound buffers, dispatch time subtracted (at most half)
MIN_SECONDS = 0.25  # timed runs of one shape add up to at least this (and at least MIN_RUNS runs)
MIN_RUNS = 5


@dataclass(frozen=True)
class GemmLimit:
    """One product of the step at its fastest here."""

    name: str
    shape: tuple[int, int, int]  # m, k, n
    batched: int
    count: int
    precision: str  # int8, fp32, bf16 or fp16: how it was timed
    runtime: str  # the fastest runtime for it
    ms: float  # one product
    gops: float  # its rate, 1e9 multiply-adds x 2 per second


@dataclass(frozen=True)
class StepLimit:
    """The fastest a step of ``batch`` puzzles could run here: ``ms``, the sum of its GEMMs' times."""

    batch: int
    precision: str
    source: str  # what the figure rests on: "measured (runtimes...)" or the published figure's source
    ms: float
    gemms: tuple[GemmLimit, ...] = ()

    def percent(self, step_ms: float) -> float:
        """How close a step that took ``step_ms`` came to the limit (100: at it)."""
        return 100.0 * self.ms / step_ms

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "gemms": [asdict(g) for g in self.gemms]}


def step_limit(runtime: Any, batch: int, *, threads: int) -> StepLimit | None:
    """The limit for ``runtime``'s model at ``batch``: published for a GPU runtime on a target that publishes its
    rates, measured on this CPU otherwise (None where neither is possible)."""
    from trm_edge.targets import get_target

    source = runtime.source
    precision = source.precision if source.kind == "bundle" else "fp32"
    target = get_target(source.target) if source.target else None
    providers = getattr(runtime, "providers", None) or []  # onnxruntime: what the loaded session runs on
    device = (runtime.device or "").lower()
    if runtime.name == "tensorrt" or any(gpu in device for gpu in ("cuda", "tensorrt", "gpu")) or \
            any(p != "CPUExecutionProvider" for p in providers):
        published = target.published_dense if target is not None else None
        return None if published is None else published_limit(source.config, batch, precision, published)
    activations = target.int8.activations if target is not None and target.int8 is not None else "uint8"
    floats = "bf16" if getattr(runtime, "precision", None) == "bf16" else "fp32"  # openvino:cpu:bf16
    return measured_limit(source.config, batch, precision, threads=threads, activations=activations, floats=floats)


def published_limit(config: TRMConfig, batch: int, precision: str, published: dict[str, Any]) -> StepLimit | None:
    """The limit from a module's published dense rates (``{"int8_tops": ..., "fp16_tflops": ..., "source": ...}``):
    every GEMM at the rate of the bundle's precision (attention's float products at the fp16 rate)."""
    rates = {"int8": published.get("int8_tops"), "fp16": published.get("fp16_tflops")}
    rate = rates.get(precision)
    if not rate:
        return None
    seconds = sum(g.flops / ((rate if g.weights else rates["fp16"] or rate) * 1e12) for g in step_gemms(config, batch))
    return StepLimit(batch, precision, f"published: {published.get('source', 'the module datasheet')}", 1e3 * seconds)


def measured_limit(config: TRMConfig, batch: int, precision: str, *, threads: int, activations: str = "uint8",
                   floats: str = "fp32", cache: Path | None = None) -> StepLimit | None:
    """The limit measured here (see the module docstring), float products computed in ``floats`` (fp32 or bf16);
    None without the onnx package."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        return None
    timers = installed_timers(threads)
    path = cache or cache_path()
    known = read_cache(path)
    machine = f"{cpu_name()} [{' '.join(cpu_features())}] x{threads}"
    found: list[GemmLimit] = []
    for gemm in step_gemms(config, batch):
        kind = gemm_precision(gemm, precision, floats)
        best: tuple[float, str] | None = None
        for name, (version, kinds, timer) in timers.items():
            if kind not in kinds:
                continue
            runtime = f"{machine}|{name} {version}"
            if f"{runtime}|call" not in known:
                known[f"{runtime}|call"] = dispatch_seconds(timer)
            key = "|".join([runtime, kind, activations if kind == "int8" else "",
                            f"{gemm.batched}x{gemm.m}x{gemm.k}x{gemm.n}"])
            if key not in known:
                known[key] = less_dispatch(timer(gemm_graph(gemm, kind, activations), gemm, kind),
                                           known[f"{runtime}|call"])
            if best is None or known[key] < best[0]:
                best = (known[key], name)
        seconds, runtime = best  # type: ignore[misc]
        found.append(GemmLimit(gemm.name, (gemm.m, gemm.k, gemm.n), gemm.batched, gemm.count, kind, runtime,
                               1e3 * seconds, gemm.flops / gemm.count / seconds / 1e9))
    write_cache(path, known)
    total = sum(g.ms * g.count for g in found)
    return StepLimit(batch, precision, f"measured here ({', '.join(timers)}, {threads} threads)", total, tuple(found))


def less_dispatch(seconds: float, call: float) -> float:
    """A graph's time less what any call costs (``call``: the time of ``y = x``); noise never makes it free."""
    return max(seconds - call, seconds / 2)


def dispatch_seconds(timer: Any) -> float:
    """What a call of the runtime behind ``timer`` costs around any work: the time of ``y = x`` on one number."""
    return timer(gemm_graph(CALL, "fp32", "uint8", product=False), CALL, "fp32")


def gemm_precision(gemm: Gemm, precision: str, floats: str = "fp32") -> str:
    """How a product runs in a bundle of ``precision``: int8 quantizes weight GEMMs only; the float ones run in
    ``floats`` (bf16 under OpenVINO's bf16 hint), an fp16 bundle's in fp16."""
    if precision == "int8" and gemm.weights:
        return "int8"
    return "fp16" if precision == "fp16" else floats


CALL = Gemm("call", 1, 1, 1, 1)  # y = x on one number: what a call costs around any product (dispatch)


def gemm_graph(gemm: Gemm, kind: str, activations: str, *, product: bool = True) -> bytes:
    """A one-product ONNX graph: input ``x``, output ``y``; a weight GEMM multiplies by a constant weight (int8: ``x``
    is the int8 activation in ``activations``' type, dequantized, times per-channel int8 weights dequantized), an
    activation product by a second input ``b``. A bf16 product is the float32 graph (the runtime's hint makes it
    bf16). Without ``product``: the same inputs and ``y = x``."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    float_type = TensorProto.FLOAT16 if kind == "fp16" else TensorProto.FLOAT
    dtype = np.float16 if kind == "fp16" else np.float32
    lead = [gemm.batched] if gemm.batched > 1 else []
    unsigned = activations == "uint8"
    int8_input = kind == "int8" and gemm.weights and product
    x_type = (TensorProto.UINT8 if unsigned else TensorProto.INT8) if int8_input else float_type
    inputs = [helper.make_tensor_value_info("x", x_type, [*lead, gemm.m, gemm.k])]
    nodes, initializers = [], []
    if not gemm.weights:
        inputs.append(helper.make_tensor_value_info("b", float_type, [*lead, gemm.k, gemm.n]))
        nodes.append(helper.make_node("MatMul", ["x", "b"], ["y"]))
    elif kind == "int8":
        initializers += [numpy_helper.from_array(np.array(0.05, np.float32), "x_scale"),
                         numpy_helper.from_array(np.array(128 if unsigned else 0, np.uint8 if unsigned else np.int8),
                                                 "x_zero"),
                         numpy_helper.from_array(rng.integers(-127, 128, (gemm.k, gemm.n)).astype(np.int8), "w_q"),
                         numpy_helper.from_array(np.full(gemm.n, 0.01, np.float32), "w_scale"),
                         numpy_helper.from_array(np.zeros(gemm.n, np.int8), "w_zero")]
        nodes += [helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zero"], ["x_dq"]),
                  helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], axis=1),
                  helper.make_node("MatMul", ["x_dq", "w"], ["y"])]
    else:
        initializers.append(numpy_helper.from_array((rng.standard_normal((gemm.k, gemm.n)) * 0.05).astype(dtype), "w"))
        nodes.append(helper.make_node("MatMul", ["x", "w"], ["y"]))
    if not product:
        nodes, initializers = [helper.make_node("Identity", ["x"], ["y"])], []
    output = helper.make_tensor_value_info("y", float_type, [*lead, gemm.m, gemm.n if product else gemm.k])
    return onnx_bytes(nodes, inputs, [output], initializers)


def onnx_bytes(nodes: list, inputs: list, outputs: list, initializers: list) -> bytes:
    """A one-graph model as the timers read it: opset 17, IR version 8 (what onnxruntime 1.16, JetPack 5's, reads)."""
    from onnx import helper

    model = helper.make_model(helper.make_graph(nodes, "timed", inputs, outputs, initializers),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def feeds(gemm: Gemm, dtypes: dict[str, Any]) -> dict[str, np.ndarray]:
    """Random inputs of ``gemm``'s graph, each of the numpy type in ``dtypes`` (by input name)."""
    rng = np.random.default_rng(1)
    lead = (gemm.batched,) if gemm.batched > 1 else ()
    shapes = {"x": (*lead, gemm.m, gemm.k), "b": (*lead, gemm.k, gemm.n)}
    return {name: (rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max + 1, shapes[name]) if
                   np.issubdtype(dtype, np.integer) else rng.standard_normal(shapes[name])).astype(dtype)
            for name, dtype in dtypes.items()}


def median_seconds(run: Any) -> float:
    """The median of timed runs of ``run()`` after two untimed ones (MIN_RUNS runs and MIN_SECONDS at least)."""
    run()
    run()
    times: list[float] = []
    while len(times) < MIN_RUNS or sum(times) < MIN_SECONDS:
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def installed_timers(threads: int) -> dict[str, tuple[str, tuple[str, ...], Any]]:
    """``{runtime: (version, the precisions it computes, time(graph, gemm, precision) -> seconds)}`` for the CPU
    runtimes installed here. Inputs and the output stay bound to the same host buffers, so that no copy is timed
    with the product."""
    import onnxruntime as ort

    from trm_edge.runtimes.ort import OrtOptions, session_options

    def ort_time(graph: bytes, gemm: Gemm, kind: str) -> float:
        options = session_options(OrtOptions(intra_op_threads=threads))
        session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        inputs = feeds(gemm, {i.name: ORT_TYPES[i.type] for i in session.get_inputs()})
        output = session.run(None, inputs)[0]
        binding = session.io_binding()
        for name, value in inputs.items():
            binding.bind_cpu_input(name, value)
        binding.bind_output("y", "cpu", 0, output.dtype, list(output.shape), output.ctypes.data)
        return median_seconds(lambda: session.run_with_iobinding(binding))

    timers = {"onnxruntime": (ort.__version__, ("int8", "fp32", "fp16"), ort_time)}
    try:
        import openvino as ov
    except ImportError:
        return timers

    def ov_time(graph: bytes, gemm: Gemm, kind: str) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "gemm.onnx"
            path.write_bytes(graph)
            core = ov.Core()
            compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                          {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
                                           "INFERENCE_PRECISION_HINT": "bf16" if kind == "bf16" else "f32"})
        request = compiled.create_infer_request()
        inputs = feeds(gemm, {port.get_any_name(): port.get_element_type().to_dtype() for port in compiled.inputs})
        return median_seconds(lambda: request.infer(inputs, share_inputs=True, share_outputs=True))

    timers["openvino"] = (ov.__version__, ("int8", "fp32", "bf16", "fp16"), ov_time)
    return timers


ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
             "tensor(int8)": np.int8}


def cache_path() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "trm-edge" / "gemm-seconds.json"


def read_cache(path: Path) -> dict[str, float]:
    """The cached times (an unreadable or older cache is started afresh)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or not isinstance(data.get("seconds"), dict):
        return {}
    return {str(k): float(v) for k, v in data["seconds"].items() if isinstance(v, (int, float))}


def write_cache(path: Path, seconds: dict[str, float]) -> None:
    from trm_edge.io import write_json_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"format": CACHE_FORMAT, "seconds": seconds})
    except OSError:  # a read-only home: the limit is still printed, only measured again next time
        pass
