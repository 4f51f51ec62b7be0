"""ONNX Runtime adapter: the bundle's step graph in an InferenceSession.

Providers: the CPU execution provider always; ``onnxruntime:cuda`` / ``onnxruntime:tensorrt`` when the
installed onnxruntime has them (``auto`` takes CUDA when present). Session options are the measured
choices below (benchmarks/ort_session_options.py; numbers in the runtimes report).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from trm_edge.bundle.contract import STEP_OUTPUTS, check_graph
from trm_edge.errors import RuntimeUnavailableError, TrmEdgeError, choices
from trm_edge.runtimes.interface import Runtime
from trm_edge.runtimes.model_source import ModelSource
from trm_edge.runtimes.recurrence import Recurrence, kept_rows

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
             "tensorrt": "TensorrtExecutionProvider"}
OPT_LEVELS = ("disable", "basic", "extended", "all")


@dataclass(frozen=True)
class OrtOptions:
    """Session options. Defaults are what measured best on the 2-core AVX-512 dev box."""

    intra_op_threads: int = 0  # 0: one per physical core; 1 won at batch 1 on a busy box, lost at batch 16
    graph_optimization: str = "all"  # fusions; disable/basic/extended measured no faster, load ~1 s either way
    memory_arena: bool = True  # batches shrink as puzzles halt: the arena reuses blocks (off: no faster)
    memory_pattern: bool = False  # planning is keyed by shape and shrinking batches defeat it (on: no faster)
    spinning: bool = False  # no busy-wait between ops: 1.3-2x faster when cores are shared (measured)
    sequential: bool = True  # the step graph is a chain; parallel execution only adds scheduling
    # Calibration's range graph: the default order runs the appended reductions last, keeping every measured
    # activation alive until then (1.87 GB instead of 0.65 GB for one arc-agi-1 step at batch 4,
    # benchmarks/pipeline_cost.py); priority-based order frees them as it goes.
    priority_order: bool = False

    def __post_init__(self) -> None:
        if self.graph_optimization not in OPT_LEVELS:
            raise TrmEdgeError(f"graph_optimization={self.graph_optimization!r}; choices: {choices(OPT_LEVELS)}")
        if self.intra_op_threads < 0:
            raise TrmEdgeError(f"intra_op_threads={self.intra_op_threads} must be >= 0")


def session_options(options: OrtOptions) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL if options.sequential else ort.ExecutionMode.ORT_PARALLEL
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[options.graph_optimization]
    so.enable_cpu_mem_arena = options.memory_arena
    so.enable_mem_pattern = options.memory_pattern
    so.log_severity_level = 3  # errors only: warnings about unused initializers are noise to users
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.spinning else "0")
    if options.priority_order:
        so.execution_order = ort.ExecutionOrder.PRIORITY_BASED
    return so


def select_providers(device: str | None, available: list[str]) -> list[str]:
    """Execution providers for ``device`` (cpu, cuda, tensorrt, or None/auto)."""
    device = (device or "auto").lower()
    if device == "auto":
        return [p for p in (PROVIDERS["cuda"],) if p in available] + [PROVIDERS["cpu"]]
    if device not in PROVIDERS:
        raise RuntimeUnavailableError(f"unknown onnxruntime device {device!r}; choices: {choices(PROVIDERS)}")
    wanted = PROVIDERS[device]
    if wanted not in available:
        usable = [k for k, v in PROVIDERS.items() if v in available]
        raise RuntimeUnavailableError(
            f"this onnxruntime has no {wanted} (install onnxruntime-gpu with CUDA/TensorRT for it); "
            f"its providers here: {choices(usable)}")
    chain = [wanted]
    if device == "tensorrt" and PROVIDERS["cuda"] in available:
        chain.append(PROVIDERS["cuda"])  # nodes TensorRT rejects fall back to CUDA, then CPU
    return list(dict.fromkeys([*chain, PROVIDERS["cpu"]]))  # CPU last, once


class OnnxRuntime(Runtime):
    """The step graph in onnxruntime. ``options``: session options (default :class:`OrtOptions` with ``threads``
    intra-op threads); ``extra_outputs``: further graph outputs each step returns beside the contract's (the range
    reductions calibration appends to the float graph)."""

    name = "onnxruntime"
    runs = ("bundle",)

    def __init__(self, source: ModelSource, *, device: str | None = None, threads: int | None = None,
                 precision_hint: str | None = None, options: OrtOptions | None = None,
                 extra_outputs: Sequence[str] = ()) -> None:
        super().__init__(source, device=device, threads=threads, precision_hint=precision_hint)
        if options is not None and threads is not None and options.intra_op_threads != threads:
            raise TrmEdgeError(f"threads={threads} disagrees with options.intra_op_threads="
                               f"{options.intra_op_threads}; give one of them")
        self.ort_options = options or OrtOptions(intra_op_threads=threads or 0)
        self.extra_outputs = tuple(extra_outputs)
        self.session: Any = None
        self.providers: list[str] = []
        self._fixed_batch: int | None = None
        self.load_seconds: float | None = None

    def _load(self) -> None:
        import time

        import onnxruntime as ort

        providers = select_providers(self.device, ort.get_available_providers())
        provider_options: list[dict[str, str]] = []
        for provider in providers:
            if provider == PROVIDERS["tensorrt"]:
                cache = os.path.join(str(self.source.path), "ort-trt-cache")
                provider_options.append({"trt_engine_cache_enable": "True", "trt_engine_cache_path": cache,
                                         "trt_fp16_enable": str(self.source.precision == "fp16")})
            else:
                provider_options.append({})
        bundle = self.source.bundle
        # the verified bytes; only weights past the 2 GB protobuf limit make onnxruntime open the (verified) files
        model = str(bundle.step_graph_path) if bundle.graph_has_external_data() else bundle.graph_bytes()
        start = time.perf_counter()
        try:
            self.session = ort.InferenceSession(model, sess_options=session_options(self.ort_options),
                                                providers=providers, provider_options=provider_options)
        except Exception as error:  # onnxruntime raises its own untyped exceptions (Fail, InvalidGraph, ...)
            raise RuntimeUnavailableError(f"onnxruntime cannot load {str(bundle.step_graph_path)!r}: "
                                          f"{' '.join(str(error).split())[:300]}") from None
        self.load_seconds = time.perf_counter() - start
        self.providers = list(self.session.get_providers())
        graph_inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        check_graph(self.config, {n: i.shape for n, i in graph_inputs.items()}, outputs, where=bundle.where)
        missing = [n for n in self.extra_outputs if n not in outputs]
        if missing:
            raise RuntimeUnavailableError(f"{str(bundle.step_graph_path)!r} has no output(s) {choices(missing)}")
        batch_dim = graph_inputs["inputs"].shape[0]
        self._fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        self._output_names = [*STEP_OUTPUTS, *self.extra_outputs]

    def _close(self) -> None:
        self.session = None

    @property
    def fixed_batch(self) -> int | None:
        return self._fixed_batch

    def _step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self._output_names, feeds)
        if len(values) != len(self._output_names):  # what zip(strict=True) checked, before Python 3.10
            raise RuntimeError(f"onnxruntime returned {len(values)} outputs for {len(self._output_names)} names")
        return dict(zip(self._output_names, values))  # noqa: B905

    def start(self, *, capacity: int) -> Recurrence:
        """On the CPU provider with a dynamic batch the state stays in buffers onnxruntime writes in place
        (:class:`BoundRecurrence`); elsewhere (CUDA/TensorRT providers, static-batch graphs) the host loop."""
        if not self._loaded:
            self.load()
        if self._fixed_batch is None and self.providers == [PROVIDERS["cpu"]] and not self.extra_outputs:
            return BoundRecurrence(self, capacity=capacity)
        return super().start(capacity=capacity)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "providers": self.providers, "session_options": asdict(self.ort_options),
                "load_seconds": self.load_seconds}


class BoundRecurrence(Recurrence):
    """The solver's loop on the CPU provider without per-step allocation: ``z_H``/``z_L`` live in two
    preallocated buffers each (ping-pong), logits and ``q_halt_logits`` in one each, and onnxruntime reads
    and writes them in place through I/O bindings (one per batch size and side, made once). Rows that halt
    are dropped by one gather into the spare state buffer; logits are read only for the rows asked for."""

    def __init__(self, runtime: OnnxRuntime, *, capacity: int) -> None:
        cfg = runtime.config
        self.session = runtime.session
        self.capacity = capacity
        self.names = runtime.input_names
        state = (capacity, cfg.total_len, cfg.hidden_size)
        self.z = {"z_H": [np.zeros(state, np.float32), np.zeros(state, np.float32)],
                  "z_L": [np.zeros(state, np.float32), np.zeros(state, np.float32)]}
        self.rows = {"inputs": np.zeros((capacity, cfg.seq_len), np.int32),
                     "logits": np.zeros((capacity, cfg.seq_len, cfg.vocab_size), np.float32)}
        if "puzzle_embedding" in self.names:
            self.rows["puzzle_embedding"] = np.zeros((capacity, cfg.puzzle_emb_ndim), np.float32)
        self.q = np.zeros(capacity, np.float32)
        self.init = dict(zip(("z_H", "z_L"), runtime.initial_state()))  # noqa: B905
        self.bindings: dict[tuple[int, int], Any] = {}
        self.cur = 0
        self._batch = 0

    @property
    def batch(self) -> int:
        return self._batch

    def add(self, inputs: np.ndarray, puzzle_embedding: np.ndarray | None) -> None:
        n, start = len(inputs), self._batch
        if start + n > self.capacity:
            raise TrmEdgeError(f"recurrence holds at most {self.capacity} rows")
        self.rows["inputs"][start:start + n] = inputs
        if "puzzle_embedding" in self.names:
            self.rows["puzzle_embedding"][start:start + n] = puzzle_embedding
        for name, init in self.init.items():
            self.z[name][self.cur][start:start + n] = init
        self._batch += n

    def _binding(self, batch: int, cur: int) -> Any:
        key = (batch, cur)
        if key not in self.bindings:
            binding = self.session.io_binding()
            feeds = {"inputs": self.rows["inputs"], "z_H": self.z["z_H"][cur], "z_L": self.z["z_L"][cur]}
            if "puzzle_embedding" in self.names:
                feeds["puzzle_embedding"] = self.rows["puzzle_embedding"]
            outputs = {"z_H_next": self.z["z_H"][1 - cur], "z_L_next": self.z["z_L"][1 - cur],
                       "logits": self.rows["logits"], "q_halt_logits": self.q}
            for bind, arrays in ((binding.bind_input, feeds), (binding.bind_output, outputs)):
                for name, array in arrays.items():  # by address: a binding made once sees every later write
                    view = array[:batch]
                    bind(name, "cpu", 0, view.dtype, list(view.shape), view.ctypes.data)
            self.bindings[key] = binding
        return self.bindings[key]

    def step(self) -> np.ndarray:
        if self._batch == 0:
            return np.zeros(0, np.float32)
        self.session.run_with_iobinding(self._binding(self._batch, self.cur))
        self.cur = 1 - self.cur
        return self.q[: self._batch].copy()

    def logits(self, rows: np.ndarray) -> np.ndarray:
        return self.rows["logits"][np.asarray(rows, dtype=np.intp)]

    def keep(self, rows: np.ndarray) -> None:
        rows = kept_rows(rows, self._batch)
        kept = len(rows)
        if np.array_equal(rows, np.arange(kept)):  # a prefix stays where it is
            self._batch = kept
            return
        for pair in self.z.values():
            np.take(pair[self.cur][: self._batch], rows, axis=0, out=pair[1 - self.cur][:kept])
        self.cur = 1 - self.cur
        for array in self.rows.values():
            array[:kept] = array[rows]
        self._batch = kept

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        return self.z["z_H"][self.cur][: self._batch].copy(), self.z["z_L"][self.cur][: self._batch].copy()
