"""Bundles on disk: open one (every checksum verified), read its data, write one atomically.

A bundle is a directory with ``manifest.json`` (:class:`~trm_edge.bundle.manifest.Manifest`), ONNX graphs, the
puzzle-embedding table (when several identifiers) and golden I/O. Torch-free (numpy, json, hashlib): the device
side imports this module. The format is documented in docs/bundle-format.md.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from trm_edge import safe_json
from trm_edge.bundle import contents
from trm_edge.bundle.files import BundleChanged, BundleDirectory, Contents, MissingFile
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
    """A bundle directory and its manifest. :func:`load_bundle` opens a verified one: every file read once, checked
    against its sha256 and kept, so what runs is what was verified, even if the directory is replaced meanwhile (a
    server keeps the bundle it verified for its whole life). Export and quantize also make unverified ones over a
    directory they are still writing, whose files are read from disk when asked for (confined all the same)."""

    def __init__(self, path: str | os.PathLike, manifest: Manifest,
                 contents: Mapping[str, Contents] | None = None) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self.config = manifest.model
        self.verified = contents is not None
        self._contents: dict[str, Contents] = dict(contents or {})

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

    @property
    def where(self) -> str:
        return f"bundle {str(self.path)!r}"

    def graph_file(self, kind: str = "step") -> str:
        try:
            return self.manifest.graph_file(kind)
        except BundleError as error:
            raise BundleError(f"{self.where}: {error}") from None

    def graph_path(self, kind: str = "step") -> Path:
        """Where the graph lies on disk: for messages, tools run by hand (trtexec) and graphs whose weights are in
        an external file; runtimes load :meth:`graph_bytes`."""
        return self.path / self.graph_file(kind)

    @property
    def step_graph_path(self) -> Path:
        return self.graph_path("step")

    def graph_bytes(self, kind: str = "step") -> bytes:
        """The graph's ONNX bytes, as verified when the bundle was loaded."""
        return bytes(self.read(self.graph_file(kind)))

    def graph_has_external_data(self, kind: str = "step") -> bool:
        """Weights in a file beside the graph (past the 2 GB protobuf limit): the runtime must open it by path."""
        return bool(self.manifest.graphs[kind].get("external_data"))

    def read(self, name: str) -> Contents:
        """The bytes of the bundle file ``name``: those verified at load, or (unverified bundle) read now."""
        if name in self._contents:
            return self._contents[name]
        if self.verified:
            raise BundleError(f"{self.where}: {name!r} is not one of its files")
        with BundleDirectory(self.path) as directory:
            return directory.read(name)

    def with_step_graph(self, graph: str | os.PathLike | bytes, *, precision: str) -> Bundle:
        """This bundle with another step graph (a candidate of quantize's accuracy control, as bytes or a file):
        not on disk as a bundle; runtimes run it exactly as they run a user's bundle."""
        data = graph if isinstance(graph, bytes) else Path(graph).read_bytes()
        step = {**self.manifest.graphs["step"], "external_data": None}
        manifest = self.manifest.replace(graphs={**self.manifest.graphs, "step": step}, precision=precision)
        bundle = Bundle(self.path, manifest, {**self._contents, self.graph_file("step"): data})
        bundle.verified = self.verified
        return bundle

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
        """The puzzle embedding table ``[rows, puzzle_emb_ndim]`` (a read-only view of the mapped file), or None
        when the graph has no ``puzzle_embedding`` input."""
        return self._table

    @functools.cached_property
    def _table(self) -> np.ndarray | None:
        section = self.manifest.puzzle_embeddings
        if not section:
            return None
        name = section["file"]
        return contents.puzzle_table(self.read(name), where=f"{self.where}: {name!r}",
                                     dim=self.config.puzzle_emb_ndim)

    def identifiers(self) -> dict[str, list] | None:
        """``{"ids": [...], "names": [...]}``: row i of the table is identifier ``ids[i]`` named ``names[i]``."""
        return self._identifiers

    @functools.cached_property
    def _identifiers(self) -> dict[str, list] | None:
        # read once: a full ARC table names hundreds of thousands of rows, and every batch looks rows up
        section = self.manifest.puzzle_embeddings
        if not section:
            return None
        name = section["identifiers"]
        return contents.identifier_lists(self.read(name), where=f"{self.where}: {name!r}",
                                         rows=len(self.puzzle_embeddings()),
                                         identifiers=self.config.num_puzzle_identifiers)

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
            raise BundleError(f"{self.where} has no golden I/O")
        name = section["file"]
        return contents.golden_arrays(bytes(self.read(name)), where=f"{self.where}: {name!r}",
                                      keys=section.get("keys"))

    # -- updates ---------------------------------------------------------------------------------
    def write_manifest(self, manifest: Manifest) -> Bundle:
        """Replace this bundle's manifest by ``manifest``, re-hashing every file now in the directory (files added
        or removed by the caller included), atomically; returns the reloaded bundle. For build-engine."""
        write_manifest(self.path, manifest)
        return load_bundle(self.path)

    def copy_to(self, destination: str | os.PathLike, *, force: bool = False) -> Bundle:
        """Copy the bundle to a new directory atomically (for bundle -> bundle tools like quantize): the files
        this bundle verified, not what the source directory holds now."""
        with atomic_directory(destination, force=force) as tmp:
            for rel in [*self.manifest.files, MANIFEST]:
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                (tmp / rel).write_bytes(self.read(rel))
        return load_bundle(destination)


