"""Native TensorRT: engine build on the device, and a runtime whose state stays on the GPU.

One adapter for TensorRT 8.5 through 10.x: only the named-tensor API is used (``num_io_tensors``,
``get_tensor_name``, ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``; all present
from 8.5, and the binding-index API they replace is gone in 10). Device memory comes from cuda-python
(``cuda.bindings.runtime``, or ``cuda.cudart`` in older releases), or from torch when it happens to be
installed; never pycuda.

Between supervision steps ``z_H``/``z_L`` never leave the GPU: two state buffers are swapped each step
(ping-pong), and only ``q_halt_logits`` (4 bytes per puzzle) comes back for the halting decision; the
logits of a puzzle are copied back once, at the step it finishes.

Engines are specific to a GPU model and a TensorRT version, so they are built on the device that runs
them (``trm-edge build-engine``) and the manifest records where; a load on another GPU or TensorRT
version is refused with a message saying to rebuild.

This module has not been run on a GPU in CI (there is none there); tests/runtimes/test_trt.py checks
the buffer logic with a numpy stand-in for CUDA and onnxruntime standing in for the engine, and its
``gpu``-marked tests run the real thing where a GPU with TensorRT is present.
"""

from __future__ import annotations

import datetime
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trm_edge.errors import BundleError, RuntimeUnavailableError, TrmEdgeError, choices
from trm_edge.runtimes.base import STEP_OUTPUTS, ModelSource, Recurrence, Runtime, input_names, read_manifest

ENGINE_FILE = "step.engine"
PRECISIONS = ("fp32", "fp16", "int8")


# -- what an engine was built for -------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo:
    """The GPU and TensorRT version an engine is built on or loaded on."""

    gpu: str
    compute_capability: str  # "8.7"
    tensorrt: str

    def describe(self) -> str:
        return f"{self.gpu} (sm_{self.compute_capability.replace('.', '')}) with TensorRT {self.tensorrt}"


@dataclass(frozen=True)
class EngineRecord:
    """``manifest["engines"]["tensorrt"]``: the engine file and the device it was built on."""

    file: str
    precision: str
    gpu: str
    compute_capability: str
    tensorrt: str
    min_batch: int
    opt_batch: int
    max_batch: int
    built_at: str
    trtexec: str

    @property
    def device(self) -> DeviceInfo:
        return DeviceInfo(self.gpu, self.compute_capability, self.tensorrt)

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> EngineRecord | None:
        raw = (manifest.get("engines") or {}).get("tensorrt")
        if not raw:
            return None
        try:
            return cls(**{k: raw[k] for k in cls.__dataclass_fields__})
        except (KeyError, TypeError) as error:
            raise BundleError(f"the manifest's engines.tensorrt entry is malformed ({error}); rebuild the engine "
                              "with `trm-edge build-engine BUNDLE`") from None


def check_engine_device(record: EngineRecord, here: DeviceInfo, *, bundle: str) -> None:
    """Refuse an engine built on another GPU model, compute capability or TensorRT version."""
    built = record.device
    if (built.gpu, built.compute_capability, built.tensorrt) != (here.gpu, here.compute_capability, here.tensorrt):
        raise BundleError(
            f"the TensorRT engine {record.file!r} in {bundle!r} was built on {built.describe()}; this device is "
            f"{here.describe()}. Engines only run where they were built: rebuild it here with "
            f"`trm-edge build-engine {bundle}`")


# -- device memory (cuda-python, or torch) ---------------------------------------------------------------


class DeviceBuffer:
    """A block of device memory; ``ptr`` is what TensorRT's ``set_tensor_address`` takes."""

    def __init__(self, ptr: int, nbytes: int, handle: Any = None) -> None:
        self.ptr = int(ptr)
        self.nbytes = nbytes
        self.handle = handle  # backend object keeping the memory alive (a torch tensor), if any


