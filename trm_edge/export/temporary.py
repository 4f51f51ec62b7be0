"""A checkpoint on a bundle runtime (onnxruntime, OpenVINO, TensorRT): exported to a temporary CPU bundle first, so a
user can compare a checkpoint with a bundle without an export step of their own. Host side (torch)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from trm_edge.runtimes.model_source import ModelSource
from trm_edge.runtimes.registry import RUNTIMES, parse_runtime_spec
from trm_edge.runtimes.sources import open_source


def needs_bundle(source: ModelSource, runtime: str | None) -> bool:
    """Whether ``runtime`` (a spec, None: the source's default) cannot run this checkpoint as it is."""
    return source.kind == "checkpoint" and runtime is not None and \
        "checkpoint" not in RUNTIMES[parse_runtime_spec(runtime)[0]].runs


def export_temporary_bundle(source: ModelSource, *, target: str = "cpu") -> ModelSource:
    """Export a checkpoint to a bundle in a temporary directory (removed at exit) and open it."""
    from trm_edge.export import export_bundle
    from trm_edge.trm.checkpoint import load_model

    tmp = Path(tempfile.mkdtemp(prefix="trm-edge-bundle-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    export_bundle(load_model(source.path), tmp / "bundle", target=target, task=source.task)
    return open_source(tmp / "bundle")
