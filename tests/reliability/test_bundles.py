"""Bundles are untrusted input: a manifest is never followed outside its bundle, what is verified is what runs, a
reader during an update gets the old bundle or the new one, and a bad file inside a bundle is one line.

Every case runs on one tiny bundle of each preset family (a registry guard below fails when a family is missing),
in-process with Python's audit hook recording every file opened, and a sample as real CLI processes under strace.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PRESET_FAMILIES, TINY_CONFIGS, random_trm
from tests.reliability.conftest import ROOT, SUDOKU, assert_refused, cli
from trm_edge.bundle.files import BundleDirectory, check_name
from trm_edge.bundle.manifest import DIGEST_KEY, sealed
from trm_edge.bundle.store import load_bundle
from trm_edge.errors import BundleError

FAMILIES = sorted(set(PRESET_FAMILIES.values()))


def test_every_preset_family_is_tried():
    assert set(FAMILIES) == {"mlp", "rope", "many-puzzles"}, "a preset family was added: give it a bundle here"


@pytest.fixture(scope="session")
def family_bundles(tmp_path_factory):
    """``family_bundles(family, seed=0)``: a tiny random bundle of the family, exported once."""
    from trm_edge.export.exporter import export_bundle

    cache: dict[tuple[str, int], Path] = {}
    root = tmp_path_factory.mktemp("families")

    def get(family: str, seed: int = 0) -> Path:
        if (family, seed) not in cache:
            cfg = TINY_CONFIGS[family]
            task = "sudoku" if cfg.seq_len == 81 and cfg.vocab_size == 11 else None
            cache[family, seed] = export_bundle(random_trm(cfg, seed), root / f"{family}-{seed}", target="cpu",
                                                task=task, validation_steps=1)
        return cache[family, seed]

    return get


_OPENED: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _OPENED is not None and event == "open" and isinstance(args[0], (str, bytes)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


@contextmanager
def opened_paths():
    """The paths Python opens inside the block (open, os.open, numpy's and the bundle reader's opens)."""
    global _OPENED
    _OPENED = []
    try:
        yield _OPENED
    finally:
        _OPENED = None


def reseal(bundle: Path, edit, *, seal: bool = True) -> None:
    """Apply ``edit`` to the bundle's manifest dict and write it back sealed (or with the seal removed), as an
    attacker who knows the format would: the checksums and the seal then match the hostile manifest."""
    path = bundle / "manifest.json"
    raw = json.loads(path.read_text())
    raw.pop(DIGEST_KEY, None)
    edit(raw)
    path.write_text(json.dumps(sealed(raw) if seal else raw))


def point_at(raw: dict, section: str, name: str, file: Path) -> None:
    """Make ``raw[section]['file']`` name ``name`` with ``file``'s checksum."""
    entry = raw["graphs"]["step"] if section == "step" else raw[section]
    del raw["files"][entry["file"]]
    entry["file"] = name
    raw["files"][name] = hashlib.sha256(file.read_bytes()).hexdigest()


def outside_graph(tmp_path: Path, bundle: Path) -> Path:
    outside = tmp_path / "outside-bundle"
    outside.mkdir()
    return Path(shutil.copy(bundle / "step.onnx", outside / "step.onnx"))


HOSTILE = ["parent", "absolute", "etc-passwd", "outside-link"]


def make_hostile(case: str, bundle: Path, tmp_path: Path, *, seal: bool) -> str:
    """Turn ``bundle`` into the hostile ``case``; returns the path outside that it points at."""
    if case == "etc-passwd":
        reseal(bundle, lambda raw: point_at(raw, "golden", "/etc/passwd", Path("/etc/passwd")), seal=seal)
        return "/etc/passwd"
    graph = outside_graph(tmp_path, bundle)
    if case == "outside-link":
        (bundle / "step.onnx").unlink()
        (bundle / "step.onnx").symlink_to(graph)
        if not seal:
            reseal(bundle, lambda raw: None, seal=False)
        return str(graph)
    name = "../outside-bundle/step.onnx" if case == "parent" else str(graph)
    reseal(bundle, lambda raw: point_at(raw, "step", name, graph), seal=seal)
    return str(graph)


