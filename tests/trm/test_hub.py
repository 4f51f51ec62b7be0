"""`trm-edge import hf://OWNER/REPO/PATH/step_N`: official checkpoints through the Hugging Face Hub's cache, offline
here (no network): the test lays out a cache as huggingface_hub does (refs -> snapshots/COMMIT/...)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.trm.official_fixture import write_official_checkpoint
from trm_edge.trm.checkpoint import load_model

pytest.importorskip("huggingface_hub")
ROOT = Path(__file__).resolve().parents[2]
REPO, COMMIT = "arcprize/trm-tiny", "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path, tiny_model_factory):
    """A Hub cache holding OWNER/REPO at one commit (branch main, tag v1) with arc_v1_public/step_10."""
    repo = tmp_path / "hub" / f"models--{REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    for ref in ("main", "v1"):
        (repo / "refs" / ref).write_text(COMMIT)
    model = tiny_model_factory("mlp")
    write_official_checkpoint(model, repo / "snapshots" / COMMIT / "arc_v1_public", step=10, dtype=torch.float32)
    return tmp_path / "hub", model


def hub_import(cache: Path, reference: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "trm_edge", "import", reference, "--task", "sudoku", "-o", str(out),
                           *extra], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("revision", [None, "v1", COMMIT])
def test_import_from_a_hub_cache_offline(hub_cache, tmp_path, revision):
    cache, model = hub_cache
    extra = ["--revision", revision] if revision else []
    result = hub_import(cache, f"hf://{REPO}/arc_v1_public/step_10", tmp_path / "ckpt", *extra)
    assert result.returncode == 0, result.stderr
    imported = load_model(tmp_path / "ckpt")
    for (name, a), b in zip(model.state_dict().items(), imported.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("reference, extra, message", [
    (f"hf://{REPO}/arc_v1_public/step_10", ["--revision", "nope"], "not in the local Hugging Face cache"),
    (f"hf://{REPO}/arc_v1_public/step_99", [], "not in the local Hugging Face cache"),
    ("hf://arcprize/other/arc_v1_public/step_10", [], "not in the local Hugging Face cache"),
    (f"hf://{REPO}", [], "not a Hub checkpoint reference"),
    (f"hf://{REPO}/arc_v1_public/all_config.yaml", [], "is not a PyTorch checkpoint"),
], ids=["unknown revision", "missing file", "unknown repository", "no path", "not a checkpoint"])
def test_a_hub_reference_that_does_not_resolve_is_one_line_and_writes_nothing(hub_cache, tmp_path, reference,
                                                                              extra, message):
    cache, _ = hub_cache
    result = hub_import(cache, reference, tmp_path / "ckpt", *extra)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "ckpt").exists()
