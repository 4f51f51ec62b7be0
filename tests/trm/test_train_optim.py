"""AdamATan2 against its formula, sparse sign-SGD, EMA and the learning-rate schedule."""

from __future__ import annotations

import math

import pytest
import torch

from trm_edge.trm.optim import EMA, AdamATan2, lr_at, sign_sgd_rows_


@pytest.mark.parametrize("constant_sign", [False, True])
def test_adam_atan2_is_adam_atan2_0_0_3_over_several_steps(constant_sign):
    """The update of adam-atan2 0.0.3 (its CUDA kernel: step size lr / bias_correction1 outside the atan2), stated
    elementwise in Python floats. A gradient of constant sign is where it differs most from 0.0.2's formula."""
    torch.manual_seed(0)
    lr, wd, b1, b2 = 1e-2, 0.5, 0.9, 0.95
    p = torch.nn.Parameter(torch.randn(5, 3, dtype=torch.float64))
    ref = p.detach().flatten().tolist()
    m, v = [0.0] * len(ref), [0.0] * len(ref)
    opt = AdamATan2([p], lr=lr, betas=(b1, b2), weight_decay=wd)
    for t in range(1, 9):
        g = torch.randn_like(p) * (10.0 if t == 3 else 1e-3)
        if constant_sign:
            g = g.abs()
        p.grad = g.clone()
        opt.step()
        step_size, bias2_sqrt = lr / (1 - b1**t), math.sqrt(1 - b2**t)
        for i, gi in enumerate(g.flatten().tolist()):
            ref[i] *= 1 - lr * wd
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
            ref[i] -= step_size * math.atan2(m[i], math.sqrt(v[i]) / bias2_sqrt)
        torch.testing.assert_close(p.detach().flatten(), torch.tensor(ref, dtype=torch.float64), rtol=1e-12,
                                   atol=1e-12)
    if constant_sign:  # the 0.0.2 formula would sit measurably apart by now
        old = lr * math.atan2(m[0] / (1 - b1**8), math.sqrt(v[0]) / math.sqrt(1 - b2**8))
        new = lr / (1 - b1**8) * math.atan2(m[0], math.sqrt(v[0]) / math.sqrt(1 - b2**8))
        assert abs(new - old) > 1e-3 * abs(new)


def test_adam_atan2_first_step_is_scale_invariant():
    p1 = torch.nn.Parameter(torch.zeros(4))
    p2 = torch.nn.Parameter(torch.zeros(4))
    g = torch.tensor([1e-8, -1.0, 3.0, 0.0])
    for p, scale in ((p1, 1.0), (p2, 1e6)):
        p.grad = g * scale
        AdamATan2([p], lr=0.1, weight_decay=0.0).step()
    torch.testing.assert_close(p1, p2)
    # first step: (lr / (1 - b1)) * atan2((1 - b1) g, |g|) = (lr / (1 - b1)) * atan(1 - b1) * sign(g)
    first = 0.1 / 0.1 * math.atan(0.1)
    assert p1.tolist() == pytest.approx([-first, first, -first, 0.0])


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
