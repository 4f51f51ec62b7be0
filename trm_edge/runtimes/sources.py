"""How a model name or path resolves to a :class:`ModelSource`, the default runtime for a source, and
``open_runtime``, which pairs a source with the runtime asked for (or the default one).

Nothing here imports torch, onnxruntime or tensorrt: adapters are imported by name, on demand.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trm_edge.bundle.manifest import MANIFEST
from trm_edge.bundle.store import load_bundle
from trm_edge.config import TRMConfig
from trm_edge.errors import BundleError, CheckpointError, RuntimeUnavailableError, TrmEdgeError
from trm_edge.runtimes.interface import Runtime
from trm_edge.runtimes.model_source import ModelSource, bundle_source
from trm_edge.runtimes.registry import RuntimeEntry, get_runtime, lookup, parse_runtime_spec


def open_source(model: str | os.PathLike) -> ModelSource:
    """Resolve ``model``: a bundle directory (with manifest.json), a checkpoint directory, or the
    name of a shipped model (``default``, ``maze``): its bundle, what ``solve`` runs without ``--model`` (its
    checkpoint is reached by its path, ``trm_edge/models/NAME``). Reading a bundle verifies its checksums."""
    path = shipped_bundle(model) or Path(model)
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


def shipped_bundle(model: str | os.PathLike) -> Path | None:
    """The bundle of the shipped model a bare name names (``trm_edge/models/NAME/bundle``), None for anything else:
    a path, a file or directory of that name here, or a shipped model without a bundle (then its checkpoint)."""
    text = str(model)
    return None if os.sep in text or Path(text).exists() else _packaged_bundle(text)


def _packaged_bundle(name: str) -> Path | None:
    from trm_edge.trm.checkpoint import PACKAGED_MODELS

    bundle = PACKAGED_MODELS / name / "bundle"
    return bundle if (bundle / MANIFEST).is_file() else None


def default_model() -> str | None:
    """The shipped default model, when the package has one (the trainer ships it): its exported CPU
    bundle (``models/default/bundle``, torch-free) when present, else the checkpoint name ``default``."""
    from trm_edge.trm.checkpoint import resolve_model_path

    bundle = _packaged_bundle("default")
    if bundle is not None:
        return str(bundle)
    try:
        resolve_model_path("default")
    except TrmEdgeError:
        return None
    return "default"


def default_runtime(source: ModelSource) -> str:
    """Checkpoints run on torch; a bundle runs on the fastest of its target's runtimes (the profile's measured
    ranking for the bundle's precision, else its listed order) that is installed here and holds parity for that
    precision (onnxruntime when none does)."""
    if source.kind == "checkpoint":
        return "torch"
    wanted: Sequence[str] = ()
    if source.target:
        try:
            from trm_edge.targets import get_target

            wanted = get_target(source.target).ranking(source.precision)
        except (ImportError, TrmEdgeError):
            wanted = ()
    for name in wanted:
        try:
            entry = lookup(str(name))
        except RuntimeUnavailableError:
            continue
        if (entry.available() and "bundle" in entry.runs and _holds_parity(entry, source)
                and (entry.name != "tensorrt" or _has_engine(source))):
            return entry.name
    return "onnxruntime"


def _holds_parity(entry: RuntimeEntry, source: ModelSource) -> bool:
    """Tested at this precision; and for a quantized bundle, verifiable: its golden I/O holds onnxruntime's
    kernels' outputs, so another runtime's INT8/FP16 needs the float32 reference that newer bundles carry."""
    if source.precision not in entry.parity:
        return False
    if source.precision == "fp32" or entry.name == "onnxruntime":
        return True
    return source.bundle is not None and source.bundle.manifest.has_float_reference


def _has_engine(source: ModelSource) -> bool:
    return source.bundle is not None and source.bundle.manifest.tensorrt_engine is not None


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