class CudaMemory:
    """The few CUDA operations the runtime needs, all on one stream (so they are ordered with the
    engine's kernels): alloc, host<->device and device->device copies, memset, synchronise."""

    stream: int

    def alloc(self, nbytes: int) -> DeviceBuffer: raise NotImplementedError
    def free(self, buffer: DeviceBuffer) -> None: raise NotImplementedError
    def upload(self, buffer: DeviceBuffer, offset: int, array: np.ndarray) -> None: raise NotImplementedError
    def download(self, array: np.ndarray, buffer: DeviceBuffer, offset: int) -> None: raise NotImplementedError
    def copy(self, dst: DeviceBuffer, dst_offset: int, src: DeviceBuffer, src_offset: int, nbytes: int) -> None:
        raise NotImplementedError
    def zero(self, buffer: DeviceBuffer) -> None: raise NotImplementedError
    def synchronize(self) -> None: raise NotImplementedError
    def device_info(self) -> tuple[str, str]: raise NotImplementedError  # (name, "major.minor")
    def close(self) -> None: pass


def _import_cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            return None
    return cudart


class CudaPythonMemory(CudaMemory):
    """cuda-python's runtime API."""

    def __init__(self) -> None:
        cudart = _import_cudart()
        if cudart is None:
            raise RuntimeUnavailableError("cuda-python is not installed: pip install cuda-python")
        self.rt = cudart
        err, count = cudart.cudaGetDeviceCount()
        if err != cudart.cudaError_t.cudaSuccess or count == 0:
            raise RuntimeUnavailableError("the tensorrt runtime needs an NVIDIA GPU and none is visible here "
                                          f"(cudaGetDeviceCount: {err}); use --runtime onnxruntime")
        self._stream = self._check(cudart.cudaStreamCreate())
        self.stream = int(self._stream)

    def _check(self, result: Any) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            raise RuntimeUnavailableError(f"CUDA error: {err}")
        return rest[0] if len(rest) == 1 else (tuple(rest) or None)

    def alloc(self, nbytes: int) -> DeviceBuffer:
        return DeviceBuffer(int(self._check(self.rt.cudaMalloc(max(nbytes, 1)))), nbytes)

    def free(self, buffer: DeviceBuffer) -> None:
        self._check(self.rt.cudaFree(buffer.ptr))

    def upload(self, buffer: DeviceBuffer, offset: int, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(buffer.ptr + offset, array.ctypes.data, array.nbytes, kind, self._stream))
        self.synchronize()  # pageable host memory: keep ``array`` alive until the copy is done

    def download(self, array: np.ndarray, buffer: DeviceBuffer, offset: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(array.ctypes.data, buffer.ptr + offset, array.nbytes, kind, self._stream))

    def copy(self, dst: DeviceBuffer, dst_offset: int, src: DeviceBuffer, src_offset: int, nbytes: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        self._check(self.rt.cudaMemcpyAsync(dst.ptr + dst_offset, src.ptr + src_offset, nbytes, kind, self._stream))

    def zero(self, buffer: DeviceBuffer) -> None:
        self._check(self.rt.cudaMemsetAsync(buffer.ptr, 0, buffer.nbytes, self._stream))

    def synchronize(self) -> None:
        self._check(self.rt.cudaStreamSynchronize(self._stream))

    def device_info(self) -> tuple[str, str]:
        device = self._check(self.rt.cudaGetDevice())
        props = self._check(self.rt.cudaGetDeviceProperties(device))
        name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        return name.rstrip("\x00").strip(), f"{props.major}.{props.minor}"

    def close(self) -> None:
        self._check(self.rt.cudaStreamDestroy(self._stream))


class TorchCudaMemory(CudaMemory):
    """torch's caching allocator and copies on a torch stream (when torch with CUDA is installed)."""

    def __init__(self) -> None:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeUnavailableError("the tensorrt runtime needs an NVIDIA GPU and torch sees none here; "
                                          "use --runtime onnxruntime")
        self.torch = torch
        self._stream = torch.cuda.Stream()
        self.stream = int(self._stream.cuda_stream)

    def alloc(self, nbytes: int) -> DeviceBuffer:
        tensor = self.torch.zeros(max(nbytes, 1), dtype=self.torch.uint8, device="cuda")
        return DeviceBuffer(tensor.data_ptr(), nbytes, tensor)

    def free(self, buffer: DeviceBuffer) -> None:
        buffer.handle = None

    def _bytes(self, array: np.ndarray) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(array).reshape(-1).view(np.uint8))

    def upload(self, buffer: DeviceBuffer, offset: int, array: np.ndarray) -> None:
        with self.torch.cuda.stream(self._stream):
            buffer.handle[offset:offset + array.nbytes].copy_(self._bytes(array))
        self.synchronize()

    def download(self, array: np.ndarray, buffer: DeviceBuffer, offset: int) -> None:
        with self.torch.cuda.stream(self._stream):
            self._bytes(array).copy_(buffer.handle[offset:offset + array.nbytes])  # blocking copy to pageable

    def copy(self, dst: DeviceBuffer, dst_offset: int, src: DeviceBuffer, src_offset: int, nbytes: int) -> None:
        with self.torch.cuda.stream(self._stream):
            dst.handle[dst_offset:dst_offset + nbytes].copy_(src.handle[src_offset:src_offset + nbytes])

    def zero(self, buffer: DeviceBuffer) -> None:
        with self.torch.cuda.stream(self._stream):
            buffer.handle.zero_()

    def synchronize(self) -> None:
        self._stream.synchronize()

    def device_info(self) -> tuple[str, str]:
        major, minor = self.torch.cuda.get_device_capability()
        return self.torch.cuda.get_device_name(), f"{major}.{minor}"


