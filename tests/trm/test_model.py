"""The model's math against an independent float64 statement of the spec, step by step."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import TINY_CONFIGS
from tests.trm.spec_reference import reference_step
from trm_edge.config import PRESETS, TRMConfig, parameter_count
from trm_edge.trm.model import TRM, build_model

OFFICIAL_PARAMS = {
    "sudoku-extreme-mlp": 5_028_866,
    "sudoku-extreme-att": 6_828_034,
    "maze-hard": 6_822_914,
    "arc-agi-1": 6_829_058,
    "arc-agi-2": 6_829_058,
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_preset_parameter_counts_match_the_official_code(name):
    config = PRESETS[name].model
    assert parameter_count(config) == OFFICIAL_PARAMS[name]
    model = TRM(config)
    counted = sum(p.numel() for key, p in model.named_parameters() if not key.startswith("puzzle_emb."))
    assert counted == OFFICIAL_PARAMS[name]


def _random_state(model, batch, generator):
    shape = (batch, model.config.total_len, model.config.hidden_size)
    return torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)


def test_step_matches_the_float64_spec_teacher_forced(tiny_config, tiny_model_factory):
    name = next(k for k, v in TINY_CONFIGS.items() if v == tiny_config)
    model = tiny_model_factory(name)
    weights = model.state_dict()
    g = torch.Generator().manual_seed(1)
    inputs = torch.randint(0, tiny_config.vocab_size, (3, tiny_config.seq_len), generator=g)
    ids = torch.randint(0, tiny_config.num_puzzle_identifiers, (3,), generator=g)
    states = [model.initial_state(3)] + [_random_state(model, 3, g) for _ in range(2)]
    with torch.no_grad():
        for step, (z_H, z_L) in enumerate(states):  # the same state goes to both sides
            ours = model.step(inputs, z_H, z_L, ids)
            ref = reference_step(weights, tiny_config, inputs, z_H, z_L, ids)
            for output, a, b in zip(("z_H", "z_L", "logits", "q_halt_logits"), ours, ref, strict=True):
                err = ((a.double() - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()
                assert err < 1e-5, f"state {step}: {output} relative error {err:.2e}"


def test_float32_step_tracks_float64_run_of_itself():
    model = build_model(TINY_CONFIGS["rope"], seed=3)
    model64 = build_model(TINY_CONFIGS["rope"], seed=3).double()
    inputs = torch.randint(0, 11, (2, 81), generator=torch.Generator().manual_seed(0))
    z_H, z_L = model.initial_state(2)
    with torch.no_grad():
        for _ in range(4):
            out32 = model.step(inputs, z_H, z_L)
            out64 = model64.step(inputs, z_H.double(), z_L.double())
            torch.testing.assert_close(out32[2].double(), out64[2], rtol=1e-4, atol=1e-4)
            z_H, z_L = out32[0], out32[1]  # feed the float32 state to both on the next step


def test_gradients_flow_through_the_last_cycle_only():
    model = build_model(TINY_CONFIGS["mlp"], seed=0).train()
    inputs = torch.randint(0, 11, (2, 81))
    z_H, z_L = model.initial_state(2)
    z_H.requires_grad_(True)
    _, _, logits, q = model.step(inputs, z_H, z_L)
    (logits.sum() + q.sum()).backward()
    assert z_H.grad is None  # the first H_cycles-1 cycles ran without a graph
    assert all(p.grad is not None for k, p in model.named_parameters() if k.startswith("L_level"))


def test_predict_halting_freezes_samples_at_their_first_positive_q():
    model = build_model(TINY_CONFIGS["mlp"], seed=0)
    with torch.no_grad():
        model.q_head.bias.fill_(5.0)  # every sample wants to halt after step 1
    out = model.predict(torch.randint(0, 11, (4, 81)), halt=True)
    assert out["steps"].tolist() == [1, 1, 1, 1]
    full = model.predict(torch.randint(0, 11, (4, 81)), halt=False)
    assert full["steps"].tolist() == [4, 4, 4, 4]


def test_predict_halts_by_the_contract_rule_at_its_threshold():
    """``predict(halt=True, threshold=t)`` stops each sample at the first step whose q_halt_logits exceed ``t``
    (``halts``, the runtimes' rule): a higher threshold stops later, and a q equal to the threshold runs on."""
    from trm_edge.bundle.contract import halts

    model = build_model(TINY_CONFIGS["mlp"], seed=0)
    inputs = torch.randint(0, 11, (8, 81), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.q_head.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(1))  # q varies by step
        model.q_head.bias.zero_()
        per_step = torch.stack([model.predict(inputs, max_steps=s)["q_halt_logits"] for s in range(1, 5)], 1)
        stops = {}
        for threshold in (-1.0, 0.0, 2.0, 50.0):
            out = model.predict(inputs, halt=True, threshold=threshold)
            first = [next((s + 1 for s in range(4) if halts(q[s], threshold)), 4) for q in per_step]
            assert out["steps"].tolist() == first
            assert torch.equal(out["q_halt_logits"], per_step[torch.arange(8), out["steps"] - 1])
            stops[threshold] = out["steps"]
        assert (stops[-1.0] <= stops[0.0]).all() and (stops[0.0] <= stops[2.0]).all()
        assert stops[-1.0].tolist() != stops[2.0].tolist() and stops[50.0].tolist() == [4] * 8
        model.q_head.weight.zero_()
        model.q_head.bias.fill_(1.0)  # q is exactly 1.0 at every step
        assert model.predict(inputs, halt=True, threshold=1.0)["steps"].tolist() == [4] * 8
        assert model.predict(inputs, halt=True, threshold=0.999)["steps"].tolist() == [1] * 8


def test_initial_state_is_the_init_buffers_broadcast():
    model = build_model(TINY_CONFIGS["mlp"], seed=0)
    z_H, z_L = model.initial_state(2)
    assert torch.equal(z_H[1, 5], model.H_init) and torch.equal(z_L[0, 0], model.L_init)


def test_config_rejects_bad_values():
    from trm_edge.errors import ConfigError

    with pytest.raises(ConfigError, match="pos_encodings"):
        TRMConfig(pos_encodings="alibi")
    with pytest.raises(ConfigError, match="unknown config field"):
        TRMConfig.from_dict({"hidden": 3})
