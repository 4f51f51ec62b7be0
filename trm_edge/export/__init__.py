"""torch -> ONNX export: graph builders (step, unrolled), graph passes, validation against the torch
reference, written as a deployment bundle (whose format trm_edge.bundle owns).

Importing this package is cheap and torch-free. The torch-side API loads lazily:

- ``export_bundle(model, output, *, target, task, graph="step", batch=None, force=False, puzzles=None,
  identifier_names=None, validation_inputs=None, validation_steps=None, log=None) -> Path``
- ``export_step_onnx(model, path, *, opset=17, batch=None) -> Path``
- ``build_graph(model, *, kind="step"|"unrolled", opset=17, batch=None) -> BuiltGraph``
- ``validate_step_graph(model, onnx_path, *, tokens, puzzle_ids=None, steps=None, precision="fp32", ...)
  -> ValidationReport``
"""

from __future__ import annotations

import importlib

_LAZY = {
    "export_bundle": "trm_edge.export.exporter",
    "export_step_onnx": "trm_edge.export.graphs",
    "build_graph": "trm_edge.export.graphs",
    "validate_step_graph": "trm_edge.export.validate",
    "validate_unrolled_graph": "trm_edge.export.validate",
    "ValidationReport": "trm_edge.export.validate",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
