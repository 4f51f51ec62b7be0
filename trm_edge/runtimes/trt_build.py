"""Building a bundle's TensorRT engine on the device that will run it (``trm-edge build-engine``).

The plan (precision, batch profile, DLA core, workspace, the RMSNorm layers kept in float32) is computed
without TensorRT, so ``--dry-run`` and the equivalent ``trtexec`` line work anywhere; ``build_engine`` then
runs the same plan through TensorRT's Python builder and records the engine in the bundle's manifest.

Precision: in an FP16 or INT8 build TensorRT may run any layer in FP16, and RMSNorm's mean of squares over
the hidden size overflows there (the model itself computes it in float32). Every norm layer is pinned to
float32 with per-layer precision and ``OBEY_PRECISION_CONSTRAINTS`` (TensorRT 8.5 and later).
"""

from __future__ import annotations

import datetime
import shlex
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trm_edge.errors import TrmEdgeError, choices
from trm_edge.io import atomic_file
from trm_edge.runtimes.cuda import cuda_memory
from trm_edge.runtimes.trt import ENGINE_FILE, PRECISIONS, EngineRecord, dynamic_shapes, here, import_tensorrt


def trtexec_command(onnx: Path, engine: Path, config: Any, *, precision: str, min_batch: int, opt_batch: int,
                    max_batch: int, static_batch: bool, timing_cache: Path | None = None,
                    workspace_mb: int | None = None, dla_core: int | None = None,
                    fp32_layers: tuple[str, ...] = ()) -> str:
    """The ``trtexec`` line that builds the same engine as ``build_engine``."""
    args = ["trtexec", f"--onnx={onnx}", f"--saveEngine={engine}"]
    if not static_batch:
        for flag, batch in (("min", min_batch), ("opt", opt_batch), ("max", max_batch)):
            shapes = ",".join(f"{n}:{'x'.join(map(str, s))}" for n, s in dynamic_shapes(config, batch).items())
            args.append(f"--{flag}Shapes={shapes}")
    if precision in ("fp16", "int8"):
        args.append("--fp16")
    if precision == "int8":
        args.append("--int8")
    if fp32_layers:
        pinned = ",".join(f"{name}:fp32" for name in fp32_layers)
        args += ["--precisionConstraints=obey", f"--layerPrecisions={pinned}", f"--layerOutputTypes={pinned}"]
    if dla_core is not None:
        args += [f"--useDLACore={dla_core}", "--allowGPUFallback"]
    if timing_cache is not None:
        args.append(f"--timingCacheFile={timing_cache}")
    if workspace_mb:
        args.append(f"--memPoolSize=workspace:{workspace_mb}")
    return " ".join(shlex.quote(a) for a in args)


@dataclass(frozen=True)
class BuildPlan:
    """Everything ``build_engine`` will do, computable without TensorRT (``--dry-run`` prints it)."""

    bundle: Path
    onnx: Path
    engine: Path
    precision: str
    min_batch: int
    opt_batch: int
    max_batch: int
    static_batch: int | None
    timing_cache: Path | None
    workspace_mb: int | None
    dla_core: int | None
    fp32_layers: tuple[str, ...]  # ONNX node (= TensorRT layer) names pinned to float32
    fp32_tensors: tuple[str, ...]  # their output tensors (how a layer is found when the parser renames it)
    trtexec: str
    graph: bytes | None = field(default=None, repr=False)  # the verified step graph (None: weights in a file beside)


