"""The one Runtime interface, the registry of runtimes, and the model sources they run.

Polygraphy-style: a runtime is constructed cheaply from a model source, ``load()`` builds the session
or engine (the expensive part, kept separate from running), ``step(feeds) -> outputs`` runs one
supervision step on numpy arrays named as in the step-graph contract (see DESIGN.md), ``close()``
releases it; ``with runtime:`` does load/close. The host loop (solver.py) drives a runtime through
``start()``, a :class:`Recurrence` that keeps the state where the runtime wants it (host memory for
onnxruntime and torch, device memory for TensorRT).

Nothing here imports torch, onnxruntime or tensorrt: adapters are imported by name, on demand.
"""

from __future__ import annotations

import abc
import importlib
import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from trm_edge.errors import BundleError, CheckpointError, RuntimeUnavailableError, TrmEdgeError, choices
from trm_edge.trm.config import TRMConfig

MANIFEST = "manifest.json"

# -- model sources ----------------------------------------------------------------------------------


@dataclass
class ModelSource:
    """What a runtime runs: a deployment bundle (device side) or a checkpoint directory (torch)."""

    kind: str  # "bundle" | "checkpoint"
    path: Path
    config: TRMConfig
    task: str | None  # sudoku | maze | arc (None: a model of no known task, e.g. in tests)
    bundle: Any = None  # trm_edge.export.bundle.Bundle when kind == "bundle"
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
        from trm_edge.export.bundle import load_bundle

        bundle = load_bundle(path)
        return ModelSource(kind="bundle", path=path, config=bundle.config, task=bundle.task, bundle=bundle,
                           target=getattr(bundle, "target", None),
                           precision=str(getattr(bundle, "precision", "fp32") or "fp32"),
                           halt_threshold=bundle.halt_threshold)
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


# -- the interface ------------------------------------------------------------------------------------

STEP_INPUTS = ("inputs", "z_H", "z_L", "puzzle_embedding")
STEP_OUTPUTS = ("z_H_next", "z_L_next", "logits", "q_halt_logits")


def input_names(config: TRMConfig) -> tuple[str, ...]:
    """The step graph's inputs for this config (``puzzle_embedding`` only with a puzzle table)."""
    return STEP_INPUTS if config.has_puzzle_table else STEP_INPUTS[:3]


class Runtime(abc.ABC):
    """One supervision step on some backend. Subclasses implement ``_load``, ``_step`` and ``_close``."""

    name: ClassVar[str]
    runs: ClassVar[tuple[str, ...]] = ("bundle",)  # model-source kinds this runtime can run

    def __init__(self, source: ModelSource, *, device: str | None = None, **options: Any) -> None:
        if source.kind not in self.runs:
            raise RuntimeUnavailableError(
                f"the {self.name!r} runtime runs {' or '.join(self.runs)}s, not the {source.kind} {str(source.path)!r}"
                f"; runtimes for a {source.kind}: {choices(runtimes_for(source.kind))}")
        self.source = source
        self.device = device
        self.options = options
        self._loaded = False

    # -- lifecycle ---------------------------------------------------------------------------------
    def load(self) -> Runtime:
        """Build the session/engine (idempotent). Returns self, so ``rt = Runtime(...).load()`` works."""
        if not self._loaded:
            self._load()
            self._loaded = True
        return self

    def close(self) -> None:
        if self._loaded:
            self._close()
            self._loaded = False

    def __enter__(self) -> Runtime:
        return self.load()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def _load(self) -> None: ...

    @abc.abstractmethod
    def _step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def _close(self) -> None:  # noqa: B027 (optional hook)
        """Release sessions, engines, buffers."""

    # -- the model ---------------------------------------------------------------------------------
    @property
    def config(self) -> TRMConfig:
        return self.source.config

    @property
    def task(self) -> str:
        return self.source.task

    @property
    def input_names(self) -> tuple[str, ...]:
        return input_names(self.config)

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the loaded graph requires (a static-batch export), else None."""
        return None

    @property
    def max_batch(self) -> int | None:
        """The largest batch the loaded graph/engine accepts, else None (no limit)."""
        return self.fixed_batch

    def initial_state(self) -> tuple[np.ndarray, np.ndarray]:
        """``(H_init, L_init)``, each float32 ``[hidden_size]``: the state before step 1."""
        z_H, z_L = self.source.bundle.initial_state()
        return np.asarray(z_H, dtype=np.float32), np.asarray(z_L, dtype=np.float32)

    def puzzle_embedding(self, identifiers: np.ndarray) -> np.ndarray | None:
        """Rows of the puzzle-embedding table for ``identifiers`` (official integer ids) ->
        ``[n, puzzle_emb_ndim]`` float32, when the graph takes ``puzzle_embedding`` as an input; None
        when it does not (a single embedding is folded into the graph)."""
        if not self.config.has_puzzle_table:
            return None
        rows = self.source.bundle.puzzle_embedding([int(i) for i in np.asarray(identifiers).reshape(-1)])
        if rows is None:
            raise BundleError(f"{str(self.source.path)!r}: the model has {self.config.num_puzzle_identifiers} puzzle "
                              "identifiers but the bundle carries no puzzle-embedding table")
        return np.asarray(rows, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        """What is running, for reports (``--json`` output, bench tables)."""
        return {"runtime": self.name, "model": str(self.source.path), "kind": self.source.kind,
                "precision": self.source.precision}

    # -- running -----------------------------------------------------------------------------------
    def step(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One supervision step: feeds named ``inputs, z_H, z_L[, puzzle_embedding]`` ->
        ``z_H_next, z_L_next, logits, q_halt_logits`` (numpy, on the host)."""
        if not self._loaded:
            self.load()
        feeds = check_feeds(self.config, feeds)
        batch = len(feeds["inputs"])
        fixed = self.fixed_batch
        limit = fixed or self.max_batch
        if limit is not None and batch > limit:  # more rows than the graph takes: run in chunks
            parts = [self.step({k: v[i:i + limit] for k, v in feeds.items()}) for i in range(0, batch, limit)]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        if fixed is not None and batch < fixed:  # a static-batch graph: pad with copies of row 0
            padded = {k: np.concatenate((v, np.repeat(v[:1], fixed - batch, axis=0))) for k, v in feeds.items()}
            return {k: v[:batch] for k, v in self._step(padded).items()}
        return self._step(feeds)

    def start(self, *, capacity: int) -> Recurrence:
        """A recurrence for up to ``capacity`` puzzles at a time, empty until ``add``."""
        if not self._loaded:
            self.load()
        return HostRecurrence(self, capacity=capacity)