@pytest.mark.parametrize("seal", [True, False], ids=["resealed", "seal-removed"])
@pytest.mark.parametrize("case", HOSTILE)
@pytest.mark.parametrize("family", FAMILIES)
def test_a_hostile_manifest_is_refused_before_anything_outside_is_opened(family, case, seal, family_bundles,
                                                                          tmp_path):
    bundle = Path(shutil.copytree(family_bundles(family), tmp_path / "bundle"))
    outside = make_hostile(case, bundle, tmp_path, seal=seal)
    with opened_paths() as opened, pytest.raises(BundleError, match=r"outside the bundle|plain relative name"):
        load_bundle(bundle)
    assert not [p for p in opened if "outside-bundle" in p or p == outside], opened


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
@pytest.mark.parametrize("case", ["parent", "absolute", "outside-link"])  # /etc/passwd: start-up may read it
def test_solve_and_verify_refuse_a_hostile_manifest_without_opening_what_it_names(case, family_bundles, tmp_path):
    bundle = Path(shutil.copytree(family_bundles("mlp"), tmp_path / "bundle"))
    make_hostile(case, bundle, tmp_path, seal=True)
    for command in (["solve", SUDOKU, "--model", str(bundle)], ["verify", str(bundle)]):
        log = tmp_path / "strace.log"
        result = subprocess.run(["strace", "-f", "-qq", "-e", "trace=open,openat,openat2", "-o", str(log),
                                 sys.executable, "-m", "trm_edge", *command], capture_output=True, text=True,
                                cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
        assert_refused(result, "outside the bundle" if case == "outside-link" else "plain relative name")
        touched = [line for line in log.read_text().splitlines() if "outside-bundle" in line]
        assert not touched, touched


def test_a_link_inside_the_bundle_is_followed(family_bundles, tmp_path):
    bundle = Path(shutil.copytree(family_bundles("mlp"), tmp_path / "bundle"))
    (bundle / "graphs").mkdir()
    (bundle / "step.onnx").rename(bundle / "graphs" / "step.onnx")
    (bundle / "step.onnx").symlink_to("graphs/../graphs/step.onnx")
    assert load_bundle(bundle).graph_bytes() == (bundle / "graphs" / "step.onnx").read_bytes()


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../x", "", ".", "a//b", "a\\b", "a\x00b", "./x",
                                  None, 3, ["step.onnx"]])
def test_a_name_that_is_not_a_plain_relative_name_is_refused(name):
    with pytest.raises(BundleError):
        check_name(name, where="test")


def test_a_link_that_climbs_out_through_other_links_is_refused(tmp_path):
    bundle = tmp_path / "b"
    (bundle / "d").mkdir(parents=True)
    (tmp_path / "secret").write_text("x")
    (bundle / "d" / "up").symlink_to("..")
    (bundle / "hop").symlink_to("d/up/../secret")  # d/up is the bundle itself, its parent is outside
    (bundle / "loop").symlink_to("loop")
    (bundle / "fifo").mkdir()
    with BundleDirectory(bundle) as directory:
        for name, words in [("hop", "outside"), ("loop", "symbolic links"), ("fifo", "regular file"),
                            ("absent", "missing")]:
            with pytest.raises(BundleError, match=words):
                directory.read(name)


# -- bad files inside a bundle ------------------------------------------------------------------------------------

def _pickled_npy(path: Path) -> None:
    with open(path, "wb") as handle:  # np.save to a name would add ".npy" to it
        np.save(handle, np.array([{"a": 1}], dtype=object), allow_pickle=True)


BAD_FILES = {  # file -> (how it is spoilt, what reads it)
    "golden": ("golden.npz", _pickled_npy, "golden"),
    "golden-text": ("golden.npz", lambda p: p.write_text("not a zip"), "golden"),
    "table-pickled": ("puzzle_emb.npy", _pickled_npy, "table"),
    "table-truncated": ("puzzle_emb.npy", lambda p: p.write_bytes(p.read_bytes()[:-7]), "table"),
    "table-text": ("puzzle_emb.npy", lambda p: p.write_text("[[1, 2]]"), "table"),
    "identifiers-list": ("identifiers.json", lambda p: p.write_text("[1, 2, 3]"), "identifiers"),
    "identifiers-huge-int": ("identifiers.json", lambda p: p.write_text('{"ids": [' + "9" * 5000 + "]}"),
                             "identifiers"),
    "identifiers-bytes": ("identifiers.json", lambda p: p.write_bytes(b"\xff\xfe{"), "identifiers"),
}


@pytest.mark.parametrize("bad", sorted(BAD_FILES))
def test_a_file_that_is_not_what_its_extension_says_is_one_line(bad, family_bundles, tmp_path):
    file, spoil, reader = BAD_FILES[bad]
    bundle = Path(shutil.copytree(family_bundles("many-puzzles"), tmp_path / "bundle"))
    spoil(bundle / file)
    reseal(bundle, lambda raw: raw["files"].update({file: hashlib.sha256((bundle / file).read_bytes()).hexdigest()}))
    opened = load_bundle(bundle)
    read = {"golden": opened.golden, "table": opened.puzzle_embeddings, "identifiers": opened.identifiers}[reader]
    with pytest.raises(BundleError, match=re.escape(file)):
        read()


def test_verify_of_a_golden_file_that_links_to_a_pickle_is_one_line(family_bundles, tmp_path):
    bundle = Path(shutil.copytree(family_bundles("mlp"), tmp_path / "bundle"))
    _pickled_npy(bundle / "pickle.npy")
    (bundle / "golden.npz").unlink()
    (bundle / "golden.npz").symlink_to("pickle.npy")
    reseal(bundle, lambda raw: raw["files"].update(
        {"golden.npz": hashlib.sha256((bundle / "pickle.npy").read_bytes()).hexdigest()}))
    assert_refused(cli("verify", str(bundle)), "golden.npz", "not a NumPy .npz")


