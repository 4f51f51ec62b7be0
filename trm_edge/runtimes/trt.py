"""Native TensorRT: a runtime whose state stays on the GPU (building is in ``trt_build``).

One adapter for TensorRT 8.5 through 10.x: only the named-tensor API is used (``num_io_tensors``,
``get_tensor_name``, ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``; all present
from 8.5, and the binding-index API they replace is gone in 10). Device memory: ``trm_edge.runtimes.cuda``.

Between supervision steps ``z_H``/``z_L`` never leave the GPU: two state buffers are swapped each step
(ping-pong), and only ``q_halt_logits`` (4 bytes per puzzle, into page-locked host memory) comes back for
the halting decision; the logits of a puzzle are copied back once, at the step it finishes. Each step is
captured once as a CUDA graph per (batch, ping-pong side) and replayed (one launch instead of one per kernel);
where capture fails the steps run eagerly, with a warning.

Engines are specific to a GPU model (name, compute capability, SM count, memory) and a TensorRT version,
so they are built on the device that runs them (``trm-edge build-engine``) and the manifest records where;
a load anywhere else is refused with a message saying to rebuild.

This module has not been run on a GPU in CI (there is none there); tests/runtimes/test_trt.py checks
the buffer logic with an asynchronous numpy stand-in for CUDA and onnxruntime standing in for the engine,
and its ``gpu``-marked tests run the real thing where a GPU with TensorRT is present.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from trm_edge.bundle.contract import STEP_OUTPUTS, input_names
from trm_edge.errors import BundleError, RuntimeUnavailableError, TrmEdgeError, choices
from trm_edge.runtimes.cuda import CudaMemory, DeviceBuffer, cuda_memory, parse_device_index
from trm_edge.runtimes.interface import Runtime
from trm_edge.runtimes.model_source import ModelSource
from trm_edge.runtimes.recurrence import Recurrence, kept_rows

ENGINE_FILE = "step.engine"
PRECISIONS = ("fp32", "fp16", "int8")


# -- what an engine was built for -------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo:
    """The GPU and TensorRT version an engine is built on or loaded on."""

    gpu: str
    compute_capability: str  # "8.7"
    multiprocessors: int
    memory_gib: int
    tensorrt: str

    def describe(self) -> str:
        return (f"{self.gpu} (sm_{self.compute_capability.replace('.', '')}, {self.multiprocessors} SMs, "
                f"{self.memory_gib} GiB) with TensorRT {self.tensorrt}")


@dataclass(frozen=True)
class EngineRecord:
    """``manifest["engines"]["tensorrt"]``: the engine file and the device it was built on."""

    file: str
    precision: str
    gpu: str
    compute_capability: str
    multiprocessors: int
    memory_gib: int
    tensorrt: str
    min_batch: int
    opt_batch: int
    max_batch: int
    built_at: str
    trtexec: str
    dla_core: int | None = None
    power_mode: str | None = None  # Jetson nvpmodel mode during the build

    @property
    def device(self) -> DeviceInfo:
        return DeviceInfo(self.gpu, self.compute_capability, self.multiprocessors, self.memory_gib, self.tensorrt)

    @classmethod
    def from_entry(cls, raw: Mapping[str, Any] | None) -> EngineRecord | None:
        """The record from the manifest's ``engines.tensorrt`` entry (None: no engine built)."""
        if not raw:
            return None
        optional = ("dla_core", "power_mode")
        try:
            return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k not in optional},
                       **{k: raw.get(k) for k in optional})
        except (KeyError, TypeError) as error:
            raise BundleError(f"the manifest's engines.tensorrt entry is malformed or from an older trm-edge "
                              f"(missing {error}); rebuild the engine with `trm-edge build-engine BUNDLE`") from None


def check_engine_device(record: EngineRecord, here: DeviceInfo, *, bundle: str) -> None:
    """Refuse an engine built on another GPU model (name, compute capability, SMs, memory) or TensorRT."""
    if record.device != here:
        raise BundleError(
            f"the TensorRT engine {record.file!r} in {bundle!r} was built on {record.device.describe()}; this device "
            f"is {here.describe()}. Engines only run where they were built: rebuild it here with "
            f"`trm-edge build-engine {bundle}`")


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
    gpu = memory.gpu_info()
    return DeviceInfo(gpu.name, gpu.compute_capability, gpu.multiprocessors, gpu.memory_gib, trt.__version__)


# -- shapes ----------------------------------------------------------------------------------------------


def dynamic_shapes(config: Any, batch: int) -> dict[str, tuple[int, ...]]:
    """Input shapes of the step graph at ``batch``."""
    shapes = {"inputs": (batch, config.seq_len), "z_H": (batch, config.total_len, config.hidden_size),
              "z_L": (batch, config.total_len, config.hidden_size),
              "puzzle_embedding": (batch, config.puzzle_emb_ndim)}
    return {name: shapes[name] for name in input_names(config)}


