"""Export test fixtures: tiny models with every head exercised, and bundles exported once per session."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import TINY_CONFIGS

# The task whose puzzle-like tokens each tiny config is validated on.
TASKS = {"mlp": "sudoku", "rope": "sudoku", "learned": "maze", "many-puzzles": "arc"}


def make_model(name: str, seed: int = 0):
    """A seeded tiny TRM like ``tiny_model_factory``'s, with the halting head randomised too (it is
    zero-initialised for training, which would make q_halt_logits a constant)."""
    from trm_edge.trm.model import build_model

    model = build_model(TINY_CONFIGS[name], seed=seed).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        if hasattr(model, "puzzle_emb"):
            model.puzzle_emb.weights.normal_(0, 1, generator=generator)
        model.q_head.weight.normal_(0, 0.2, generator=generator)
    return model


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory):
    """``bundle_dir(name, target="cpu")`` -> path of a bundle exported once per session."""
    from trm_edge.export.exporter import export_bundle

    cache = {}

    def get(name: str, target: str = "cpu"):
        key = (name, target)
        if key not in cache:
            out = tmp_path_factory.mktemp("bundles") / f"{name}-{target}"
            cache[key] = export_bundle(make_model(name), out, target=target, task=TASKS[name])
        return cache[key]

    return get
