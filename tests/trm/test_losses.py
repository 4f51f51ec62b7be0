"""Stablemax cross-entropy and the ACT loss against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from trm_edge.trm.losses import IGNORE_LABEL_ID, act_loss, log_stablemax, stablemax_cross_entropy, stablemax_s


def test_stablemax_s_is_x_plus_1_above_zero_and_reciprocal_below():
    x = torch.tensor([-3.0, -1.0, 0.0, 0.5, 2.0], dtype=torch.float64)
    assert stablemax_s(x).tolist() == pytest.approx([0.25, 0.5, 1.0, 1.5, 3.0])


def test_log_stablemax_by_hand():
    # s([0, 1, -1]) = [1, 2, 0.5]; sum 3.5
    got = log_stablemax(torch.tensor([0.0, 1.0, -1.0], dtype=torch.float64))
    assert got.tolist() == pytest.approx([math.log(1 / 3.5), math.log(2 / 3.5), math.log(0.5 / 3.5)])


def test_stablemax_cross_entropy_by_hand_in_float64_with_ignored_cells():
    logits = torch.tensor([[[0.0, 1.0, -1.0], [3.0, 0.0, 0.0]]], dtype=torch.float32)  # [1, 2, 3]
    labels = torch.tensor([[2, IGNORE_LABEL_ID]])
    loss = stablemax_cross_entropy(logits, labels)
    assert loss.dtype == torch.float64
    assert loss[0].tolist() == pytest.approx([-math.log(0.5 / 3.5), 0.0])


def test_stablemax_is_finite_for_huge_logits():
    logits = torch.tensor([[[1e30, -1e30, 0.0]]])
    assert torch.isfinite(stablemax_cross_entropy(logits, torch.tensor([[0]]))).all()


@pytest.mark.parametrize("value", [1.0, 0.0, -1.0])
def test_stablemax_gradient_is_finite_at_every_logit(value):
    # a logit of exactly 1 made the masked 1/(1-x) branch's gradient 0 * inf = NaN (a training run died of it)
    logits = torch.tensor([[[value, 0.5, -2.0]]], requires_grad=True)
    stablemax_cross_entropy(logits, torch.tensor([[0]])).sum().backward()
    s = 1 + max(value, 0) if value >= 0 else 1 / (1 - value)
    ds = 1.0 if value >= 0 else 1 / (1 - value) ** 2
    total = s + 1.5 + 1 / 3  # s(0.5) = 1.5, s(-2) = 1/3
    # d/dx0 of -log(s0 / sum s) = -(ds/s - ds/total)
    assert logits.grad[0, 0, 0].item() == pytest.approx(-(ds / s - ds / total))
    assert torch.isfinite(logits.grad).all()


def test_act_loss_by_hand():
    # sample 0: both cells right (argmax 1 and 0); sample 1: one of its two valid cells wrong, one ignored
    logits = torch.tensor([
        [[0.0, 2.0], [1.0, 0.0], [0.0, 0.0]],
        [[0.0, 2.0], [0.0, 1.0], [5.0, 0.0]],
    ])
    labels = torch.tensor([[1, 0, IGNORE_LABEL_ID], [1, 0, IGNORE_LABEL_ID]])
    q = torch.tensor([0.5, -1.0])
    out = act_loss(logits, q, labels)
    # per cell: logits [0, 2] -> s [1, 3]: -log(3/4); [1, 0] label 0 -> s [2, 1]: -log(2/3); [0, 1] label 0: -log(1/3)
    lm0 = (-math.log(3 / 4) - math.log(2 / 3)) / 2
    lm1 = (-math.log(3 / 4) - math.log(1 / 3)) / 2
    bce0 = -math.log(1 / (1 + math.exp(-0.5)))  # target 1
    bce1 = -math.log(1 - 1 / (1 + math.exp(1.0)))  # target 0
    assert out.seq_is_correct.tolist() == [True, False]
    assert out.cell_accuracy.tolist() == pytest.approx([1.0, 0.5])
    assert float(out.lm_loss) == pytest.approx((lm0 + lm1) / 2)
    assert float(out.q_halt_loss) == pytest.approx((bce0 + bce1) / 2)
    assert float(out.loss) == pytest.approx((lm0 + lm1) / 2 + 0.5 * (bce0 + bce1) / 2)


def test_act_loss_backpropagates_into_logits_and_halting_head():
    logits = torch.randn(3, 4, 5, requires_grad=True)
    q = torch.randn(3, requires_grad=True)
    act_loss(logits, q, torch.randint(0, 5, (3, 4))).loss.backward()
    assert logits.grad.abs().sum() > 0 and q.grad.abs().sum() > 0


def test_sample_without_valid_cells_contributes_no_lm_loss():
    logits = torch.randn(1, 3, 4)
    out = act_loss(logits, torch.zeros(1), torch.full((1, 3), IGNORE_LABEL_ID))
    assert float(out.lm_loss) == 0.0 and not out.has_labels.any()