def cuda_memory() -> CudaMemory:
    """cuda-python when installed, else torch; RuntimeUnavailableError naming what to install."""
    if _import_cudart() is not None:
        return CudaPythonMemory()
    try:
        import torch  # noqa: F401
    except ImportError:
        raise RuntimeUnavailableError("the tensorrt runtime needs cuda-python for device memory "
                                      "(pip install cuda-python), or torch with CUDA") from None
    return TorchCudaMemory()


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError:
        raise RuntimeUnavailableError("TensorRT is not installed: pip install 'trm-edge[tensorrt]' (on Jetson it "
                                      "comes with JetPack: apt install python3-libnvinfer)") from None
    major, minor = (int(p) for p in trt.__version__.split(".")[:2])
    if (major, minor) < (8, 5):
        raise RuntimeUnavailableError(f"TensorRT {trt.__version__} is too old: the named-tensor API "
                                      "(execute_async_v3) needs TensorRT 8.5 or later")
    return trt


def here(memory: CudaMemory, trt: Any) -> DeviceInfo:
    name, capability = memory.device_info()
    return DeviceInfo(name, capability, trt.__version__)


# -- building ------------------------------------------------------------------------------------------


def dynamic_shapes(config: Any, batch: int) -> dict[str, tuple[int, ...]]:
    """Input shapes of the step graph at ``batch``."""
    shapes = {"inputs": (batch, config.seq_len), "z_H": (batch, config.total_len, config.hidden_size),
              "z_L": (batch, config.total_len, config.hidden_size),
              "puzzle_embedding": (batch, config.puzzle_emb_ndim)}
    return {name: shapes[name] for name in input_names(config)}


def trtexec_command(onnx: Path, engine: Path, config: Any, *, precision: str, min_batch: int, opt_batch: int,
                    max_batch: int, static_batch: bool, timing_cache: Path | None = None,
                    workspace_mb: int | None = None) -> str:
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
    trtexec: str