def plan_build(bundle_path: str | Path, *, precision: str | None = None, max_batch: int = 16,
               opt_batch: int | None = None, timing_cache: str | Path | None = None,
               workspace_mb: int | None = None, dla_core: int | None = None) -> BuildPlan:
    """Check the request against the bundle and lay out the build. The precision defaults to the
    bundle's own (an fp16 bundle builds an FP16 engine); the workspace to half the target's memory budget."""
    import onnx

    from trm_edge.bundle.graph_rules import norm_nodes
    from trm_edge.bundle.store import load_bundle

    bundle = load_bundle(bundle_path)
    bundle_precision = str(getattr(bundle, "precision", "fp32") or "fp32")
    precision = precision or bundle_precision
    if precision not in PRECISIONS:
        raise TrmEdgeError(f"precision {precision!r}; choices: {choices(PRECISIONS)}")
    if precision == "int8" and bundle_precision != "int8":
        raise TrmEdgeError(f"--int8 needs an INT8 (Q/DQ) bundle and {str(bundle_path)!r} is {bundle_precision}: "
                           "quantize it first with `trm-edge quantize BUNDLE --int8`; TensorRT's implicit "
                           "calibration is not used")
    if bundle_precision in ("int8", "fp16") and precision != bundle_precision:
        raise TrmEdgeError(f"{str(bundle_path)!r} is an {bundle_precision} bundle: build it with --{bundle_precision}"
                           " (or leave the precision out)")
    if max_batch < 1:
        raise TrmEdgeError(f"--max-batch {max_batch} must be at least 1")
    opt_batch = min(opt_batch or max_batch, max_batch)
    onnx_path = Path(bundle.step_graph_path)
    graph_bytes = None if bundle.graph_has_external_data() else bundle.graph_bytes()
    graph = (onnx.load(str(onnx_path), load_external_data=False) if graph_bytes is None
             else onnx.load_from_string(graph_bytes))
    first = next((i for i in graph.graph.input if i.name == "inputs"), None)
    if first is None:
        raise TrmEdgeError(f"{str(onnx_path)!r} has no 'inputs' input: not a trm-edge step graph")
    dim = first.type.tensor_type.shape.dim[0]
    static = dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None
    target = _bundle_target(bundle)
    _check_dla(dla_core, target, precision=precision, static=static, bundle=str(bundle_path))
    if workspace_mb is None and target is not None and target.memory_budget_mb:
        workspace_mb = target.memory_budget_mb // 2
    fp32_layers = tuple(norm_nodes(graph)) if precision in ("fp16", "int8") else ()
    fp32_tensors = tuple(o for n in graph.graph.node if n.name in set(fp32_layers) for o in n.output)
    lo, opt, hi = (static, static, static) if static else (1, opt_batch, max_batch)
    engine = Path(bundle_path) / ENGINE_FILE
    cache = Path(timing_cache) if timing_cache else None
    line = trtexec_command(onnx_path, engine, bundle.config, precision=precision, min_batch=lo, opt_batch=opt,
                           max_batch=hi, static_batch=static is not None, timing_cache=cache,
                           workspace_mb=workspace_mb, dla_core=dla_core, fp32_layers=fp32_layers)
    return BuildPlan(Path(bundle_path), onnx_path, engine, precision, lo, opt, hi, static, cache, workspace_mb,
                     dla_core, fp32_layers, fp32_tensors, line, graph_bytes)


def _bundle_target(bundle: Any) -> Any:
    """The bundle's target profile, or None for a target this version does not know."""
    from trm_edge.errors import TargetError
    from trm_edge.targets import get_target

    try:
        return get_target(bundle.target)
    except TargetError:
        return None


def _check_dla(dla_core: int | None, target: Any, *, precision: str, static: int | None, bundle: str) -> None:
    if dla_core is None:
        return
    cores = int((target.tensorrt or {}).get("dla_cores", 0)) if target is not None else None
    if cores is not None and not 0 <= dla_core < cores:
        raise TrmEdgeError(f"--dla-core {dla_core}: target {target.name!r} has "
                           f"{cores} DLA core(s){f' (choices: {choices(range(cores))})' if cores else ''}")
    if precision == "fp32":
        raise TrmEdgeError("DLA runs FP16 and INT8 only: build with --fp16 (or an INT8 bundle with --int8)")
    if static is None:
        raise TrmEdgeError(f"DLA needs static shapes and {bundle!r} has a dynamic batch: export it with --batch N")


def power_mode() -> str | None:
    """The Jetson power mode (``nvpmodel -q``), or None where there is no nvpmodel."""
    if shutil.which("nvpmodel") is None:
        return None
    try:
        out = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    mode = next((line.split(":", 1)[1].strip() for line in out.splitlines() if "Power Mode" in line), None)
    return mode or None


