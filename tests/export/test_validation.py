"""Export validation tells fp32 rounding from real defects: every correct export passes across seeds, every
defect of tests/export/defects.py fails with the typed error (docs/validation.md has the measured margins)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.conftest import PRESET_FAMILIES, TINY_CONFIGS, random_trm
from tests.export.conftest import TASKS, make_model
from tests.export.defects import DEFECTS
from trm_edge.bundle.tolerances import OutputCheck, error_ratio, tolerance_for
from trm_edge.config import PRESETS
from trm_edge.errors import ValidationError
from trm_edge.export.graphs import export_step_onnx
from trm_edge.export.samples import puzzle_tokens
from trm_edge.export.validate import validate_step_graph

FP32 = tolerance_for("fp32")
CAUGHT = ("perturb_tensor", "swap_layers", "drop_norm")  # perturb_element sits near rounding: docs/validation.md


def _tokens(name: str, seed: int = 1) -> np.ndarray:
    cfg = TINY_CONFIGS[name]
    return puzzle_tokens(TASKS[name], cfg.seq_len, cfg.vocab_size, 2, seed=seed)


def _validate(reference, graph_model, tmp_path, tokens, *, steps=None, seed=0):
    path = export_step_onnx(graph_model, tmp_path / "step.onnx")
    ids = np.arange(len(tokens)) % reference.config.num_puzzle_identifiers
    return validate_step_graph(reference, path, tokens=tokens, puzzle_ids=ids, steps=steps,
                               random_states=len(tokens), seed=seed)


def test_a_head_output_near_zero_is_held_to_its_feed_scale():
    """The CI failure: q_halt_logits of a few puzzles near zero, so 1e-4 of their own largest value was below
    fp32 rounding of the dot product that made them. The feed scale |w| @ |z| + |b| bounds that rounding."""
    head = FP32.for_output("q_halt_logits")
    ref = np.array([2e-3, -1e-3])
    scale = np.array([1.5, 1.5])
    rounding, defect = ref + 2e-6, ref + 2e-3
    assert error_ratio(rounding, ref, scale, head) < 0.05
    assert np.abs(rounding - ref).max() / np.abs(ref).max() > 1e-4  # what the old criterion refused
    assert error_ratio(defect, ref, scale, head) > 5
    check = OutputCheck("q_halt_logits", FP32)
    check.update(rounding, ref, "step 1", scale)
    assert check.passed
    check.update(np.array([np.nan, 0.0]), ref, "step 2", scale)
    assert not check.passed and check.worst_case == "step 2"


def test_heads_are_held_tighter_than_states():
    assert FP32.for_output("logits").atol == FP32.for_output("export.step.q_halt_logits").atol == FP32.head_atol
    assert FP32.for_output("z_L_next") == FP32 and OutputCheck("step.logits", FP32).tolerance.atol == FP32.head_atol


def test_without_a_feed_scale_the_reference_magnitude_is_used():
    """Golden I/O written before feed scales were recorded: the output's own largest magnitude."""
    ref = np.array([[4.0, -4.0]])
    assert error_ratio(ref + 4e-3, ref, None, FP32) == pytest.approx(4e-3 / (FP32.atol * 4 + FP32.rtol * 4))


@pytest.mark.parametrize("defect", CAUGHT)
@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_defects_fail_validation(name, defect, tmp_path):
    model = make_model(name)
    report = _validate(model, DEFECTS[defect](model), tmp_path, _tokens(name), steps=2)
    assert not report.passed, report.lines()
    with pytest.raises(ValidationError, match="step graph") as raised:
        report.raise_for_failures()
    assert "z_H_next" in str(raised.value) and "x the tolerance" in str(raised.value)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_correct_exports_pass_across_seeds(name, tmp_path):
    """Rounding never fails a correct export: 8 seeds of weights, inputs and random states, every step."""
    worst = 0.0
    for seed in range(8):
        model = make_model(name, seed)
        report = _validate(model, model, tmp_path, _tokens(name, seed), seed=seed)
        assert report.passed, (seed, report.lines())
        worst = max(worst, *(c.ratio for c in report.checks))
    assert worst > 0  # the comparison saw real rounding (a zero would mean it compared nothing)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["sudoku-extreme-mlp", "sudoku-extreme-att"])
def test_full_size_sudoku_presets_pass(preset, tmp_path):
    """The paper's 5-7M Sudoku models at full size, two teacher-forced steps (the 900-token presets are measured
    by benchmarks/validation_margins.py: minutes each)."""
    model = random_trm(PRESETS[preset].model)
    tokens = puzzle_tokens("sudoku", 81, 11, 2, seed=0)
    report = _validate(model, model, tmp_path, tokens, steps=2)
    assert report.passed, report.lines()


def test_every_preset_family_is_validated():
    """Registry guard: every preset maps to a tiny config of its architecture, and that config is swept above."""
    assert set(PRESET_FAMILIES) == set(PRESETS)
    for preset, tiny in PRESET_FAMILIES.items():
        big, small = PRESETS[preset].model, TINY_CONFIGS[tiny]
        if preset.startswith("arc"):
            big = dataclasses.replace(big, num_puzzle_identifiers=8)  # an ARC table's size comes from its data
        for trait in ("mlp_t", "pos_encodings", "has_puzzle_table"):
            assert getattr(big, trait) == getattr(small, trait), (preset, tiny, trait)
