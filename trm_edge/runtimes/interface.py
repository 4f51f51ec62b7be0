"""The one Runtime interface, Polygraphy-style: a runtime is constructed cheaply from a model source with the same
options for every backend (device, threads, precision hint); ``load()`` builds the session or engine (the expensive
part, kept separate from running); ``step(feeds) -> outputs`` runs one supervision step on numpy arrays named as in
the step-graph contract (trm_edge/bundle/contract.py); ``close()`` releases it; ``with runtime:`` does load/close.
The recursion core (recursion.py) drives a runtime through ``start()``, a :class:`Recurrence` that keeps the state
where the runtime wants it.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from trm_edge.bundle.contract import check_feeds, input_names
from trm_edge.config import TRMConfig
from trm_edge.errors import BundleError, RuntimeUnavailableError, TrmEdgeError, choices
from trm_edge.runtimes.recurrence import Recurrence
from trm_edge.runtimes.registry import runtimes_for

if TYPE_CHECKING:
    from trm_edge.runtimes.model_source import ModelSource


class Runtime(abc.ABC):
    """One supervision step on some backend. Subclasses implement ``_load``, ``_step`` and ``_close``."""

    name: ClassVar[str]
    runs: ClassVar[tuple[str, ...]] = ("bundle",)  # model-source kinds this runtime can run
    precision_hints: ClassVar[tuple[str, ...]] = ()  # compute precisions the backend can be asked for

    def __init__(self, source: ModelSource, *, device: str | None = None, threads: int | None = None,
                 precision_hint: str | None = None) -> None:
        """Every runtime takes these: ``device`` (the part after ``name:`` in ``--runtime``), ``threads`` (CPU
        threads for the backend; None: its default) and ``precision_hint`` (a compute precision the backend may
        use for a float32 graph, e.g. OpenVINO's ``bf16``; None: float32). Backend-specific extras are keywords
        of the subclass."""
        if source.kind not in self.runs:
            raise RuntimeUnavailableError(
                f"the {self.name!r} runtime runs {' or '.join(self.runs)}s, not the {source.kind} {str(source.path)!r}"
                f"; runtimes for a {source.kind}: {choices(runtimes_for(source.kind))}"
                + (f"; the checkpoint beside it runs on torch: --model {str(source.path.parent)!r}"
                   if source.kind == "bundle" and (source.path.parent / "config.json").is_file() else ""))
        if threads is not None and threads < 1:
            raise RuntimeUnavailableError(f"threads {threads} must be at least 1")
        if precision_hint is not None and precision_hint not in self.precision_hints:
            raise RuntimeUnavailableError(
                f"the {self.name!r} runtime takes no precision hint {precision_hint!r}; it takes "
                f"{choices(self.precision_hints) if self.precision_hints else 'none (it computes in float32)'}")
        self.source = source
        self.device = device
        self.threads = threads
        self.precision_hint = precision_hint
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
        return self.source.bundle.initial_state()

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


class HostRecurrence(Recurrence):
    """State in host memory, one ``runtime.step`` per step (torch, OpenVINO, static-batch graphs; any runtime when
    the recursion keeps the state). ``feeds`` are the next step's inputs, ``outputs`` the last step's outputs."""

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
        self.outputs: dict[str, np.ndarray] = {}

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
        out = self.outputs = self.runtime.step(self.feeds)
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
        self.outputs = {}  # rows of the last step's outputs no longer match the batch

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        return self.feeds["z_H"], self.feeds["z_L"]
