"""Shared test fixtures: the tiny-model registry every test draws its models from."""

from __future__ import annotations

import os

import pytest

from trm_edge.config import TRMConfig

try:  # Hypothesis profiles, chosen by HYPOTHESIS_PROFILE: `ci` (the default, what `make test` runs) keeps Hypothesis'
    # default of 100 examples, derandomized so that a run on main is reproducible; `nightly` tries ten times as many,
    # new ones each run. The fuzz campaign (tests/reliability/test_fuzz.py)
    # scales each of its tests by max_examples: a few hundred cases in all under ci, thousands under nightly.
    from hypothesis import settings
except ImportError:  # a device-side environment without the dev tools
    pass
else:
    settings.register_profile("ci", max_examples=100, deadline=None, print_blob=True, derandomize=True)
    settings.register_profile("nightly", max_examples=1000, deadline=None, print_blob=True)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

def maps_a_file(array) -> bool:
    """``array`` is a view of a memory-mapped file (a bundle's puzzle table), not a copy in memory."""
    import mmap

    import numpy as np

    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base.obj if isinstance(base, memoryview) else base, mmap.mmap)


# One tiny config per architecture variant; a guard test checks each is exercised by export tests.
TINY_CONFIGS: dict[str, TRMConfig] = {
    "mlp": TRMConfig(seq_len=81, vocab_size=11, hidden_size=32, expansion=2.0, mlp_t=True, pos_encodings="none",
                     puzzle_emb_ndim=32, puzzle_emb_len=2, H_cycles=2, L_cycles=2, halt_max_steps=4),
    "rope": TRMConfig(seq_len=81, vocab_size=11, hidden_size=32, num_heads=4, expansion=2.0, pos_encodings="rope",
                      puzzle_emb_ndim=32, puzzle_emb_len=2, H_cycles=2, L_cycles=2, halt_max_steps=4),
    "learned": TRMConfig(seq_len=36, vocab_size=6, hidden_size=32, num_heads=2, expansion=2.0,
                         pos_encodings="learned", puzzle_emb_ndim=0, puzzle_emb_len=0, H_cycles=2, L_cycles=1,
                         halt_max_steps=3),
    "many-puzzles": TRMConfig(seq_len=64, vocab_size=12, num_puzzle_identifiers=7, hidden_size=32, num_heads=4,
                              expansion=2.0, pos_encodings="rope", puzzle_emb_ndim=48, puzzle_emb_len=2,
                              H_cycles=2, L_cycles=2, halt_max_steps=3),
}


# The tiny config that shares each preset's architecture (token mixing, positions, puzzle table): tests that
# must cover every preset family parametrise over this; a guard test fails when a preset is missing.
PRESET_FAMILIES: dict[str, str] = {
    "sudoku-extreme-mlp": "mlp",
    "sudoku-extreme-att": "rope",
    "maze-hard": "rope",
    "arc-agi-1": "many-puzzles",
    "arc-agi-2": "many-puzzles",
    "sudoku-mini": "mlp",
    "sudoku-mini-att": "rope",
    "maze-mini": "rope",
}


def random_trm(config: TRMConfig, seed: int = 0, *, puzzle_std: float | None = None):
    """A seeded random TRM in eval mode with a random halting head (the training init's zero weights make
    ``q_halt_logits`` a constant) and random puzzle rows (zero-initialised for training) at the token
    embeddings' scale (or ``puzzle_std``), so that every step output is a real computation on inputs of a
    trained model's size."""
    import torch

    from trm_edge.trm.model import build_model

    model = build_model(config, seed=seed).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        if hasattr(model, "puzzle_emb"):
            std = config.hidden_size**-0.5 if puzzle_std is None else puzzle_std
            model.puzzle_emb.weights.normal_(0, std, generator=generator)
        model.q_head.weight.normal_(0, 2.0 / config.hidden_size**0.5, generator=generator)
        model.q_head.bias.fill_(0.0)
    return model


@pytest.fixture(params=sorted(TINY_CONFIGS))
def tiny_config(request) -> TRMConfig:
    return TINY_CONFIGS[request.param]


@pytest.fixture
def tiny_model_factory():
    """``factory(name, seed=0)`` -> a seeded random TRM in eval mode; puzzle tables get random rows so
    that the puzzle embedding path is exercised (they are zero-initialised for training)."""
    import torch

    from trm_edge.trm.model import build_model

    def make(name: str, seed: int = 0):
        model = build_model(TINY_CONFIGS[name], seed=seed).eval()
        if hasattr(model, "puzzle_emb"):
            with torch.no_grad():
                model.puzzle_emb.weights.normal_(0, 1, generator=torch.Generator().manual_seed(seed))
        return model

    return make
