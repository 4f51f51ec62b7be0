"""Bundles on disk: open one (every checksum verified), read its data, write one atomically.

A bundle is a directory with ``manifest.json`` (:class:`~trm_edge.bundle.manifest.Manifest`), ONNX graphs, the
puzzle-embedding table (when several identifiers) and golden I/O. Torch-free (numpy, json, hashlib): the device
side imports this module. The format is documented in docs/bundle-format.md.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from trm_edge.bundle.manifest import MANIFEST, Manifest, sealed
from trm_edge.errors import BundleError, choices
from trm_edge.io import atomic_directory, sha256_file, write_json_atomic

STEP_FILE = "step.onnx"
UNROLLED_FILE = "unrolled.onnx"
PUZZLE_EMB_FILE = "puzzle_emb.npy"
IDENTIFIERS_FILE = "identifiers.json"
GOLDEN_FILE = "golden.npz"


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


def write_manifest(root: Path, manifest: Manifest) -> Manifest:
    """Hash every file in ``root`` into the manifest's ``files`` and write manifest.json atomically."""
    manifest = manifest.replace(files=hash_files(root, bundle_files(root)))
    manifest.check(where=repr(str(root)))
    write_json_atomic(root / MANIFEST, sealed(manifest.to_dict()))
    return manifest


class Bundle:
    """A bundle directory and its manifest. :func:`load_bundle` opens a verified one from disk; export and quantize
    also make unverified ones over a directory they are still writing, to run its graphs before it is complete."""

    def __init__(self, path: str | os.PathLike, manifest: Manifest) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self.config = manifest.model

    # -- identity --------------------------------------------------------------------------------
    @property
    def task(self) -> str | None:
        return self.manifest.task

    @property
    def target(self) -> str:
        return self.manifest.target

    @property
    def precision(self) -> str:
        return self.manifest.precision

    @property
    def graphs(self) -> dict:
        return dict(self.manifest.graphs)

    @property
    def halt_threshold(self) -> float:
        """The model's calibrated halting threshold (the recursion's default), 0 when the manifest has none."""
        return self.manifest.halt_threshold

    def graph_path(self, kind: str = "step") -> Path:
        try:
            return self.path / self.manifest.graph_file(kind)
        except BundleError as error:
            raise BundleError(f"bundle {str(self.path)!r}: {error}") from None

    @property
    def step_graph_path(self) -> Path:
        return self.graph_path("step")

    def with_step_graph(self, graph: str | os.PathLike, *, precision: str) -> Bundle:
        """This bundle with another step graph (a candidate of quantize's accuracy control): not on disk as a
        bundle, so unverified; runtimes run it exactly as they run a user's bundle."""
        step = {**self.manifest.graphs["step"], "file": str(Path(graph).resolve())}
        return Bundle(self.path, self.manifest.replace(graphs={**self.manifest.graphs, "step": step},
                                                       precision=precision))

    def __repr__(self) -> str:
        return f"Bundle({str(self.path)!r}, task={self.task!r}, target={self.target!r}, precision={self.precision!r})"

    # -- data ------------------------------------------------------------------------------------
    def initial_state(self) -> tuple[np.ndarray, np.ndarray]:
        """``(z_H, z_L)`` before step 1, each ``[hidden_size]`` float32 (broadcast over batch and positions)."""
        return self.manifest.initial_state_arrays()

    def initial_states(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """The initial state broadcast to the step graph's ``[batch, total_len, hidden_size]`` inputs."""
        shape = (batch, self.config.total_len, self.config.hidden_size)
        z_H, z_L = self.initial_state()
        return np.ascontiguousarray(np.broadcast_to(z_H, shape)), np.ascontiguousarray(np.broadcast_to(z_L, shape))

    def puzzle_embeddings(self) -> np.ndarray | None:
        """The puzzle embedding table ``[rows, puzzle_emb_ndim]`` (memory-mapped), or None when the
        graph has no ``puzzle_embedding`` input."""
        section = self.manifest.puzzle_embeddings
        if not section:
            return None
        return np.load(self.path / section["file"], mmap_mode="r")

    def identifiers(self) -> dict[str, list] | None:
        """``{"ids": [...], "names": [...]}``: row i of the table is identifier ``ids[i]`` named ``names[i]``."""
        return self._identifiers

    @functools.cached_property
    def _identifiers(self) -> dict[str, list] | None:
        # read once: a full ARC table names hundreds of thousands of rows, and every batch looks rows up
        section = self.manifest.puzzle_embeddings
        if not section:
            return None
        return json.loads((self.path / section["identifiers"]).read_text())

    @functools.cached_property
    def _rows(self) -> tuple[dict[int, int], dict[str, int]]:
        known = self.identifiers()
        return ({int(i): r for r, i in enumerate(known["ids"])},
                {n: r for r, n in enumerate(known["names"]) if n is not None})

    def puzzle_embedding(self, identifiers: Sequence[int | str]) -> np.ndarray | None:
        """Rows for a batch of puzzle identifiers (official integer ids or names) -> ``[batch, ndim]``
        float32; None when the model needs none."""
        table = self.puzzle_embeddings()
        if table is None:
            return None
        known = self.identifiers()
        rows_by_id, rows_by_name = self._rows
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
        section = self.manifest.golden
        if not section:
            raise BundleError(f"bundle {str(self.path)!r} has no golden I/O")
        with np.load(self.path / section["file"]) as data:
            return {key: data[key] for key in data.files}

    # -- updates ---------------------------------------------------------------------------------
    def write_manifest(self, manifest: Manifest) -> Bundle:
        """Replace this bundle's manifest by ``manifest``, re-hashing every file now in the directory (files added
        or removed by the caller included), atomically; returns the reloaded bundle. For build-engine."""
        write_manifest(self.path, manifest)
        return load_bundle(self.path)

    def copy_to(self, destination: str | os.PathLike, *, force: bool = False) -> Bundle:
        """Copy the bundle to a new directory atomically (for bundle -> bundle tools like quantize)."""
        with atomic_directory(destination, force=force) as tmp:
            for rel in [*self.manifest.files, MANIFEST]:
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(self.path / rel, tmp / rel)
        return load_bundle(destination)


def read_manifest(path: str | os.PathLike) -> Manifest:
    """The parsed, checked manifest of a bundle directory, without verifying the files' checksums."""
    root = Path(path)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{str(root)!r} is not a trm-edge bundle (no {MANIFEST})")
    try:
        raw = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(f"bundle {str(root)!r}: {MANIFEST} is not valid JSON ({error}); the bundle is "
                          "corrupt, re-export it") from None
    return Manifest.from_dict(raw, where=f"bundle {str(root)!r}")


def load_bundle(path: str | os.PathLike, *, verify: bool = True) -> Bundle:
    """Open a bundle, refusing one with an unknown format, a malformed manifest, or a missing, truncated or
    tampered file (every sha256 in ``files`` is checked unless ``verify=False``)."""
    root = Path(path)
    manifest = read_manifest(root)
    if verify:
        for rel, digest in manifest.files.items():
            target = root / rel
            if not target.is_file():
                raise BundleError(f"bundle {str(root)!r} is incomplete: {rel!r} is missing")
            if sha256_file(target) != digest:
                raise BundleError(f"bundle {str(root)!r}: {rel!r} does not match its sha256 in {MANIFEST} "
                                  "(tampered or truncated); re-export or re-copy the bundle")
    return Bundle(root, manifest)
