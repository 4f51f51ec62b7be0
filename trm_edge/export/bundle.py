"""The deployment bundle: a directory with ``manifest.json``, ONNX graphs, the initial state, the puzzle
embedding table (when several identifiers) and golden I/O. Torch-free (numpy, json, hashlib): the
device side imports this module. The format is documented in docs/bundle-format.md.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trm_edge.errors import BundleError, ConfigError, choices
from trm_edge.io import atomic_directory, sha256_file, write_json_atomic
from trm_edge.trm.config import TRMConfig

FORMAT = "trm-edge-bundle/1"
MANIFEST = "manifest.json"
STEP_FILE = "step.onnx"
UNROLLED_FILE = "unrolled.onnx"
PUZZLE_EMB_FILE = "puzzle_emb.npy"
IDENTIFIERS_FILE = "identifiers.json"
GOLDEN_FILE = "golden.npz"

# Graph I/O names (the contract in DESIGN.md); puzzle_embedding only when the model has a puzzle table.
STEP_INPUTS = ("inputs", "z_H", "z_L", "puzzle_embedding")
STEP_OUTPUTS = ("z_H_next", "z_L_next", "logits", "q_halt_logits")
UNROLLED_INPUTS = ("inputs", "puzzle_embedding")
UNROLLED_OUTPUTS = ("logits", "q_halt_logits", "q_halt_logits_per_step")

REQUIRED_KEYS = ("format", "task", "model", "target", "precision", "graphs", "initial_state", "files")
DELETE = object()  # in write_manifest_update(changes): remove this key


def hash_files(root: Path, relpaths: Iterable[str]) -> dict[str, str]:
    return {rel: sha256_file(root / rel) for rel in sorted(relpaths)}


def bundle_files(root: Path) -> list[str]:
    """Every regular file under ``root`` except the manifest and hidden temporaries, as POSIX paths."""
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel != MANIFEST and not any(part.startswith(".") for part in Path(rel).parts):
            found.append(rel)
    return found


def write_manifest(root: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Hash every file in ``root`` into ``manifest['files']`` and write manifest.json atomically."""
    manifest = dict(manifest)
    manifest["files"] = hash_files(root, bundle_files(root))
    write_json_atomic(root / MANIFEST, manifest)
    return manifest


