"""AdamATan2 against its formula, sparse sign-SGD, EMA and the learning-rate schedule."""

from __future__ import annotations

import math

import pytest
import torch

from trm_edge.trm.optim import EMA, AdamATan2, lr_at, sign_sgd_rows_


def test_adam_atan2_matches_its_formula_over_several_steps():
    torch.manual_seed(0)
    lr, wd, b1, b2 = 1e-2, 0.5, 0.9, 0.95
    p = torch.nn.Parameter(torch.randn(5, 3, dtype=torch.float64))
    ref = p.detach().clone()
    m = torch.zeros_like(ref)
    v = torch.zeros_like(ref)
    opt = AdamATan2([p], lr=lr, betas=(b1, b2), weight_decay=wd)
    for t in range(1, 8):
        g = torch.randn_like(ref) * (10.0 if t == 3 else 1e-3)
        p.grad = g.clone()
        opt.step()
        ref = ref * (1 - lr * wd)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        ref = ref - lr * torch.atan2(m / (1 - b1**t), v.sqrt() / math.sqrt(1 - b2**t))
        torch.testing.assert_close(p.detach(), ref, rtol=1e-12, atol=1e-12)


def test_adam_atan2_first_step_is_bounded_by_lr_pi_over_2_and_scale_invariant():
    p1 = torch.nn.Parameter(torch.zeros(4))
    p2 = torch.nn.Parameter(torch.zeros(4))
    g = torch.tensor([1e-8, -1.0, 3.0, 0.0])
    for p, scale in ((p1, 1.0), (p2, 1e6)):
        p.grad = g * scale
        AdamATan2([p], lr=0.1, weight_decay=0.0).step()
    assert p1.abs().max() <= 0.1 * math.pi / 2
    torch.testing.assert_close(p1, p2)
    # first step: atan2(g, |g|) = pi/4 * sign(g)
    assert p1.tolist() == pytest.approx([-0.1 * math.pi / 4, 0.1 * math.pi / 4, -0.1 * math.pi / 4, 0.0])


def test_adam_atan2_state_round_trips_through_tensors():
    torch.manual_seed(1)
    a = [torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(2, 2))]
    b = [torch.nn.Parameter(x.detach().clone()) for x in a]
    opt_a, opt_b = AdamATan2(a, lr=1e-2), AdamATan2(b, lr=1e-2)
    for p in a:
        p.grad = torch.randn_like(p)
    opt_a.step()
    opt_b.load_state_tensors({k: v.clone() for k, v in opt_a.state_tensors().items()}, opt_a.step_count)
    with torch.no_grad():
        for pa, pb in zip(a, b, strict=True):
            pb.copy_(pa)
    grads = [torch.randn_like(p) for p in a]
    for params, opt in ((a, opt_a), (b, opt_b)):
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        opt.step()
    for pa, pb in zip(a, b, strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


def test_sign_sgd_updates_touched_rows_only_summing_repeated_ids():
    table = torch.ones(4, 2)
    ids = torch.tensor([2, 0, 2])
    grads = torch.tensor([[1.0, -1.0], [-2.0, 0.0], [1.0, 3.0]])  # row 2 sums to [2, 2]
    sign_sgd_rows_(table, ids, grads, lr=0.1, weight_decay=0.5)
    decayed = 1 - 0.1 * 0.5
    assert table[0].tolist() == pytest.approx([decayed + 0.1, decayed])
    assert table[2].tolist() == pytest.approx([decayed - 0.1, decayed - 0.1])
    assert table[1].tolist() == [1.0, 1.0] and table[3].tolist() == [1.0, 1.0]


def test_ema_follows_its_recurrence():
    x = torch.tensor([0.0, 10.0])
    ema = EMA([x], rate=0.9)
    x += 1.0
    ema.update([x])
    assert ema.shadow[0].tolist() == pytest.approx([0.1, 10.1])
    out = torch.zeros(2)
    ema.copy_to([out])
    assert out.tolist() == pytest.approx([0.1, 10.1])


def test_lr_schedule_warmup_then_cosine_to_the_floor():
    kw = {"warmup_steps": 10, "total_steps": 110, "min_ratio": 0.1}
    assert lr_at(0, 1.0, **kw) == 0.0
    assert lr_at(5, 1.0, **kw) == pytest.approx(0.5)
    assert lr_at(10, 1.0, **kw) == pytest.approx(1.0)
    assert lr_at(60, 1.0, **kw) == pytest.approx(0.1 + 0.9 * 0.5)  # half way down the cosine
    assert lr_at(110, 1.0, **kw) == pytest.approx(0.1)
    assert lr_at(500, 1.0, **kw) == pytest.approx(0.1)  # floor after the end
    constant = {"warmup_steps": 10, "total_steps": 110, "min_ratio": 1.0}
    assert lr_at(60, 2e-4, **constant) == pytest.approx(2e-4)