def plan_build(bundle_path: str | Path, *, precision: str | None = None, max_batch: int = 16,
               opt_batch: int | None = None, timing_cache: str | Path | None = None,
               workspace_mb: int | None = None) -> BuildPlan:
    """Check the request against the bundle and lay out the build."""
    import onnx

    from trm_edge.export.bundle import load_bundle

    bundle = load_bundle(bundle_path)
    bundle_precision = str(getattr(bundle, "precision", "fp32") or "fp32")
    if precision is None:
        precision = "int8" if bundle_precision == "int8" else "fp32"
    if precision not in PRECISIONS:
        raise TrmEdgeError(f"precision {precision!r}; choices: {choices(PRECISIONS)}")
    if precision == "int8" and bundle_precision != "int8":
        raise TrmEdgeError(f"--int8 needs an INT8 (Q/DQ) bundle and {str(bundle_path)!r} is {bundle_precision}: "
                           "quantize it first with `trm-edge quantize BUNDLE --int8`; TensorRT's implicit "
                           "calibration is not used")
    if bundle_precision == "int8" and precision != "int8":
        raise TrmEdgeError(f"{str(bundle_path)!r} is an INT8 (Q/DQ) bundle: build it with --int8")
    if max_batch < 1:
        raise TrmEdgeError(f"--max-batch {max_batch} must be at least 1")
    opt_batch = min(opt_batch or max_batch, max_batch)
    onnx_path = Path(bundle.step_graph_path)
    graph = onnx.load(str(onnx_path), load_external_data=False)
    first = next(i for i in graph.graph.input if i.name == "inputs")
    dim = first.type.tensor_type.shape.dim[0]
    static = dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None
    lo, opt, hi = (static, static, static) if static else (1, opt_batch, max_batch)
    engine = Path(bundle_path) / ENGINE_FILE
    cache = Path(timing_cache) if timing_cache else None
    line = trtexec_command(onnx_path, engine, bundle.config, precision=precision, min_batch=lo, opt_batch=opt,
                           max_batch=hi, static_batch=static is not None, timing_cache=cache,
                           workspace_mb=workspace_mb)
    return BuildPlan(Path(bundle_path), onnx_path, engine, precision, lo, opt, hi, static, cache, workspace_mb, line)


def build_engine(plan: BuildPlan, *, log: Any = print) -> EngineRecord:
    """Build the engine of ``plan`` on this GPU, store it beside the ONNX and record it in the manifest."""
    trt = import_tensorrt()
    memory = cuda_memory()
    try:
        device = here(memory, trt)
    finally:
        memory.close()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if int(trt.__version__.split(".")[0]) < 10:  # explicit batch is the only mode from 10 on
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(plan.onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TrmEdgeError(f"TensorRT {trt.__version__} cannot parse {str(plan.onnx)!r}: {errors}")
    config = builder.create_builder_config()
    if plan.workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_mb << 20)
    if plan.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if plan.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # explicit Q/DQ: scales come from the graph
    if plan.static_batch is None:
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            shape = tuple(tensor.shape)[1:]
            profile.set_shape(tensor.name, (plan.min_batch, *shape), (plan.opt_batch, *shape),
                              (plan.max_batch, *shape))
        config.add_optimization_profile(profile)
    if plan.timing_cache is not None:
        data = plan.timing_cache.read_bytes() if plan.timing_cache.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(data), False)
    log(f"building a {plan.precision} TensorRT engine on {device.describe()} (takes minutes) ...")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TrmEdgeError(f"TensorRT could not build an engine from {str(plan.onnx)!r} (see its log above)")
    if plan.timing_cache is not None:
        plan.timing_cache.write_bytes(memoryview(config.get_timing_cache().serialize()))
    tmp = plan.engine.with_name(f".{plan.engine.name}.tmp")
    tmp.write_bytes(memoryview(serialized))
    tmp.replace(plan.engine)
    record = EngineRecord(
        file=plan.engine.name, precision=plan.precision, gpu=device.gpu,
        compute_capability=device.compute_capability, tensorrt=device.tensorrt, min_batch=plan.min_batch,
        opt_batch=plan.opt_batch, max_batch=plan.max_batch,
        built_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), trtexec=plan.trtexec)
    record_engine(plan.bundle, record)
    return record


def record_engine(bundle_path: str | Path, record: EngineRecord) -> None:
    """Write ``record`` into the bundle's manifest (``engines.tensorrt``); the engine file joins
    ``files`` with its sha256, so a tampered engine is refused like any bundle file."""
    from trm_edge.export.bundle import load_bundle

    load_bundle(bundle_path).write_manifest_update({"engines": {"tensorrt": asdict(record)}})


# -- running -------------------------------------------------------------------------------------------



