"""What a runtime runs: the model sources (a bundle or a checkpoint), how a name or path resolves to one, and
``open_runtime``, which pairs a source with the runtime asked for (or the default one).

Nothing here imports torch, onnxruntime or tensorrt: adapters are imported by name, on demand.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trm_edge.bundle.manifest import MANIFEST
from trm_edge.bundle.store import Bundle, load_bundle
from trm_edge.config import TRMConfig
from trm_edge.errors import BundleError, CheckpointError, TrmEdgeError
from trm_edge.runtimes.interface import Runtime
from trm_edge.runtimes.registry import default_runtime, get_runtime, parse_runtime_spec


@dataclass
class ModelSource:
    """What a runtime runs: a deployment bundle (device side) or a checkpoint directory (torch)."""

    kind: str  # "bundle" | "checkpoint"
    path: Path
    config: TRMConfig
    task: str | None  # sudoku | maze | arc (None: a model of no known task, e.g. in tests)
    bundle: Bundle | None = None  # when kind == "bundle"
    target: str | None = None
    precision: str = "fp32"
    halt_threshold: float = 0.0  # the model's calibrated halting threshold (manifest loop / checkpoint halting)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.path}"


def open_source(model: str | os.PathLike) -> ModelSource:
    """Resolve ``model``: a bundle directory (with manifest.json), a checkpoint directory, or the
    name of a shipped model (``default``). Reading a bundle verifies its checksums."""
    path = Path(model)
    if (path / MANIFEST).is_file():
        return bundle_source(load_bundle(path))
    from trm_edge.trm.checkpoint import halt_threshold, read_checkpoint_info, resolve_model_path

    try:
        resolved = resolve_model_path(model)
    except CheckpointError as error:
        if path.is_dir():
            raise BundleError(f"{str(model)!r} is neither a bundle (no {MANIFEST}) nor a checkpoint: {error}") \
                from None
        raise
    info = read_checkpoint_info(resolved)
    config = TRMConfig.from_dict(info["model"])
    return ModelSource(kind="checkpoint", path=resolved, config=config, task=info.get("task"),
                       halt_threshold=halt_threshold(info))


def bundle_source(bundle: Bundle) -> ModelSource:
    """The source of a bundle already opened (or made in memory by export and quantize)."""
    return ModelSource(kind="bundle", path=bundle.path, config=bundle.config, task=bundle.task, bundle=bundle,
                       target=bundle.target, precision=bundle.precision, halt_threshold=bundle.halt_threshold)


def default_model() -> str | None:
    """The shipped default model, when the package has one (the trainer ships it): its exported CPU
    bundle (``models/default/bundle``, torch-free) when present, else the checkpoint name ``default``."""
    from trm_edge.trm.checkpoint import PACKAGED_MODELS, resolve_model_path

    bundle = PACKAGED_MODELS / "default" / "bundle"
    if (bundle / MANIFEST).is_file():
        return str(bundle)
    try:
        resolve_model_path("default")
    except TrmEdgeError:
        return None
    return "default"


def open_runtime(model: str | os.PathLike | ModelSource, runtime: str | None = None, *, threads: int | None = None,
                 precision_hint: str | None = None, **extras: Any) -> Runtime:
    """A runtime (not yet loaded) for a bundle or checkpoint. ``runtime`` is a name with an optional
    device (``onnxruntime:cuda``); None picks the default for the model (see ``default_runtime``). ``threads`` and
    ``precision_hint`` mean the same to every runtime (:class:`Runtime`); ``extras`` are the adapter's own keywords.
    A checkpoint runs on torch; to run it on a bundle runtime, export it (``trm_edge.export.temporary`` does that
    into a temporary directory on the host)."""
    source = model if isinstance(model, ModelSource) else open_source(model)
    name, device = parse_runtime_spec(runtime) if runtime else (default_runtime(source), None)
    return get_runtime(name)(source, device=device, threads=threads, precision_hint=precision_hint, **extras)