def parse_manifest(data: bytes, *, where: str) -> Manifest:
    """The parsed, checked manifest from the bytes of a manifest.json."""
    try:
        raw = safe_json.loads(data)
    except ValueError as error:
        raise BundleError(f"{where}: {MANIFEST}: {' '.join(str(error).split())[:200]}; the bundle is corrupt, "
                          "re-export it") from None
    return Manifest.from_dict(raw, where=where, reading=True)


def load_bundle(path: str | os.PathLike, *, verify: bool = True) -> Bundle:
    """Open a bundle, refusing one with an unknown format, a malformed manifest, a name that leads outside it, or
    a missing, truncated or tampered file (every sha256 in ``files`` is checked unless ``verify=False``). A bundle
    replaced while it is read is read again once; a second change is one error that says so."""
    try:
        return _read_bundle(Path(path), verify=verify)
    except BundleChanged:
        try:
            return _read_bundle(Path(path), verify=verify)
        except BundleChanged as error:
            raise BundleError(f"bundle {str(path)!r} changed while it was read, twice ({error}); read it again once "
                              "its update is done") from None


def _read_bundle(root: Path, *, verify: bool) -> Bundle:
    where = f"bundle {str(root)!r}"
    with BundleDirectory(root) as directory:
        raw = _manifest_bytes(directory)
        manifest = parse_manifest(raw, where=where)
        table = (manifest.puzzle_embeddings or {}).get("file")
        found: dict[str, Contents] = {}
        for rel in sorted({*manifest.files, *manifest.referenced_files()}):
            data = directory.map(rel) if rel == table else directory.read(rel)
            if verify and hashlib.sha256(data).hexdigest() != manifest.files[rel]:
                if directory.replaced or _manifest_bytes(directory) != raw:
                    raise BundleChanged(f"{rel!r} no longer matches the manifest read before it")
                raise BundleError(f"{where}: {rel!r} does not match its sha256 in {MANIFEST} (tampered or "
                                  "truncated); re-export or re-copy the bundle")
            found[rel] = data
    return Bundle(root, manifest, {**found, MANIFEST: raw})


def _manifest_bytes(directory: BundleDirectory) -> bytes:
    try:
        return directory.read(MANIFEST)
    except BundleChanged:
        raise
    except MissingFile:
        raise BundleError(f"{str(directory.root)!r} is not a trm-edge bundle (no {MANIFEST})") from None