class TensorRTRuntime(Runtime):
    """The bundle's TensorRT engine. Needs ``trm-edge build-engine`` on this device first."""

    name = "tensorrt"
    runs = ("bundle",)

    def __init__(self, source: ModelSource, *, device: str | None = None, **options: Any) -> None:
        super().__init__(source, device=device, **options)
        self.record: EngineRecord | None = None
        self.memory: CudaMemory | None = None
        self.context: Any = None
        self.engine: Any = None
        self._max_batch: int | None = None
        self._fixed: int | None = None
        self._scratch: dict[int, DeviceRecurrence] = {}

    @classmethod
    def from_parts(cls, source: ModelSource, *, context: Any, memory: CudaMemory, max_batch: int,
                   fixed_batch: int | None = None) -> TensorRTRuntime:
        """A runtime around an existing execution context (tests drive the buffer logic this way)."""
        runtime = cls(source)
        runtime.context, runtime.memory = context, memory
        runtime._max_batch, runtime._fixed = max_batch, fixed_batch
        runtime._loaded = True
        return runtime

    def _load(self) -> None:
        manifest = getattr(self.source.bundle, "manifest", None) or read_manifest(self.source.path)
        record = EngineRecord.from_manifest(manifest)
        if record is None:
            raise BundleError(f"{str(self.source.path)!r} has no TensorRT engine; build one on this device with "
                              f"`trm-edge build-engine {self.source.path}` (or use --runtime onnxruntime)")
        trt = import_tensorrt()
        memory = cuda_memory()
        try:
            check_engine_device(record, here(memory, trt), bundle=str(self.source.path))
            logger = trt.Logger(trt.Logger.WARNING)
            engine = trt.Runtime(logger).deserialize_cuda_engine((self.source.path / record.file).read_bytes())
            if engine is None:
                raise BundleError(f"TensorRT {trt.__version__} could not deserialize {record.file!r}; rebuild it "
                                  f"with `trm-edge build-engine {self.source.path}`")
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            wanted = list(self.input_names) + list(STEP_OUTPUTS)
            if sorted(names) != sorted(wanted):
                raise BundleError(f"engine tensors {choices(names)} are not the step graph's {choices(wanted)}")
            for name in self.input_names:
                if engine.get_tensor_mode(name) != trt.TensorIOMode.INPUT:
                    raise BundleError(f"engine tensor {name!r} is not an input")
            expected = {n: (trt.int32 if n == "inputs" else trt.float32) for n in wanted}
            for name, dtype in expected.items():
                if engine.get_tensor_dtype(name) != dtype:
                    raise BundleError(f"engine tensor {name!r} is {engine.get_tensor_dtype(name)}, expected {dtype}")
            batch_dim = int(engine.get_tensor_shape("inputs")[0])
            self._fixed = batch_dim if batch_dim > 0 else None
            self._max_batch = self._fixed or record.max_batch
            self.engine = engine
            self.context = engine.create_execution_context()
            self.memory, self.record = memory, record
        except BaseException:
            memory.close()
            raise

    def _close(self) -> None:
        for rec in self._scratch.values():
            rec.close()
        self._scratch.clear()
        self.context = self.engine = None
        if self.memory is not None:
            self.memory.close()
            self.memory = None

    @property
    def fixed_batch(self) -> int | None:
        return self._fixed

    @property
    def max_batch(self) -> int | None:
        return self._max_batch

    def start(self, *, capacity: int) -> Recurrence:
        if not self._loaded:
            self.load()
        capacity = self._fixed or min(capacity, self._max_batch or capacity)
        return DeviceRecurrence(self, capacity=capacity)

    def _step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Host-to-host step (verify, compare): upload the feeds, run, download every output. The base
        class has already split the feeds to the engine's batch limits."""
        batch = len(feeds["inputs"])
        rec = self._scratch.get(batch)
        if rec is None:
            rec = self._scratch[batch] = DeviceRecurrence(self, capacity=self._fixed or batch)
        return rec.run_host(feeds)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        if self.record is not None:
            info.update(engine=asdict(self.record))
        return info


