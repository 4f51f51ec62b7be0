"""bundle -> bundle quantization: INT8 calibrated on recursion trajectories, per target format, with accuracy
control and a parity report; FP16 for GPU targets.

Importing this package is cheap (no onnx, onnxruntime or NNCF until used). The API:

- ``quantize_bundle(bundle, output, options=QuantizeOptions(...), *, force=False, log=None) -> QuantizeResult``
- ``QuantizeOptions`` (precision, backend, method, calibration source and sizes, max_drop, exclude, ...)
- ``Precision``, ``Backend``, ``Method`` (enums), ``int8_format(target)`` (the target's ``Int8Format``, checked)
- calibration: ``load_calibration``, ``record`` (float32 trajectories + per-step ranges), ``StateReader``
  (the ``CalibrationReader`` protocol: ``get_next``/``rewind``, iterable), ``StepRanges``
"""

from __future__ import annotations

import importlib

_LAZY = {
    "quantize_bundle": "trm_edge.quantize.pipeline",
    "QuantizeOptions": "trm_edge.quantize.pipeline",
    "QuantizeResult": "trm_edge.quantize.pipeline",
    "Precision": "trm_edge.quantize.formats",
    "Backend": "trm_edge.quantize.formats",
    "Method": "trm_edge.quantize.formats",
    "int8_format": "trm_edge.quantize.formats",
    "CalibrationData": "trm_edge.quantize.calibration",
    "CalibrationReader": "trm_edge.quantize.calibration",
    "StateReader": "trm_edge.quantize.calibration",
    "StepRanges": "trm_edge.quantize.calibration",
    "Trajectories": "trm_edge.quantize.calibration",
    "load_calibration": "trm_edge.quantize.calibration",
    "record": "trm_edge.quantize.calibration",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