# -- what is verified is what runs; readers during updates ---------------------------------------------------------

def test_the_bytes_that_run_are_the_bytes_verified(family_bundles, tmp_path):
    """Replacing the graph on disk after the load changes nothing that runs: onnxruntime gets the verified bytes."""
    from trm_edge.runtimes.sources import open_runtime

    bundle = Path(shutil.copytree(family_bundles("mlp"), tmp_path / "bundle"))
    opened = load_bundle(bundle)
    (bundle / "step.onnx").write_bytes(b"garbage")
    with opened_paths() as paths, open_runtime(bundle_source(opened), "onnxruntime") as runtime:
        golden = opened.golden()
        runtime.step({name: golden[name] for name in runtime.input_names})
    assert not [p for p in paths if p.endswith("step.onnx")], paths


def bundle_source(bundle):
    from trm_edge.runtimes.model_source import bundle_source as source

    return source(bundle)


def _answers(path: Path, puzzles: np.ndarray) -> tuple:
    """Open ``path`` as a new reader would and solve ``puzzles`` on it: (predictions, steps) as bytes."""
    from trm_edge.runtimes.solver import Solver
    from trm_edge.runtimes.sources import open_runtime

    with open_runtime(path, "onnxruntime", threads=1) as runtime:
        out = Solver(runtime, batch_size=len(puzzles)).run(puzzles)
    return out.preds.tobytes(), np.asarray(out.steps).tobytes()


SWAPPER = """
import shutil, sys, time
from trm_edge.io import atomic_directory
target, sources, until = sys.argv[1], sys.argv[2:4], float(sys.argv[4])
i = 0
while time.time() < until:
    with atomic_directory(target, force=True) as tmp:
        shutil.copytree(sources[i % 2], tmp, dirs_exist_ok=True)
    i += 1
    time.sleep(0.01)
print(i)
"""


def _readers(target: Path, expected: dict, puzzles: np.ndarray, writer: subprocess.Popen, minimum: int) -> list:
    """Solve on ``target`` until the writer ends and at least ``minimum`` solves are done; which bundle each got."""
    got = []
    while writer.poll() is None or len(got) < minimum:
        answer = _answers(target, puzzles)
        got.append(next((name for name, value in expected.items() if value == answer), "neither"))
    return got


def test_readers_during_rapid_replacement_get_the_old_or_the_new_bundle(family_bundles, tmp_path):
    """300+ loads while another process swaps two bundles in every ~10 ms (the same atomic replacement as export
    --force, without its minutes of work in between): every answer is one bundle's."""
    a, b = family_bundles("mlp", 0), family_bundles("mlp", 1)
    puzzles = np.frombuffer(SUDOKU.encode(), np.uint8).reshape(1, -1).astype(np.int32) - ord("0") + 1
    expected = {"a": _answers(a, puzzles), "b": _answers(b, puzzles)}
    assert expected["a"] != expected["b"], "the two models must answer differently for the test to mean anything"
    target = Path(shutil.copytree(a, tmp_path / "B"))
    writer = subprocess.Popen([sys.executable, "-c", SWAPPER, str(target), str(a), str(b), str(time.time() + 15)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    got = _readers(target, expected, puzzles, writer, minimum=300)
    swaps = int(writer.communicate()[0])
    assert writer.returncode == 0 and swaps > 100, swaps
    assert got.count("neither") == 0 and {"a", "b"} <= set(got), (len(got), got.count("neither"))


@pytest.mark.slow
def test_solves_during_repeated_export_force_answer_as_the_old_or_the_new_model(family_bundles, tmp_path):
    """The issue's loop: `trm-edge export ... -o B --force` alternating two models, at least 200 solves meanwhile
    (in-process loads, as many as can run), each answering as one of the two."""
    from trm_edge.trm.checkpoint import save_checkpoint

    checkpoints = [save_checkpoint(random_trm(TINY_CONFIGS["mlp"], seed), tmp_path / f"ckpt{seed}", task="sudoku")
                   for seed in (0, 1)]
    puzzles = np.frombuffer(SUDOKU.encode(), np.uint8).reshape(1, -1).astype(np.int32) - ord("0") + 1
    exported = [tmp_path / "a", tmp_path / "b"]
    for checkpoint, out in zip(checkpoints, exported):
        assert cli("export", str(checkpoint), "--target", "cpu", "-o", str(out)).returncode == 0
    expected = {"a": _answers(exported[0], puzzles), "b": _answers(exported[1], puzzles)}
    assert expected["a"] != expected["b"]
    target = Path(shutil.copytree(exported[0], tmp_path / "B"))
    loop = "; ".join(f"{sys.executable} -m trm_edge export {c} --target cpu -o {target} --force" for c in checkpoints)
    writer = subprocess.Popen(["bash", "-c", f"for i in 1 2; do {loop} || exit 1; done"], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    got = _readers(target, expected, puzzles, writer, minimum=200)
    assert writer.wait() == 0, writer.stderr.read()
    assert got.count("neither") == 0 and len(got) >= 200, (len(got), got.count("neither"))
