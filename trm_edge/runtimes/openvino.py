"""OpenVINO: the bundle's step graph (the same ONNX file onnxruntime runs, no second export) compiled by
OpenVINO for an Intel CPU, GPU or NPU.

``openvino`` / ``openvino:cpu`` runs float32: OpenVINO's CPU plugin otherwise computes a float32 graph in bf16
on CPUs with bf16 units, which moved random-weight step outputs by 0.3 relative (issue 13's measurement).
``openvino:cpu:bf16`` asks for bf16 explicitly; ``openvino:gpu`` / ``openvino:npu`` pass the device through
(their default precision is theirs). INT8 bundles run their Q/DQ graph as OpenVINO's low-precision pipeline.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trm_edge.bundle.contract import STEP_INPUTS, STEP_OUTPUTS, check_graph
from trm_edge.errors import RuntimeUnavailableError, choices
from trm_edge.runtimes.interface import Runtime
from trm_edge.runtimes.model_source import ModelSource

PRECISIONS = ("f32", "bf16")


def parse_device(device: str | None) -> tuple[str, str | None]:
    """``cpu`` -> (CPU, f32); ``cpu:bf16`` -> (CPU, bf16); ``gpu`` -> (GPU, None: the plugin's default)."""
    name, _, precision = (device or "cpu").partition(":")
    name = name.upper()
    precision = precision or ("f32" if name == "CPU" else "")
    if precision and precision not in PRECISIONS:
        raise RuntimeUnavailableError(f"openvino precision {precision!r}; choices: {choices(PRECISIONS)} "
                                      "(e.g. openvino:cpu:bf16)")
    return name, precision or None


class OpenVinoRuntime(Runtime):
    """The step graph compiled by OpenVINO (``openvino[:DEVICE[:PRECISION]]``)."""

    name = "openvino"
    runs = ("bundle",)

    precision_hints = PRECISIONS

    def __init__(self, source: ModelSource, *, device: str | None = None, threads: int | None = None,
                 precision_hint: str | None = None) -> None:
        super().__init__(source, device=device, threads=threads, precision_hint=precision_hint)
        self.ov_device, self.precision = parse_device(device)
        if precision_hint is not None:
            if self.ov_device != "CPU" or (device or "").count(":"):
                raise RuntimeUnavailableError(f"give the precision once: in the runtime spec (openvino:cpu:bf16) or "
                                              f"as the precision hint {precision_hint!r}, for the CPU device")
            self.precision = precision_hint
        self.compiled: Any = None
        self.request: Any = None
        self._fixed_batch: int | None = None

    def _load(self) -> None:
        import openvino as ov

        core = ov.Core()
        if self.ov_device not in core.available_devices and self.ov_device != "AUTO":
            raise RuntimeUnavailableError(f"OpenVINO has no {self.ov_device} device here; devices: "
                                          f"{choices(core.available_devices)}")
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if self.precision is not None:
            config["INFERENCE_PRECISION_HINT"] = self.precision
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        bundle = self.source.bundle
        path = str(bundle.step_graph_path)
        try:  # the verified bytes; weights past the 2 GB protobuf limit make OpenVINO open the (verified) files
            model = core.read_model(path if bundle.graph_has_external_data() else bundle.graph_bytes())
            self.compiled = core.compile_model(model, self.ov_device, config)
        except RuntimeError as error:  # OpenVINO raises RuntimeError for graphs it cannot read or compile
            raise RuntimeUnavailableError(f"OpenVINO cannot compile {path!r} for {self.ov_device}: "
                                          f"{' '.join(str(error).split())[:300]}") from None
        inputs = {next((n for n in port.get_names() if n in STEP_INPUTS), port.get_any_name()): _dims(port)
                  for port in self.compiled.inputs}  # a port may have aliases ('/Cast_output_0')
        outputs = {name: _dims(port) for port in self.compiled.outputs for name in port.get_names()}
        check_graph(self.config, inputs, outputs, where=bundle.where)
        batch = self.compiled.input("inputs").get_partial_shape()[0]
        self._fixed_batch = batch.get_length() if batch.is_static else None
        self.request = self.compiled.create_infer_request()

    def _close(self) -> None:
        self.request = self.compiled = None

    @property
    def fixed_batch(self) -> int | None:
        return self._fixed_batch

    def _step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.request.infer(feeds)
        return {name: np.array(self.request.get_tensor(name).data, copy=True) for name in STEP_OUTPUTS}

    def describe(self) -> dict[str, Any]:
        info = {**super().describe(), "device": self.ov_device, "inference_precision": self.precision}
        if self.compiled is not None:
            import openvino as ov

            info["openvino"] = ov.__version__ if hasattr(ov, "__version__") else ov.get_version()
        return info


def _dims(port: Any) -> list[Any]:
    """A port's dims as check_graph takes them: an int where static, None where dynamic."""
    return [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
