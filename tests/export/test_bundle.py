"""Bundles: every variant exported and driven from the manifest alone, golden I/O, tampering, atomicity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import TINY_CONFIGS, maps_a_file
from tests.export.conftest import make_model
from trm_edge.bundle.contract import STEP_OUTPUTS
from trm_edge.bundle.manifest import FORMAT
from trm_edge.bundle.store import load_bundle
from trm_edge.bundle.tolerances import error_ratio, tolerance_for
from trm_edge.errors import BundleError, ExportError, OutputExistsError, ValidationError
from trm_edge.export.exporter import export_bundle
from trm_edge.export.validate import feed_scales


def drive_from_manifest(bundle: Path, tokens: np.ndarray, puzzle_rows: list[int] | None, reference_step):
    """The independent program of the contract: json + numpy + onnxruntime only. Teacher-forced: at
    every step feed the reference's state; returns the worst err/tol (fp32 tolerance) per output per step.
    ``reference_step(z_H, z_L)`` returns the four reference outputs and their feed scales."""
    import onnxruntime as ort

    manifest = json.loads((bundle / "manifest.json").read_text())
    step = manifest["graphs"]["step"]
    total_len, hidden = step["inputs"][1]["shape"][1:]
    session = ort.InferenceSession(str(bundle / step["file"]),
                                   providers=["CPUExecutionProvider"])
    shape = (len(tokens), total_len, hidden)
    z_H = np.broadcast_to(np.asarray(manifest["initial_state"]["z_H"], np.float32), shape).copy()
    z_L = np.broadcast_to(np.asarray(manifest["initial_state"]["z_L"], np.float32), shape).copy()
    feeds = {"inputs": tokens.astype(np.int32)}
    if "puzzle_embeddings" in manifest:
        table = np.load(bundle / manifest["puzzle_embeddings"]["file"], mmap_mode="r")
        ids = json.loads((bundle / manifest["puzzle_embeddings"]["identifiers"]).read_text())["ids"]
        feeds["puzzle_embedding"] = np.asarray(table[[ids.index(r) for r in puzzle_rows]])
    errors = []
    for _ in range(manifest["loop"]["max_steps"]):
        got = session.run(["z_H_next", "z_L_next", "logits", "q_halt_logits"], {**feeds, "z_H": z_H, "z_L": z_L})
        want, scales = reference_step(z_H, z_L)
        pairs = zip(STEP_OUTPUTS, got, want, scales, strict=True)
        errors.append([error_ratio(g, w, scale, tolerance_for("fp32").for_output(name))
                       for name, g, w, scale in pairs])
        z_H, z_L = want[0], want[1]
    return errors


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_every_variant_reproduces_torch_at_every_step_from_the_manifest(name, bundle_dir):
    path = bundle_dir(name)
    model, cfg = make_model(name), TINY_CONFIGS[name]
    manifest = load_bundle(path).manifest.to_dict()
    assert manifest["validation"]["passed"]
    step_report = manifest["validation"]["reports"][0]
    assert all(len(v) == cfg.halt_max_steps for v in step_report["per_step_ratio"].values())

    rng = np.random.default_rng(7)
    tokens = rng.integers(1, cfg.vocab_size, (3, cfg.seq_len))
    rows = [1, 4, 6] if cfg.has_puzzle_table else None
    ids = torch.tensor(rows) if rows else None
    inputs = torch.from_numpy(tokens).int()

    def reference_step(z_H, z_L):
        with torch.no_grad():
            out = model.step(inputs, torch.from_numpy(z_H), torch.from_numpy(z_L), puzzle_identifiers=ids)
        scales = feed_scales(model, out[0], out[1])
        return [t.numpy() for t in out], [scales[name] for name in STEP_OUTPUTS]

    errors = drive_from_manifest(path, tokens, rows, reference_step)
    assert len(errors) == cfg.halt_max_steps
    assert max(max(step) for step in errors) <= 1.0, errors


def test_manifest_contract(bundle_dir):
    bundle = load_bundle(bundle_dir("many-puzzles"))
    m = bundle.manifest.to_dict()
    cfg = TINY_CONFIGS["many-puzzles"]
    assert m["format"] == FORMAT and m["task"] == "arc" and m["target"] == "cpu" and m["precision"] == "fp32"
    assert m["model"] == cfg.to_dict() and bundle.config == cfg
    assert m["graphs"]["step"]["file"] == "step.onnx" and m["graphs"]["step"]["batch"] is None
    assert [i["name"] for i in m["graphs"]["step"]["inputs"]] == ["inputs", "z_H", "z_L", "puzzle_embedding"]
    assert m["graphs"]["step"]["inputs"][0] == {"name": "inputs", "dtype": "int32", "shape": ["batch", cfg.seq_len]}
    assert set(m["versions"]) >= {"trm-edge", "torch", "onnx", "opset"} and m["versions"]["opset"] == 17
    assert m["codec"]["task"] == "arc" and m["codec"]["eos"] == 1
    assert sorted(m["files"]) == ["golden.npz", "identifiers.json", "puzzle_emb.npy", "step.onnx"]
    z_H, z_L = bundle.initial_state()
    assert z_H.shape == z_L.shape == (cfg.hidden_size,) and z_H.dtype == np.float32
    assert bundle.initial_states(2)[0].shape == (2, cfg.total_len, cfg.hidden_size)
    table = bundle.puzzle_embeddings()
    assert maps_a_file(table) and not table.flags.writeable
    assert table.shape == (cfg.num_puzzle_identifiers, cfg.puzzle_emb_ndim)
    np.testing.assert_array_equal(table, make_model("many-puzzles").puzzle_emb.weights.detach().numpy())
    assert "engine" not in m  # CPU targets need no engine build
    assert load_bundle(bundle_dir("learned")).puzzle_embeddings() is None
    assert load_bundle(bundle_dir("mlp")).manifest.puzzle_embeddings is None  # single embedding: folded


def test_golden_io_replays_through_onnxruntime(bundle_dir):
    import onnxruntime as ort

    for name in ("mlp", "many-puzzles"):
        bundle = load_bundle(bundle_dir(name))
        golden = bundle.golden()
        assert set(bundle.manifest.golden["steps"]) == {1, 2, TINY_CONFIGS[name].halt_max_steps}
        session = ort.InferenceSession(str(bundle.step_graph_path), providers=["CPUExecutionProvider"])
        feeds = {k: golden[k] for k in ("inputs", "z_H", "z_L", "puzzle_embedding") if k in golden}
        got = session.run(None, feeds)
        for value, key in zip(got, ("z_H_next", "z_L_next", "logits", "q_halt_logits"), strict=True):
            assert np.abs(value - golden[key]).max() <= 1e-4 * np.abs(golden[key]).max()


def test_jetson_bundle_says_engines_are_built_on_the_device(bundle_dir):
    manifest = load_bundle(bundle_dir("learned", "jetson")).manifest.to_dict()
    assert manifest["engine"]["build_on_device"] and "build-engine" in manifest["engine"]["command"]
    assert manifest["target_profile"]["op_list"] == "tensorrt-8.5"


def test_puzzles_restrict_the_table(tmp_path):
    model = make_model("many-puzzles")
    names = ["<blank>"] + [f"task{i // 2}|||t{i % 2}|||0123456789" for i in range(6)]
    out = export_bundle(model, tmp_path / "b", target="cpu", task="arc", puzzles=["task1", "5"],
                        identifier_names=names, validation_steps=1)
    bundle = load_bundle(out)
    assert bundle.identifiers() == {"ids": [3, 4, 5], "names": names[3:6]}
    table = model.puzzle_emb.weights.detach().numpy()
    np.testing.assert_array_equal(bundle.puzzle_embedding([5, "task1|||t0|||0123456789"]), table[[5, 3]])
    with pytest.raises(BundleError, match="not in this bundle"):
        bundle.puzzle_embedding([1])
    with pytest.raises(ExportError, match="matches no identifier"):
        export_bundle(model, tmp_path / "c", target="cpu", task="arc", puzzles=["nope"], identifier_names=names)
    with pytest.raises(ExportError, match="out of range"):
        export_bundle(model, tmp_path / "c", target="cpu", task="arc", puzzles=["99"])
    with pytest.raises(ExportError, match="several puzzle identifiers"):
        export_bundle(make_model("learned"), tmp_path / "c", target="cpu", task="maze", puzzles=["1"])
    assert not (tmp_path / "c").exists()


def _copy(src: Path, dst: Path) -> Path:
    return load_bundle(src).copy_to(dst).path


def test_tampered_truncated_or_incomplete_bundles_are_refused(bundle_dir, tmp_path):
    src = bundle_dir("learned")
    tampered = _copy(src, tmp_path / "tampered")
    data = bytearray((tampered / "step.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tampered / "step.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="tampered or truncated"):
        load_bundle(tampered)

    truncated = _copy(src, tmp_path / "truncated")
    (truncated / "golden.npz").write_bytes((truncated / "golden.npz").read_bytes()[:100])
    with pytest.raises(BundleError, match=r"'golden\.npz' does not match"):
        load_bundle(truncated)

    incomplete = _copy(src, tmp_path / "incomplete")
    (incomplete / "step.onnx").unlink()
    with pytest.raises(BundleError, match="missing"):
        load_bundle(incomplete)

    other = _copy(src, tmp_path / "other")
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "format": "trm-edge-bundle/9"}))
    with pytest.raises(BundleError, match="format 'trm-edge-bundle/9'"):
        load_bundle(other)
    (other / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="invalid JSON"):
        load_bundle(other)
    with pytest.raises(BundleError, match="not a trm-edge bundle"):
        load_bundle(tmp_path)


def test_manifest_update_rehashes_added_files(bundle_dir, tmp_path):
    bundle = load_bundle(bundle_dir("learned")).copy_to(tmp_path / "b")
    (bundle.path / "step.plan").write_bytes(b"engine bytes")
    manifest = bundle.manifest
    sections = {k: v for k, v in manifest.sections.items() if k != "codec"}
    updated = bundle.write_manifest(manifest.replace(
        engines={"tensorrt": {"file": "step.plan", "gpu": "Orin"}}, sections=sections,
        graphs={**manifest.graphs, "step": {**manifest.graphs["step"], "batch": None}}))
    assert "step.plan" in updated.manifest.files and updated.manifest.tensorrt_engine["gpu"] == "Orin"
    assert "codec" not in updated.manifest.to_dict() and updated.graphs["step"]["batch"] is None
    (bundle.path / "step.plan").write_bytes(b"another engine")
    with pytest.raises(BundleError, match=r"step\.plan"):
        load_bundle(bundle.path)


def test_bundle_module_needs_no_torch(bundle_dir):
    code = ("import sys; sys.modules['torch'] = None\n"
            "from trm_edge.bundle.store import load_bundle\n"
            f"b = load_bundle({str(bundle_dir('many-puzzles'))!r})\n"
            "print(sorted(b.golden()), b.puzzle_embedding([1]).shape, b.config.hidden_size)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert "(1, 48) 32" in result.stdout


def test_existing_output_is_refused_unless_forced(bundle_dir, tmp_path):
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        export_bundle(make_model("learned"), out, target="cpu", task="maze")
    assert (out / "keep.txt").read_text() == "mine"


def test_interrupted_or_failed_export_leaves_nothing(tmp_path):
    def interrupt(line: str) -> None:
        if line.startswith("validating"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_bundle(make_model("learned"), tmp_path / "b", target="cpu", task="maze", log=interrupt)
    broken = make_model("learned")
    with torch.no_grad():
        broken.L_level.layers[0].mlp.down_proj.weight[0, 0] = float("nan")  # a corrupt checkpoint
    with pytest.raises(ValidationError, match="z_H_next"):
        export_bundle(broken, tmp_path / "b", target="cpu", task="maze", validation_steps=1)
    assert list(tmp_path.iterdir()) == []  # no bundle, no temporary directory


def test_every_tiny_variant_is_exported():
    """Registry guard: each tiny config has a task here, so the parametrised tests above export it."""
    from tests.export.conftest import TASKS

    assert set(TASKS) == set(TINY_CONFIGS)
