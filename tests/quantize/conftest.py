"""Quantization test fixtures: tiny bundles exported once per session, and a tiny dataset on disk."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import TINY_CONFIGS, random_trm

TASKS = {"mlp": "sudoku", "rope": "sudoku", "many-puzzles": None}


def native_x86_target() -> str:
    """The x86 target whose INT8 format this CPU's onnxruntime kernels run as intended: x86-avx512 (full-range u8 x
    s8) needs its VNNI; without it, AVX2's vpmaddubsw saturates those 16-bit sums, which x86-avx2's 7-bit weights
    avoid. Tests that measure what int8 rounding costs run on this one."""
    from trm_edge.machine import cpu_flags
    from trm_edge.targets import get_target

    return "x86-avx512" if set(get_target("x86-avx512").cpu_features) <= cpu_flags() else "x86-avx2"


def make_model(name: str, seed: int = 0):
    """A seeded tiny TRM with a random halting head (the training init never halts) and random puzzle rows of
    unit scale (the accuracy-control test's rankings were measured on this model)."""
    return random_trm(TINY_CONFIGS[name], seed, puzzle_std=1.0)


@pytest.fixture(scope="session")
def bundle(tmp_path_factory):
    """``bundle(name="mlp", target="x86-avx512") -> Path``: a tiny fp32 bundle, exported once per session."""
    from trm_edge.export import export_bundle

    cache: dict[tuple[str, str], object] = {}
    root = tmp_path_factory.mktemp("quantize-bundles")

    def get(name: str = "mlp", target: str = "x86-avx512"):
        key = (name, target)
        if key not in cache:
            cfg = TINY_CONFIGS[name]
            tokens = np.random.default_rng(5).integers(1, cfg.vocab_size, (1, cfg.seq_len), dtype=np.int32)
            cache[key] = export_bundle(make_model(name), root / f"{name}-{target}", target=target, task=TASKS[name],
                                       validation_steps=1, validation_inputs=tokens)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def sudoku_data(tmp_path_factory):
    """A generated Sudoku dataset in the official layout: 48 train, 16 test puzzles."""
    from trm_edge.puzzles.build import build_dataset

    path = tmp_path_factory.mktemp("calib") / "sudoku"
    build_dataset("sudoku", path, train=48, test=16, seed=3)
    return path


@pytest.fixture(scope="session")
def calibrated(bundle):
    """``calibrated(target)``: the prepared graph, the target's INT8 format (``spec``), float32 trajectories and
    per-step ranges of 16 calibration puzzles, and 8 held-out puzzles (all cached per target)."""
    import onnx

    from trm_edge.bundle.store import load_bundle
    from trm_edge.quantize.calibration import load_calibration, quantized_inputs, record
    from trm_edge.quantize.formats import int8_format
    from trm_edge.quantize.graph import prepare
    from trm_edge.targets import get_target

    cache: dict[str, dict] = {}

    def get(target: str = "x86-avx512") -> dict:
        if target not in cache:
            b = load_bundle(bundle("mlp", target))
            spec = int8_format(get_target(target))
            prepared, _ = prepare(onnx.load(str(b.step_graph_path)))
            data = load_calibration(b, task="sudoku", n=16, eval_n=8, seed=1)
            tensors = quantized_inputs(prepared, spec.quantize_ops)
            trajectories, ranges = record(prepared, b, data.calibration, tensors=tensors)
            cache[target] = {"bundle": b, "spec": spec, "prepared": prepared, "data": data, "tensors": tensors,
                             "trajectories": trajectories, "ranges": ranges}
        return cache[target]

    return get
