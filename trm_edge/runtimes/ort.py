"""ONNX Runtime adapter: the bundle's step graph in an InferenceSession.

Providers: the CPU execution provider always; ``onnxruntime:cuda`` / ``onnxruntime:tensorrt`` when the
installed onnxruntime has them (``auto`` takes CUDA when present). Session options are the measured
choices below (benchmarks/ort_session_options.py; numbers in the runtimes report).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from trm_edge.errors import RuntimeUnavailableError, TrmEdgeError, choices
from trm_edge.runtimes.base import STEP_OUTPUTS, ModelSource, Runtime

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
    """The step graph in onnxruntime. ``options``: an :class:`OrtOptions` or its fields as keywords."""

    name = "onnxruntime"
    runs = ("bundle",)

    def __init__(self, source: ModelSource, *, device: str | None = None, options: OrtOptions | None = None,
                 **fields: Any) -> None:
        super().__init__(source, device=device)
        self.ort_options = options or OrtOptions(**fields)
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
        start = time.perf_counter()
        try:
            self.session = ort.InferenceSession(str(self.source.bundle.step_graph_path),
                                                sess_options=session_options(self.ort_options),
                                                providers=providers, provider_options=provider_options)
        except Exception as error:  # onnxruntime raises its own untyped exceptions (Fail, InvalidGraph, ...)
            raise RuntimeUnavailableError(f"onnxruntime cannot load {str(self.source.bundle.step_graph_path)!r}: "
                                          f"{' '.join(str(error).split())[:300]}") from None
        self.load_seconds = time.perf_counter() - start
        self.providers = list(self.session.get_providers())
        graph_inputs = {i.name: i for i in self.session.get_inputs()}
        missing = [n for n in self.input_names if n not in graph_inputs]
        outputs = [o.name for o in self.session.get_outputs()]
        if missing or any(n not in outputs for n in STEP_OUTPUTS):
            raise RuntimeUnavailableError(
                f"{str(self.source.bundle.step_graph_path)!r} is not a step graph: inputs "
                f"{choices(graph_inputs)}, outputs {choices(outputs)}")
        batch_dim = graph_inputs["inputs"].shape[0]
        self._fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        self._output_names = list(STEP_OUTPUTS)

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

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "providers": self.providers, "session_options": asdict(self.ort_options),
                "load_seconds": self.load_seconds}
