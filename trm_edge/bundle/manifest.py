"""The bundle manifest (``manifest.json``) as a typed, validated value: the one place its keys are named.

Export builds a :class:`Manifest`, quantize and build-engine derive new ones with :meth:`Manifest.replace`, runtimes
read its fields; nobody edits the JSON as a dict. Sections that only describe the bundle (codec, versions, the
export's validation report, the target profile, ...) are kept as written in ``sections``, so a manifest read and
written again loses nothing. The format is documented in docs/bundle-format.md.

The manifest is sealed: ``manifest_sha256`` is the sha256 of its other fields (canonical JSON), so that a hand edit
(say of ``loop.halt_threshold``, which changes every answer) is refused when the bundle is read, as an edited
graph is refused by its checksum in ``files``. Bundles written before the seal have none and are read as
unsealed (``verify`` says so).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trm_edge.bundle.files import check_name
from trm_edge.bundle.tolerances import FLOAT_PREFIX
from trm_edge.config import TRMConfig
from trm_edge.errors import BundleError, ConfigError, choices

FORMAT = "trm-edge-bundle/1"
MANIFEST = "manifest.json"
DIGEST_KEY = "manifest_sha256"
PRECISIONS = ("fp32", "fp16", "int8")
REQUIRED_KEYS = ("format", "task", "model", "target", "precision", "graphs", "initial_state", "files")
FLOAT_REFERENCE_KEY = FLOAT_PREFIX + "logits"  # golden I/O of a quantized bundle that carries float32 outputs
# Keys with a typed field below; every other top-level key is kept verbatim in ``sections``.
_TYPED = ("format", "task", "model", "target", "precision", "graphs", "initial_state", "files", "loop",
          "puzzle_embeddings", "golden", "engines", "quantization", "data_recipe")


def manifest_digest(raw: Mapping[str, Any]) -> str:
    """The seal of a manifest's JSON: sha256 over its fields but the seal, as canonical JSON (sorted keys)."""
    fields = {k: v for k, v in raw.items() if k != DIGEST_KEY}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def sealed(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with its ``manifest_sha256``: what is written as manifest.json."""
    return {**raw, DIGEST_KEY: manifest_digest(raw)}


@dataclass(frozen=True)
class Manifest:
    """What a bundle is and holds. ``graphs``, ``loop``, ``puzzle_embeddings``, ``golden``, ``engines`` and
    ``quantization`` keep their JSON shape (docs/bundle-format.md); the fields the code relies on are checked by
    :meth:`from_dict` and read through the properties below."""

    task: str | None
    model: TRMConfig
    target: str
    precision: str
    graphs: Mapping[str, Mapping[str, Any]]  # name ("step", "unrolled") -> {"file": ..., ...}
    initial_state: Mapping[str, Any]  # {"z_H": [hidden floats], "z_L": [hidden floats], ...}
    files: Mapping[str, str] = field(default_factory=dict)  # relative path -> sha256 (filled when written)
    loop: Mapping[str, Any] = field(default_factory=dict)  # {"halt_threshold": float, "max_steps": int, ...}
    puzzle_embeddings: Mapping[str, Any] | None = None  # {"file": table.npy, "identifiers": ids.json, ...}
    golden: Mapping[str, Any] | None = None  # {"file": golden.npz, "keys": [...], ...}
    engines: Mapping[str, Any] = field(default_factory=dict)  # {"tensorrt": EngineRecord fields} after build-engine
    quantization: Mapping[str, Any] | None = None  # what quantize did (method, format, accuracy, ...)
    data_recipe: Mapping[str, Any] | None = None  # the training data's recipe (calibration draws like it)
    sections: Mapping[str, Any] = field(default_factory=dict)  # descriptive sections, kept as written
    format: str = FORMAT
    sealed: bool = field(default=False, compare=False)  # read with a matching manifest_sha256 (never written)

    # -- reading ---------------------------------------------------------------------------------------
    @property
    def halt_threshold(self) -> float:
        """The model's calibrated halting threshold (a logit): the recursion's default, 0 when none was given."""
        return float(self.loop.get("halt_threshold", 0.0))

    def graph_file(self, kind: str = "step") -> str:
        if kind not in self.graphs:
            raise BundleError(f"the bundle has no {kind!r} graph; it has {choices(self.graphs)}")
        return str(self.graphs[kind]["file"])

    def initial_state_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(z_H, z_L)`` before step 1, each ``[hidden_size]`` float32."""
        return (np.asarray(self.initial_state["z_H"], dtype=np.float32),
                np.asarray(self.initial_state["z_L"], dtype=np.float32))

    @property
    def has_float_reference(self) -> bool:
        """A quantized bundle's golden I/O carries the float32 graph's outputs, so any runtime can be verified."""
        return FLOAT_REFERENCE_KEY in ((self.golden or {}).get("keys") or ())

    @property
    def tensorrt_engine(self) -> Mapping[str, Any] | None:
        return self.engines.get("tensorrt") or None

    def referenced_files(self) -> list[str]:
        """Files the manifest points at (graphs and their external weights, embedding table, identifiers, golden
        I/O, engines)."""
        found = [name for g in self.graphs.values() for name in (g.get("file"), g.get("external_data"))]
        for section in (self.puzzle_embeddings, self.golden, *self.engines.values()):
            if isinstance(section, Mapping):
                found += [section.get("file"), section.get("identifiers")]
        return sorted({str(f) for f in found if f})

    def replace(self, **changes: Any) -> Manifest:
        """A copy with ``changes`` (field names), e.g. ``manifest.replace(precision="int8", quantization=info)``."""
        return dataclasses.replace(self, **changes)

    # -- JSON ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": self.format, "task": self.task, "model": self.model.to_dict(),
                               "target": self.target, "precision": self.precision, "graphs": _plain(self.graphs),
                               "initial_state": _plain(self.initial_state)}
        optional = {"loop": self.loop, "puzzle_embeddings": self.puzzle_embeddings, "golden": self.golden,
                    "engines": self.engines, "quantization": self.quantization, "data_recipe": self.data_recipe}
        out.update({k: _plain(v) for k, v in optional.items() if v})
        out.update(_plain(self.sections))
        out["files"] = dict(self.files)
        return out

    @classmethod
    def from_dict(cls, raw: Any, *, where: str = "the bundle", reading: bool = False) -> Manifest:
        """Parse and check a manifest; a BundleError names what is wrong and where. ``reading``: the manifest of a
        bundle on disk, which must list (and so checksum) every file it points at."""
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            found = raw.get("format") if isinstance(raw, dict) else None
            raise BundleError(f"{where} has format {found!r}; this trm-edge reads {FORMAT!r}")
        missing = [key for key in REQUIRED_KEYS if key not in raw]
        if missing:
            raise BundleError(f"{where}: {MANIFEST} lacks {choices(missing)}")
        try:
            model = TRMConfig.from_dict(raw["model"])
        except (ConfigError, TypeError) as error:
            raise BundleError(f"{where}: invalid model config in {MANIFEST}: {error}") from None
        digest = raw.get(DIGEST_KEY)
        if digest is not None and digest != manifest_digest(raw):
            raise BundleError(f"{where}: {MANIFEST} does not match its {DIGEST_KEY} (edited by hand or corrupt); "
                              "re-export the bundle, or restore its manifest")
        for key in ("graphs", "initial_state", "files"):
            if not isinstance(raw[key], dict):
                raise BundleError(f"{where}: {MANIFEST} {key!r} must be an object, not {type(raw[key]).__name__}")
        for key in ("loop", "puzzle_embeddings", "golden", "engines", "quantization", "data_recipe"):
            if raw.get(key) is not None and not isinstance(raw[key], dict):
                raise BundleError(f"{where}: {MANIFEST} {key!r} must be an object or absent")
        manifest = cls(task=raw["task"], model=model, target=raw["target"], precision=raw["precision"],
                       graphs=raw["graphs"], initial_state=raw["initial_state"], files=raw["files"],
                       loop=raw.get("loop") or {}, puzzle_embeddings=raw.get("puzzle_embeddings"),
                       golden=raw.get("golden"), engines=raw.get("engines") or {},
                       quantization=raw.get("quantization"), data_recipe=raw.get("data_recipe"),
                       sections={k: v for k, v in raw.items() if k not in (*_TYPED, DIGEST_KEY)},
                       sealed=digest is not None)
        manifest.check(where=where)
        unlisted = [f for f in manifest.referenced_files() if f not in manifest.files]
        if reading and unlisted:
            raise BundleError(f"{where}: {choices(unlisted)} not listed in {MANIFEST} 'files'")
        return manifest

    def check(self, *, where: str = "the bundle") -> None:
        """The fields every reader relies on: known precision, graph files, an initial state of the model's
        width, a finite halting threshold, file names that stay inside the bundle, every referenced file listed in
        ``files``."""
        if not isinstance(self.task, (str, type(None))) or not isinstance(self.target, str):
            raise BundleError(f"{where}: 'task' and 'target' must be strings (task {self.task!r}, "
                              f"target {self.target!r})")
        if not isinstance(self.precision, str) or self.precision not in PRECISIONS:
            raise BundleError(f"{where}: precision {self.precision!r} is not one of {choices(PRECISIONS)}")
        if not isinstance(self.graphs, Mapping) or not self.graphs or not all(
                isinstance(g, Mapping) and isinstance(g.get("file"), str) for g in self.graphs.values()
        ) or "step" not in self.graphs:
            raise BundleError(f"{where}: 'graphs' must name the 'step' graph, each graph with a 'file'")
        hidden = self.model.hidden_size
        for name in ("z_H", "z_L"):
            value = self.initial_state.get(name) if isinstance(self.initial_state, Mapping) else None
            if not isinstance(value, list) or len(value) != hidden or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
                raise BundleError(f"{where}: initial_state.{name} must be a list of {hidden} finite floats "
                                  "(hidden_size)")
        threshold = self.loop.get("halt_threshold", 0.0)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise BundleError(f"{where}: loop.halt_threshold {threshold!r} is not a finite number")
        _check_sections(self, where)
        unlisted = [f for f in self.referenced_files() if f not in self.files]
        if self.files and unlisted:
            raise BundleError(f"{where}: {choices(unlisted)} not listed in {MANIFEST} 'files'")


def _check_sections(manifest: Manifest, where: str) -> None:
    """The file-naming sections: names of the right type that stay inside the bundle, checksums as hex strings."""
    for name, section, keys in [*((f"graphs.{k}", g, ("file", "external_data")) for k, g in manifest.graphs.items()),
                                ("puzzle_embeddings", manifest.puzzle_embeddings, ("file", "identifiers")),
                                ("golden", manifest.golden, ("file",)),
                                *((f"engines.{k}", e, ("file",)) for k, e in manifest.engines.items())]:
        if section is None:
            continue
        if not isinstance(section, Mapping):
            raise BundleError(f"{where}: {name} must be an object")
        for key in keys:
            optional = key == "external_data" or (name.startswith("engines.") and key not in section)
            if not (optional and section.get(key) is None):
                check_name(section.get(key), where=f"{where}: {name}.{key}")
    for rel, digest in manifest.files.items():
        check_name(rel, where=f"{where}: 'files'")
        if not isinstance(digest, str) or len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise BundleError(f"{where}: the sha256 of {rel!r} in 'files' is not 64 hex digits: {digest!r}")


def _plain(value: Any) -> Any:
    """Mappings (possibly read-only views) back to plain dicts for JSON."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