class DeviceRecurrence(Recurrence):
    """State on the GPU. Buffers hold ``capacity`` rows; the first ``batch`` rows are live. ``z_H``/``z_L``
    have two buffers each: a step reads ``[cur]`` and writes ``[1 - cur]``, then ``cur`` flips."""

    def __init__(self, runtime: TensorRTRuntime, *, capacity: int) -> None:
        self.runtime = runtime
        self.memory = memory = runtime.memory
        self.context = runtime.context
        cfg = runtime.config
        self.capacity = capacity
        self.fixed = runtime.fixed_batch
        self.names = input_names(cfg)
        f32 = 4
        self.row_bytes = {"inputs": cfg.seq_len * 4, "puzzle_embedding": cfg.puzzle_emb_ndim * f32,
                          "state": cfg.total_len * cfg.hidden_size * f32, "logits": cfg.seq_len * cfg.vocab_size * f32,
                          "q": f32}
        self.logit_shape = (cfg.seq_len, cfg.vocab_size)
        rb = self.row_bytes
        self.buffers: dict[str, DeviceBuffer] = {
            "inputs": memory.alloc(capacity * rb["inputs"]),
            "z_H0": memory.alloc(capacity * rb["state"]), "z_H1": memory.alloc(capacity * rb["state"]),
            "z_L0": memory.alloc(capacity * rb["state"]), "z_L1": memory.alloc(capacity * rb["state"]),
            "logits": memory.alloc(capacity * rb["logits"]), "q": memory.alloc(capacity * rb["q"]),
            "H_init": memory.alloc(capacity * rb["state"]), "L_init": memory.alloc(capacity * rb["state"]),
        }
        if "puzzle_embedding" in self.names:
            self.buffers["puzzle_embedding"] = memory.alloc(capacity * rb["puzzle_embedding"])
        for buffer in self.buffers.values():
            memory.zero(buffer)
        h_init, l_init = runtime.initial_state()
        shape = (capacity, cfg.total_len, cfg.hidden_size)
        memory.upload(self.buffers["H_init"], 0, np.broadcast_to(h_init.astype(np.float32), shape))
        memory.upload(self.buffers["L_init"], 0, np.broadcast_to(l_init.astype(np.float32), shape))
        self.cur = 0
        self._batch = 0
        self._q = np.zeros(capacity, np.float32)

    @property
    def batch(self) -> int:
        return self._batch

    def _run_rows(self) -> int:
        return self.fixed or self._batch  # a static-batch engine always runs all its rows

    def add(self, inputs: np.ndarray, puzzle_embedding: np.ndarray | None) -> None:
        n = len(inputs)
        start = self._batch
        if start + n > self.capacity:
            raise TrmEdgeError(f"recurrence holds at most {self.capacity} rows")
        rb, m, b = self.row_bytes, self.memory, self.buffers
        m.upload(b["inputs"], start * rb["inputs"], np.asarray(inputs, np.int32))
        if "puzzle_embedding" in self.names:
            m.upload(b["puzzle_embedding"], start * rb["puzzle_embedding"], np.asarray(puzzle_embedding, np.float32))
        m.copy(b[f"z_H{self.cur}"], start * rb["state"], b["H_init"], 0, n * rb["state"])
        m.copy(b[f"z_L{self.cur}"], start * rb["state"], b["L_init"], 0, n * rb["state"])
        self._batch += n

    def _bind_and_run(self) -> None:
        cfg, ctx, b = self.runtime.config, self.context, self.buffers
        rows = self._run_rows()
        nxt = 1 - self.cur
        for name, shape in dynamic_shapes(cfg, rows).items():
            if not ctx.set_input_shape(name, shape):
                raise TrmEdgeError(f"TensorRT rejected shape {shape} for {name!r} (outside the engine's profile?)")
        addresses = {"inputs": b["inputs"], "z_H": b[f"z_H{self.cur}"], "z_L": b[f"z_L{self.cur}"],
                     "z_H_next": b[f"z_H{nxt}"], "z_L_next": b[f"z_L{nxt}"], "logits": b["logits"],
                     "q_halt_logits": b["q"]}
        if "puzzle_embedding" in self.names:
            addresses["puzzle_embedding"] = b["puzzle_embedding"]
        for name, buffer in addresses.items():
            ctx.set_tensor_address(name, buffer.ptr)
        if not ctx.execute_async_v3(self.memory.stream):
            raise TrmEdgeError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        self.cur = nxt

    def step(self) -> np.ndarray:
        if self._batch == 0:
            return np.zeros(0, np.float32)
        self._bind_and_run()
        q = self._q[: self._batch]
        self.memory.download(q, self.buffers["q"], 0)  # the only per-step copy back: 4 bytes a puzzle
        self.memory.synchronize()
        return q.copy()

    def logits(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.intp)
        out = np.empty((len(rows), *self.logit_shape), np.float32)
        size = self.row_bytes["logits"]
        for i, (first, count) in enumerate_runs(rows):
            self.memory.download(out[i:i + count], self.buffers["logits"], int(first) * size)
        self.memory.synchronize()
        return out

    def keep(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.intp)
        if len(rows) and (np.any(np.diff(rows) <= 0) or rows[-1] >= self._batch):
            raise TrmEdgeError("keep() takes ascending row indices of the current batch")
        rb, b = self.row_bytes, self.buffers
        moved = [("inputs", rb["inputs"]), (f"z_H{self.cur}", rb["state"]), (f"z_L{self.cur}", rb["state"])]
        if "puzzle_embedding" in self.names:
            moved.append(("puzzle_embedding", rb["puzzle_embedding"]))
        # Row r moves down to slot i <= r; sources of later runs lie above every earlier destination,
        # so the compaction is safe in place (device-to-device copies on one stream run in order).
        for i, (first, count) in enumerate_runs(rows):
            shift = first - i  # rows to move down by (>= 0)
            if shift == 0:
                continue
            # cudaMemcpy must not overlap: move in chunks of at most ``shift`` rows, lowest first
            for done in range(0, count, shift):
                n = min(shift, count - done)
                for name, size in moved:
                    self.memory.copy(b[name], (i + done) * size, b[name], (first + done) * size, n * size)
        self._batch = len(rows)

    def run_host(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One step on host feeds (not the solver's path): upload everything, run, download everything."""
        cfg = self.runtime.config
        batch = len(feeds["inputs"])
        m, b = self.memory, self.buffers
        self.cur = 0
        m.upload(b["inputs"], 0, feeds["inputs"])
        m.upload(b["z_H0"], 0, feeds["z_H"])
        m.upload(b["z_L0"], 0, feeds["z_L"])
        if "puzzle_embedding" in self.names:
            m.upload(b["puzzle_embedding"], 0, feeds["puzzle_embedding"])
        self._batch = batch
        self._bind_and_run()
        state = (batch, cfg.total_len, cfg.hidden_size)
        out = {"z_H_next": np.empty(state, np.float32), "z_L_next": np.empty(state, np.float32),
               "logits": np.empty((batch, *self.logit_shape), np.float32),
               "q_halt_logits": np.empty(batch, np.float32)}
        m.download(out["z_H_next"], b[f"z_H{self.cur}"], 0)
        m.download(out["z_L_next"], b[f"z_L{self.cur}"], 0)
        m.download(out["logits"], b["logits"], 0)
        m.download(out["q_halt_logits"], b["q"], 0)
        m.synchronize()
        return out

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.runtime.config
        shape = (self._batch, cfg.total_len, cfg.hidden_size)
        z_H, z_L = np.empty(shape, np.float32), np.empty(shape, np.float32)
        self.memory.download(z_H, self.buffers[f"z_H{self.cur}"], 0)
        self.memory.download(z_L, self.buffers[f"z_L{self.cur}"], 0)
        self.memory.synchronize()
        return z_H, z_L

    def close(self) -> None:
        if self.memory is not None:
            self.memory.synchronize()
            for buffer in self.buffers.values():
                self.memory.free(buffer)
        self.buffers = {}


def enumerate_runs(rows: np.ndarray):
    """``[3, 4, 5, 9]`` -> ``(0, (3, 3)), (3, (9, 1))``: (position, (first row, count)) per contiguous run."""
    if len(rows) == 0:
        return
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(rows)]))
    for s, e in zip(starts, ends, strict=True):
        yield int(s), (int(rows[s]), int(e - s))