def pin_float32(network: Any, trt: Any, layers: tuple[str, ...], tensors: tuple[str, ...]) -> list[str]:
    """Run in float32 every layer named in ``layers`` (ONNX node names) or writing one of ``tensors``
    (their outputs). Returns the names of the layers pinned."""
    layers, tensors = set(layers), set(tensors)
    pinned = []
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if layer.name not in layers and not any(o.name in tensors for o in outputs):
            continue
        if any(o.dtype != trt.float32 for o in outputs):  # shape tensors, int indices: not float math
            continue
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        pinned.append(layer.name)
    return pinned


def build_engine(plan: BuildPlan, *, log: Any = print) -> EngineRecord:
    """Build the engine of ``plan`` on this GPU, store it beside the ONNX and record it in the manifest."""
    trt = import_tensorrt()
    memory = cuda_memory()
    try:
        device = here(memory, trt)
    finally:
        memory.close()
    mode = power_mode()
    if mode is not None:
        log(f"Jetson power mode: {mode} (build and benchmark in the mode you deploy: `sudo nvpmodel -m 0 && "
            "sudo jetson_clocks` for the fastest)")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if int(trt.__version__.split(".")[0]) < 10:  # explicit batch is the only mode from 10 on
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    parsed = (parser.parse_from_file(str(plan.onnx)) if plan.graph is None
              else parser.parse(plan.graph, str(plan.onnx)))  # path: where the parser reports errors from
    if not parsed:
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TrmEdgeError(f"TensorRT {trt.__version__} cannot parse {str(plan.onnx)!r}: {errors}")
    config = builder.create_builder_config()
    if plan.workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_mb << 20)
    if plan.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if plan.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # explicit Q/DQ: scales come from the graph
    if plan.fp32_layers:
        pinned = pin_float32(network, trt, plan.fp32_layers, plan.fp32_tensors)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        log(f"kept {len(pinned)} RMSNorm layers in float32 (of {len(plan.fp32_layers)} norm nodes)")
    if plan.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if plan.static_batch is None:
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            shape = tuple(tensor.shape)[1:]
            profile.set_shape(tensor.name, (plan.min_batch, *shape), (plan.opt_batch, *shape),
                              (plan.max_batch, *shape))
        if config.add_optimization_profile(profile) < 0:
            raise TrmEdgeError(f"TensorRT rejected the batch profile {plan.min_batch}..{plan.max_batch} "
                               f"(opt {plan.opt_batch})")
    if plan.timing_cache is not None:
        data = plan.timing_cache.read_bytes() if plan.timing_cache.is_file() else b""
        if not config.set_timing_cache(config.create_timing_cache(data), False):
            raise TrmEdgeError(f"TensorRT cannot use the timing cache {str(plan.timing_cache)!r} (another GPU or "
                               "TensorRT version wrote it?): delete it or pass another --timing-cache")
    log(f"building a {plan.precision} TensorRT engine on {device.describe()} (takes minutes) ...")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TrmEdgeError(f"TensorRT could not build an engine from {str(plan.onnx)!r} (see its log above)")
    if plan.timing_cache is not None:
        write_atomically(plan.timing_cache, memoryview(config.get_timing_cache().serialize()))
    write_atomically(plan.engine, memoryview(serialized))
    record = EngineRecord(
        file=plan.engine.name, precision=plan.precision, gpu=device.gpu, compute_capability=device.compute_capability,
        multiprocessors=device.multiprocessors, memory_gib=device.memory_gib, tensorrt=device.tensorrt,
        min_batch=plan.min_batch, opt_batch=plan.opt_batch, max_batch=plan.max_batch, dla_core=plan.dla_core,
        power_mode=mode, built_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        trtexec=plan.trtexec)
    record_engine(plan.bundle, record)
    return record


def write_atomically(path: Path, data: Any) -> None:
    with atomic_file(path, force=True) as tmp:
        tmp.write_bytes(data)


def record_engine(bundle_path: str | Path, record: EngineRecord) -> None:
    """Write ``record`` into the bundle's manifest (``engines.tensorrt``); the engine file joins
    ``files`` with its sha256, so a tampered engine is refused like any bundle file."""
    from trm_edge.bundle.store import load_bundle

    bundle = load_bundle(bundle_path)
    bundle.write_manifest(bundle.manifest.replace(engines={**bundle.manifest.engines, "tensorrt": asdict(record)}))