# -- running -------------------------------------------------------------------------------------------


class TensorRTRuntime(Runtime):
    """The bundle's TensorRT engine. Needs ``trm-edge build-engine`` on this device first.
    ``tensorrt:N`` runs on CUDA device N."""

    name = "tensorrt"
    runs = ("bundle",)

    def __init__(self, source: ModelSource, *, device: str | None = None, threads: int | None = None,
                 precision_hint: str | None = None, cuda_graphs: bool = True) -> None:
        """``threads`` does not apply (the GPU runs the step); the engine's precision was fixed at build time.
        ``cuda_graphs``: replay the solver's steps as captured CUDA graphs."""
        super().__init__(source, device=device, threads=threads, precision_hint=precision_hint)
        self.device_index = parse_device_index(device)
        self.record: EngineRecord | None = None
        self.memory: CudaMemory | None = None
        self.context: Any = None
        self.engine: Any = None
        self._max_batch: int | None = None
        self._fixed: int | None = None
        self._scratch: DeviceRecurrence | None = None
        self._recurrences: list[DeviceRecurrence] = []  # every open one, freed at close
        self.cuda_graphs = cuda_graphs

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
        record = EngineRecord.from_entry(self.source.bundle.manifest.tensorrt_engine)
        if record is None:
            raise BundleError(f"{str(self.source.path)!r} has no TensorRT engine; build one on this device with "
                              f"`trm-edge build-engine {self.source.path}` (or use --runtime onnxruntime)")
        trt = import_tensorrt()
        memory = cuda_memory(self.device_index)
        try:
            check_engine_device(record, here(memory, trt), bundle=str(self.source.path))
            self.engine = engine = self._deserialize(trt, record)
            batch_dim = int(engine.get_tensor_shape("inputs")[0])
            self._fixed = batch_dim if batch_dim > 0 else None
            self._max_batch = self._fixed or record.max_batch
            self.context = engine.create_execution_context()
            if self.context is None:
                raise RuntimeUnavailableError("TensorRT could not create an execution context (out of GPU memory?)")
            self.memory, self.record = memory, record
        except BaseException:
            self.engine = self.context = None
            memory.close()
            raise

    def _deserialize(self, trt: Any, record: EngineRecord) -> Any:
        """The engine, checked against the step-graph contract (tensor names, modes, dtypes)."""
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if record.dla_core is not None:
            runtime.DLA_core = record.dla_core
        engine = runtime.deserialize_cuda_engine(bytes(self.source.bundle.read(record.file)))
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
        for name in wanted:
            dtype = trt.int32 if name == "inputs" else trt.float32
            if engine.get_tensor_dtype(name) != dtype:
                raise BundleError(f"engine tensor {name!r} is {engine.get_tensor_dtype(name)}, expected {dtype}")
        return engine

    def _close(self) -> None:
        for rec in list(self._recurrences):
            rec.close()
        self._scratch = None
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
        class has already split the feeds to the engine's batch limits, so one scratch recurrence of the
        largest batch serves every call."""
        if self._scratch is None:
            self._scratch = DeviceRecurrence(self, capacity=self._fixed or self._max_batch or len(feeds["inputs"]))
        return self._scratch.run_host(feeds)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        if self.record is not None:
            info.update(engine=asdict(self.record))
        return info


class DeviceRecurrence(Recurrence):
    """State on the GPU. Buffers hold ``capacity`` rows; the first ``batch`` rows are live. ``z_H``/``z_L``
    have two buffers each: a step reads ``[cur]`` and writes ``[1 - cur]``, then ``cur`` flips; a
    compaction also writes into the spare one."""

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
        sizes = {"inputs": rb["inputs"], "z_H0": rb["state"], "z_H1": rb["state"], "z_L0": rb["state"],
                 "z_L1": rb["state"], "logits": rb["logits"], "q": rb["q"], "H_init": rb["state"],
                 "L_init": rb["state"]}
        if "puzzle_embedding" in self.names:
            sizes["puzzle_embedding"] = rb["puzzle_embedding"]
        self.buffers: dict[str, DeviceBuffer] = {}
        try:
            for name, size in sizes.items():
                self.buffers[name] = memory.alloc(capacity * size)
            for buffer in self.buffers.values():
                memory.zero(buffer)
            h_init, l_init = runtime.initial_state()
            shape = (capacity, cfg.total_len, cfg.hidden_size)
            memory.upload(self.buffers["H_init"], 0, np.broadcast_to(h_init.astype(np.float32), shape))
            memory.upload(self.buffers["L_init"], 0, np.broadcast_to(l_init.astype(np.float32), shape))
            self._q = memory.host_array(capacity, np.float32)  # page-locked: the per-step download is async
        except BaseException:
            self._free()
            raise
        runtime._recurrences.append(self)
        self.graphs: dict[tuple[int, int], Any] = {}  # (rows, cur) -> captured step
        self.cur = 0
        self._batch = 0

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

    def _bind_and_run(self, *, graphs: bool = False) -> None:
        """One step from ``[cur]`` into ``[1 - cur]``. With ``graphs`` (the solver's loop) the step is captured
        as a CUDA graph the first time a (rows, cur) pair runs, right after that eager run (TensorRT wants one
        enqueue after a shape change before a capture), and replayed as one launch from then on."""
        key = (self._run_rows(), self.cur)
        if graphs and key in self.graphs:
            self.memory.replay(self.graphs[key])
        else:
            self._bind(*key)
            self._execute()
            if graphs and self.runtime.cuda_graphs:
                self._capture(key)
        self.cur = 1 - self.cur

    def _execute(self) -> None:
        if not self.context.execute_async_v3(self.memory.stream):
            raise TrmEdgeError("TensorRT execute_async_v3 failed (see the TensorRT log)")

    def _capture(self, key: tuple[int, int]) -> None:
        try:
            self.memory.synchronize()
            self.graphs[key] = self.memory.capture(self._execute)
        except (TrmEdgeError, RuntimeError) as error:  # no graph capture here: run every step eagerly
            self.runtime.cuda_graphs = False
            warnings.warn(f"CUDA graph capture failed ({error}); running TensorRT steps without graphs",
                          RuntimeWarning, stacklevel=2)

    def _bind(self, rows: int, cur: int) -> None:
        cfg, ctx, b = self.runtime.config, self.context, self.buffers
        nxt = 1 - cur
        for name, shape in dynamic_shapes(cfg, rows).items():
            if not ctx.set_input_shape(name, shape):
                raise TrmEdgeError(f"TensorRT rejected shape {shape} for {name!r} (outside the engine's profile?)")
        addresses = {"inputs": b["inputs"], "z_H": b[f"z_H{cur}"], "z_L": b[f"z_L{cur}"],
                     "z_H_next": b[f"z_H{nxt}"], "z_L_next": b[f"z_L{nxt}"], "logits": b["logits"],
                     "q_halt_logits": b["q"]}
        if "puzzle_embedding" in self.names:
            addresses["puzzle_embedding"] = b["puzzle_embedding"]
        for name, buffer in addresses.items():
            if not ctx.set_tensor_address(name, buffer.ptr):
                raise TrmEdgeError(f"TensorRT rejected the address of {name!r} (see the TensorRT log)")

    def step(self) -> np.ndarray:
        if self._batch == 0:
            return np.zeros(0, np.float32)
        self._bind_and_run(graphs=True)
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
        rows = kept_rows(rows, self._batch)
        runs = list(enumerate_runs(rows))
        if all(first == i for i, (first, _) in runs):  # a prefix stays where it is
            self._batch = len(rows)
            return
        rb, b, m = self.row_bytes, self.buffers, self.memory
        nxt = 1 - self.cur
        for name in ("z_H", "z_L"):  # one copy per run into the spare ping-pong buffer
            for i, (first, count) in runs:
                m.copy(b[f"{name}{nxt}"], i * rb["state"], b[f"{name}{self.cur}"], first * rb["state"],
                       count * rb["state"])
        self.cur = nxt
        small = [("inputs", rb["inputs"]), ("logits", rb["logits"])]
        if "puzzle_embedding" in self.names:
            small.append(("puzzle_embedding", rb["puzzle_embedding"]))
        # The small buffers compact in place: row r moves down to slot i <= r; sources of later runs lie
        # above every earlier destination (copies on one stream run in order), and cudaMemcpy must not
        # overlap, so a run moves in chunks of at most ``shift`` rows, lowest first.
        for i, (first, count) in runs:
            shift = first - i
            if shift == 0:
                continue
            for done in range(0, count, shift):
                n = min(shift, count - done)
                for name, size in small:
                    m.copy(b[name], (i + done) * size, b[name], (first + done) * size, n * size)
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

    def _free(self) -> None:
        for buffer in self.buffers.values():
            self.memory.free(buffer)
        self.buffers = {}

    def close(self) -> None:
        if self.buffers:
            self.memory.synchronize()
            for graph in self.graphs.values():
                self.memory.release(graph)
            self.graphs = {}
            self._free()
        if self in self.runtime._recurrences:
            self.runtime._recurrences.remove(self)


def enumerate_runs(rows: np.ndarray):
    """``[3, 4, 5, 9]`` -> ``(0, (3, 3)), (3, (9, 1))``: (position, (first row, count)) per contiguous run."""
    if len(rows) == 0:
        return
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(rows)]))
    for s, e in zip(starts, ends):  # noqa: B905 (equal by construction; Python 3.8 has no strict=)
        yield int(s), (int(rows[s]), int(e - s))
