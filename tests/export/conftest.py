"""Export test fixtures: tiny models with every head exercised, and bundles exported once per session."""

from __future__ import annotations

import pytest

from tests.conftest import TINY_CONFIGS, random_trm

# The task whose puzzle-like tokens each tiny config is validated on.
TASKS = {"mlp": "sudoku", "rope": "sudoku", "learned": "maze", "many-puzzles": "arc"}


def make_model(name: str, seed: int = 0):
    """A seeded tiny TRM with every head exercised (``tests.conftest.random_trm``)."""
    return random_trm(TINY_CONFIGS[name], seed)


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