def _deep_merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        elif value is DELETE:
            merged.pop(key, None)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class Bundle:
    """A verified bundle on disk. Create with :func:`load_bundle`."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = Path(path)
        self.manifest = manifest
        try:
            self.config = TRMConfig.from_dict(manifest["model"])
        except (ConfigError, TypeError) as error:
            raise BundleError(f"bundle {str(self.path)!r}: invalid model config in {MANIFEST}: {error}") from None

    # -- identity --------------------------------------------------------------------------------
    @property
    def format(self) -> str:
        return self.manifest["format"]

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def target(self) -> str:
        return self.manifest["target"]

    @property
    def precision(self) -> str:
        return self.manifest["precision"]

    @property
    def graphs(self) -> dict[str, Any]:
        return self.manifest["graphs"]

    @property
    def halt_threshold(self) -> float:
        """The model's calibrated halting threshold (the solver's default), 0 when the manifest has none."""
        return float(self.manifest.get("loop", {}).get("halt_threshold", 0.0))

    def graph_path(self, kind: str = "step") -> Path:
        if kind not in self.graphs:
            raise BundleError(f"bundle {str(self.path)!r} has no {kind!r} graph; it has {choices(self.graphs)}")
        return self.path / self.graphs[kind]["file"]

    @property
    def step_graph_path(self) -> Path:
        return self.graph_path("step")

    def __repr__(self) -> str:
        return f"Bundle({str(self.path)!r}, task={self.task!r}, target={self.target!r}, precision={self.precision!r})"

    # -- data ------------------------------------------------------------------------------------
    def initial_state(self) -> tuple[np.ndarray, np.ndarray]:
        """``(z_H, z_L)`` before step 1, each ``[hidden_size]`` float32 (broadcast over batch and positions)."""
        state = self.manifest["initial_state"]
        return np.asarray(state["z_H"], dtype=np.float32), np.asarray(state["z_L"], dtype=np.float32)

    def initial_states(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """The initial state broadcast to the step graph's ``[batch, total_len, hidden_size]`` inputs."""
        shape = (batch, self.config.total_len, self.config.hidden_size)
        z_H, z_L = self.initial_state()
        return np.ascontiguousarray(np.broadcast_to(z_H, shape)), np.ascontiguousarray(np.broadcast_to(z_L, shape))

    def puzzle_embeddings(self) -> np.ndarray | None:
        """The puzzle embedding table ``[rows, puzzle_emb_ndim]`` (memory-mapped), or None when the
        graph has no ``puzzle_embedding`` input."""
        section = self.manifest.get("puzzle_embeddings")
        if not section:
            return None
        return np.load(self.path / section["file"], mmap_mode="r")

    def identifiers(self) -> dict[str, list] | None:
        """``{"ids": [...], "names": [...]}``: row i of the table is identifier ``ids[i]`` named ``names[i]``."""
        section = self.manifest.get("puzzle_embeddings")
        if not section:
            return None
        return json.loads((self.path / section["identifiers"]).read_text())

    def puzzle_embedding(self, identifiers: Sequence[int | str]) -> np.ndarray | None:
        """Rows for a batch of puzzle identifiers (official integer ids or names) -> ``[batch, ndim]``
        float32; None when the model needs none."""
        table = self.puzzle_embeddings()
        if table is None:
            return None
        known = self.identifiers()
        rows_by_id = {int(i): r for r, i in enumerate(known["ids"])}
        rows_by_name = {n: r for r, n in enumerate(known["names"]) if n is not None}
        rows = []
        for ident in identifiers:
            row = rows_by_name.get(ident) if isinstance(ident, str) else rows_by_id.get(int(ident))
            if row is None:
                sample = list(known["names"][:5]) if any(known["names"]) else known["ids"][:5]
                raise BundleError(f"puzzle identifier {ident!r} is not in this bundle ({len(known['ids'])} "
                                  f"identifiers, e.g. {choices(sample)}); re-export with --puzzles to include it")
            rows.append(row)
        return np.asarray(table[rows], dtype=np.float32)

    def golden(self) -> dict[str, np.ndarray]:
        """Golden I/O for on-device verification: step-graph feeds and the torch reference's outputs
        (see ``manifest['golden']`` for the keys)."""
        section = self.manifest.get("golden")
        if not section:
            raise BundleError(f"bundle {str(self.path)!r} has no golden I/O")
        with np.load(self.path / section["file"]) as data:
            return {key: data[key] for key in data.files}

    # -- updates ---------------------------------------------------------------------------------
    def write_manifest_update(self, changes: Mapping[str, Any] | None = None) -> Bundle:
        """Deep-merge ``changes`` into the manifest (the value ``DELETE`` removes a key), re-hash every
        file now in the bundle directory (files added or removed by the caller included), write the
        manifest atomically and return the reloaded bundle. For build-engine and quantize."""
        manifest = _deep_merge(self.manifest, changes or {})
        write_manifest(self.path, manifest)
        return load_bundle(self.path)

    def copy_to(self, destination: str | os.PathLike, *, force: bool = False) -> Bundle:
        """Copy the bundle to a new directory atomically (for bundle -> bundle tools like quantize)."""
        with atomic_directory(destination, force=force) as tmp:
            for rel in [*self.manifest["files"], MANIFEST]:
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(self.path / rel, tmp / rel)
        return load_bundle(destination)


def load_bundle(path: str | os.PathLike, *, verify: bool = True) -> Bundle:
    """Open a bundle, refusing one with an unknown format, missing keys, or a missing, truncated or
    tampered file (every sha256 in ``files`` is checked unless ``verify=False``)."""
    root = Path(path)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{str(root)!r} is not a trm-edge bundle (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(f"bundle {str(root)!r}: {MANIFEST} is not valid JSON ({error}); the bundle is "
                          "corrupt, re-export it") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise BundleError(f"bundle {str(root)!r} has format {found!r}; this trm-edge reads {FORMAT!r}")
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise BundleError(f"bundle {str(root)!r}: {MANIFEST} lacks {choices(missing)}")
    files = manifest["files"]
    referenced = [g.get("file") for g in manifest["graphs"].values()]
    for section in ("puzzle_embeddings", "golden"):
        if manifest.get(section):
            referenced += [manifest[section].get("file"), manifest[section].get("identifiers")]
    unlisted = sorted({r for r in referenced if r and r not in files})
    if unlisted:
        raise BundleError(f"bundle {str(root)!r}: {choices(unlisted)} not listed in {MANIFEST} 'files'")
    if verify:
        for rel, digest in files.items():
            target = root / rel
            if not target.is_file():
                raise BundleError(f"bundle {str(root)!r} is incomplete: {rel!r} is missing")
            if sha256_file(target) != digest:
                raise BundleError(f"bundle {str(root)!r}: {rel!r} does not match its sha256 in {MANIFEST} "
                                  "(tampered or truncated); re-export or re-copy the bundle")
    return Bundle(root, manifest)