def check_feeds(config: TRMConfig, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Names, dtypes and shapes of step feeds; returns contiguous arrays of the contract's dtypes."""
    expected = input_names(config)
    if set(feeds) != set(expected):
        raise TrmEdgeError(f"step feeds {choices(sorted(feeds))} do not match the step graph's inputs "
                           f"{choices(expected)}")
    out = {"inputs": np.ascontiguousarray(feeds["inputs"], dtype=np.int32)}
    for name in expected[1:]:
        out[name] = np.ascontiguousarray(feeds[name], dtype=np.float32)
    batch = out["inputs"].shape[0]
    shapes = {"inputs": (batch, config.seq_len), "z_H": (batch, config.total_len, config.hidden_size),
              "z_L": (batch, config.total_len, config.hidden_size),
              "puzzle_embedding": (batch, config.puzzle_emb_ndim)}
    for name in expected:
        if out[name].shape != shapes[name]:
            raise TrmEdgeError(f"step feed {name!r} has shape {out[name].shape}, expected {shapes[name]}")
    if batch == 0:
        raise TrmEdgeError("step feeds hold no rows")
    return out


# -- the recurrence: where the state lives between steps ------------------------------------------------

class Recurrence(abc.ABC):
    """A batch of puzzles in flight. Rows are added with the initial state, advanced one supervision
    step at a time, and dropped when done; only ``q_halt_logits`` must come back every step."""

    @property
    @abc.abstractmethod
    def batch(self) -> int:
        """Rows currently in flight."""

    @abc.abstractmethod
    def add(self, inputs: np.ndarray, puzzle_embedding: np.ndarray | None) -> None:
        """Append rows (``inputs`` int32 ``[n, seq_len]``) that start from the initial state."""

    @abc.abstractmethod
    def step(self) -> np.ndarray:
        """Advance every row one supervision step; returns ``q_halt_logits`` float32 ``[batch]``."""

    @abc.abstractmethod
    def logits(self, rows: np.ndarray) -> np.ndarray:
        """Logits of the last step for ``rows`` (indices into the current batch): ``[n, seq_len, vocab]``."""

    @abc.abstractmethod
    def keep(self, rows: np.ndarray) -> None:
        """Keep only ``rows`` (ascending indices into the current batch), in that order."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Free what the recurrence holds."""


def kept_rows(rows: np.ndarray, batch: int) -> np.ndarray:
    """``keep``'s argument as indices, checked: ascending rows of the current ``batch``."""
    rows = np.asarray(rows, dtype=np.intp)
    if len(rows) and (np.any(np.diff(rows) <= 0) or rows[0] < 0 or rows[-1] >= batch):
        raise TrmEdgeError("keep() takes ascending row indices of the current batch")
    return rows


class HostRecurrence(Recurrence):
    """State in host memory, one ``runtime.step`` per step (onnxruntime, torch)."""

    def __init__(self, runtime: Runtime, *, capacity: int) -> None:
        self.runtime = runtime
        cfg = runtime.config
        self.capacity = capacity
        self.h_init, self.l_init = runtime.initial_state()
        self.names = runtime.input_names
        empty_state = np.zeros((0, cfg.total_len, cfg.hidden_size), np.float32)
        self.feeds: dict[str, np.ndarray] = {"inputs": np.zeros((0, cfg.seq_len), np.int32), "z_H": empty_state,
                                             "z_L": empty_state.copy()}
        if "puzzle_embedding" in self.names:
            self.feeds["puzzle_embedding"] = np.zeros((0, cfg.puzzle_emb_ndim), np.float32)
        self._logits = np.zeros((0, cfg.seq_len, cfg.vocab_size), np.float32)

    @property
    def batch(self) -> int:
        return int(self.feeds["inputs"].shape[0])

    def add(self, inputs: np.ndarray, puzzle_embedding: np.ndarray | None) -> None:
        cfg = self.runtime.config
        n = len(inputs)
        if self.batch + n > self.capacity:
            raise TrmEdgeError(f"recurrence holds at most {self.capacity} rows")
        shape = (n, cfg.total_len, cfg.hidden_size)
        new = {"inputs": np.asarray(inputs, np.int32), "z_H": np.broadcast_to(self.h_init, shape),
               "z_L": np.broadcast_to(self.l_init, shape)}
        if "puzzle_embedding" in self.names:
            new["puzzle_embedding"] = np.asarray(puzzle_embedding, np.float32)
        self.feeds = {k: np.concatenate((v, new[k])) for k, v in self.feeds.items()}
        self._logits = np.concatenate((self._logits, np.zeros((n, *self._logits.shape[1:]), np.float32)))

    def step(self) -> np.ndarray:
        batch = self.batch
        if batch == 0:
            return np.zeros(0, np.float32)
        out = self.runtime.step(self.feeds)
        self.feeds["z_H"] = out["z_H_next"][:batch]
        self.feeds["z_L"] = out["z_L_next"][:batch]
        self._logits = out["logits"][:batch]
        return np.asarray(out["q_halt_logits"][:batch], dtype=np.float32).reshape(batch)

    def logits(self, rows: np.ndarray) -> np.ndarray:
        return self._logits[np.asarray(rows, dtype=np.intp)]

    def keep(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.intp)
        self.feeds = {k: v[rows] for k, v in self.feeds.items()}
        self._logits = self._logits[rows]

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        return self.feeds["z_H"], self.feeds["z_L"]


# -- the registry ------------------------------------------------------------------------------------


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


def _lookup(name: str) -> RuntimeEntry:
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
    return _lookup(name.strip().lower()).name, (device.strip().lower() or None)


def get_runtime(name: str) -> type[Runtime]:
    """The adapter class of a runtime, imported now. Raises RuntimeUnavailableError naming the
    package to install and the runtimes that are available here."""
    entry = _lookup(name)
    missing = entry.missing()
    if missing:
        raise RuntimeUnavailableError(
            f"the {entry.name!r} runtime needs {', '.join(missing)}, which is not installed here: "
            f"{entry.install}; available runtimes: {choices(available_runtimes()) or 'none'}")
    module = importlib.import_module(entry.module)
    return getattr(module, entry.cls)


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
            entry = _lookup(str(name))
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
    from trm_edge.export.tolerances import FLOAT_PREFIX

    golden = (getattr(source.bundle, "manifest", None) or {}).get("golden") or {}
    return FLOAT_PREFIX + "logits" in (golden.get("keys") or ())


def _has_engine(source: ModelSource) -> bool:
    manifest = getattr(source.bundle, "manifest", None) or {}
    return bool((manifest.get("engines") or {}).get("tensorrt"))


def open_runtime(model: str | os.PathLike | ModelSource, runtime: str | None = None, **options: Any) -> Runtime:
    """A runtime (not yet loaded) for a bundle or checkpoint. ``runtime`` is a name with an optional
    device (``onnxruntime:cuda``); None picks the default for the model (see ``default_runtime``).

    A checkpoint asked to run on a bundle runtime is exported to a temporary CPU bundle first
    (host side, needs torch)."""
    source = model if isinstance(model, ModelSource) else open_source(model)
    name, device = parse_runtime_spec(runtime) if runtime else (default_runtime(source), None)
    cls = get_runtime(name)
    if source.kind not in cls.runs and source.kind == "checkpoint":
        source = export_temporary_bundle(source)
    return cls(source, device=device, **options)


def export_temporary_bundle(source: ModelSource, *, target: str = "cpu") -> ModelSource:
    """Export a checkpoint to a bundle in a temporary directory (removed at exit) and open it."""
    import atexit
    import shutil
    import tempfile

    from trm_edge.export import export_bundle
    from trm_edge.trm.checkpoint import load_model

    tmp = Path(tempfile.mkdtemp(prefix="trm-edge-bundle-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    export_bundle(load_model(source.path), tmp / "bundle", target=target, task=source.task)
    return open_source(tmp / "bundle")


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The raw manifest of a bundle directory (no checksum verification; see load_bundle)."""
    try:
        return json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BundleError(f"cannot read {str(Path(path) / MANIFEST)!r}: {error}") from None
