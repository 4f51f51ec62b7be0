"""The registry of runtimes: where each adapter lives, what it needs installed, which bundle precisions its parity
is tested for; lookup by name or alias (sources.py picks the default runtime for a model source).

Nothing here imports an adapter: ``get_runtime`` imports it by name when asked.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field

from trm_edge.errors import RuntimeUnavailableError, choices


@dataclass(frozen=True)
class RuntimeEntry:
    """A registered runtime: where its adapter lives and what it needs installed."""

    name: str
    module: str
    cls: str
    requires: tuple[tuple[str, ...], ...]  # import names; each inner tuple: any one of them suffices
    install: str  # what to tell a user to install
    runs: tuple[str, ...]
    description: str
    aliases: tuple[str, ...] = field(default=())
    # Bundle precisions whose parity this runtime is tested for (tests/runtimes/test_registry.py runs each claim):
    # the solver picks it by default for those only.
    parity: tuple[str, ...] = field(default=("fp32",))

    def missing(self) -> list[str]:
        """The requirement groups not importable here (cheap: no import happens)."""
        return [" or ".join(group) for group in self.requires if not any(_importable(m) for m in group)]

    def available(self) -> bool:
        return not self.missing()


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that is missing, or a None entry in sys.modules
        return False


RUNTIMES: dict[str, RuntimeEntry] = {
    entry.name: entry
    for entry in (
        RuntimeEntry("onnxruntime", "trm_edge.runtimes.ort", "OnnxRuntime", (("onnxruntime",),),
                     "pip install onnxruntime (or onnxruntime-gpu for the CUDA/TensorRT providers)", ("bundle",),
                     "ONNX Runtime: CPU provider; CUDA and TensorRT providers when installed (onnxruntime:cuda, "
                     "onnxruntime:tensorrt)", aliases=("ort",), parity=("fp32", "fp16", "int8")),
        RuntimeEntry("tensorrt", "trm_edge.runtimes.trt", "TensorRTRuntime",
                     (("tensorrt",), ("cuda", "torch")),
                     "pip install 'trm-edge[tensorrt]' (tensorrt and cuda-python; on a Jetson TensorRT comes with "
                     "JetPack: apt install python3-libnvinfer, then pip install 'trm-edge[jetson]')", ("bundle",),
                     "native TensorRT engine (build it on the device: trm-edge build-engine BUNDLE)",
                     aliases=("trt",), parity=("fp32", "fp16", "int8")),
        RuntimeEntry("openvino", "trm_edge.runtimes.openvino", "OpenVinoRuntime", (("openvino",),),
                     "pip install 'trm-edge[openvino]'", ("bundle",),
                     "OpenVINO on the bundle's ONNX: CPU in float32 (openvino:cpu:bf16 for bf16), openvino:gpu and "
                     "openvino:npu on Intel GPUs and NPUs", aliases=("ov",), parity=("fp32", "int8")),
        RuntimeEntry("torch", "trm_edge.runtimes.torch_ref", "TorchRuntime", (("torch",),),
                     "pip install 'trm-edge[host]' (torch, the reference runtime, for checkpoints; a device runs a "
                     "bundle instead: trm-edge export CHECKPOINT --target cpu -o BUNDLE, then --model BUNDLE)",
                     ("checkpoint",),
                     "PyTorch reference: model.step from a checkpoint directory", aliases=("pytorch",)),
    )
}


def lookup(name: str) -> RuntimeEntry:
    for entry in RUNTIMES.values():
        if name == entry.name or name in entry.aliases:
            return entry
    raise RuntimeUnavailableError(f"unknown runtime {name!r}; runtimes: {choices(RUNTIMES)}")


def available_runtimes() -> list[str]:
    """Names of the runtimes whose packages are installed here (the device may still be missing)."""
    return [name for name, entry in RUNTIMES.items() if entry.available()]


def runtimes_for(kind: str) -> list[str]:
    return [name for name, entry in RUNTIMES.items() if kind in entry.runs]


def parse_runtime_spec(spec: str) -> tuple[str, str | None]:
    """``"onnxruntime:cuda"`` -> ``("onnxruntime", "cuda")``; aliases resolved."""
    name, _, device = spec.strip().partition(":")
    return lookup(name.strip().lower()).name, (device.strip().lower() or None)


def get_runtime(name: str) -> type:
    """The adapter class of a runtime, imported now. Raises RuntimeUnavailableError naming the
    package to install and the runtimes that are available here."""
    entry = lookup(name)
    missing = entry.missing()
    if missing:
        raise RuntimeUnavailableError(
            f"the {entry.name!r} runtime needs {', '.join(missing)}, which is not installed here: "
            f"{entry.install}; available runtimes: {choices(available_runtimes()) or 'none'}")
    module = importlib.import_module(entry.module)
    return getattr(module, entry.cls)
