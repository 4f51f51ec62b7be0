"""trm-edge's training step against the official one restated independently, on the same weights and batches:
ACTLossHead (stablemax cross-entropy in float64 per example over its counted cells, plus 0.5 x the halting BCE
against "whole answer right", summed, then scaled by 1 / global batch), AdamATan2 as adam-atan2 0.0.3 computes it,
the sparse sign-SGD of the puzzle-embedding rows (repeated rows summed first), and the EMA of the dense weights.

The network's own arithmetic is tested against the float64 spec elsewhere (test_model.py): here the model's
forward is shared, and everything the trainer adds around it is stated again, step by step."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from tests.trm.test_train import TINY, toy_split
from trm_edge.config import TrainConfig
from trm_edge.trm.distributed import Dist
from trm_edge.trm.train import Trainer

IGNORE = -100


def official_loss(logits: torch.Tensor, q_halt: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ACTLossHead with no_ACT_continue, summed over the batch."""
    mask = labels != IGNORE
    counts = mask.sum(-1)
    correct = mask & (logits.argmax(-1) == labels)
    seq_is_correct = correct.sum(-1) == counts
    x = logits.to(torch.float64)
    s = torch.where(x < 0, 1 / (1 - x + 1e-30), x + 1)  # the official stablemax, its epsilon included
    logprobs = torch.log(s / s.sum(-1, keepdim=True))
    picked = torch.gather(logprobs, -1, torch.where(mask, labels, 0).unsqueeze(-1)).squeeze(-1)
    lm_loss = (-torch.where(mask, picked, 0) / counts.clamp_min(1).unsqueeze(-1)).sum()
    q_halt_loss = F.binary_cross_entropy_with_logits(q_halt, seq_is_correct.to(q_halt.dtype), reduction="sum")
    return lm_loss + 0.5 * q_halt_loss


def test_three_training_steps_equal_the_official_step_restated():
    config = TINY.replace(halt_max_steps=1)  # every slot takes a fresh puzzle each step: no carry to restate
    train_config = TrainConfig(global_batch_size=8, lr=1e-2, lr_warmup_steps=0, lr_min_ratio=1.0, weight_decay=0.1,
                               puzzle_emb_lr=3e-2, puzzle_emb_weight_decay=0.2, ema_rate=0.9, train_steps=10,
                               eval_interval=10, checkpoint_interval=10, log_interval=1, seed=1, augment=False)
    trainer = Trainer(config, train_config, toy_split(64, 0), None, task="toy", d=Dist(),
                      device=torch.device("cpu"))
    ref = copy.deepcopy(trainer.model)
    table = ref.puzzle_emb.weights
    dense = {n: p for n, p in ref.named_parameters() if not n.startswith("puzzle_emb.")}
    m = {n: torch.zeros_like(p) for n, p in dense.items()}
    v = {n: torch.zeros_like(p) for n, p in dense.items()}
    ema = {n: p.detach().clone() for n, p in dense.items()}
    lr, wd, (b1, b2) = train_config.lr, train_config.weight_decay, (train_config.beta1, train_config.beta2)
    emb_lr, emb_wd, mu = train_config.puzzle_emb_lr, train_config.puzzle_emb_weight_decay, train_config.ema_rate
    for t in (1, 2, 3):
        trainer.train_step()
        inputs, labels, ids = (trainer.carry[k] for k in ("inputs", "labels", "ids"))
        assert len(set(ids.tolist())) < len(ids)  # repeated rows: their gradients are summed

        rows = table.detach()[ids].clone().requires_grad_(True)
        z_H, z_L = ref.initial_state(len(ids))
        _, _, logits, q_halt = ref.step_embedded(inputs, z_H, z_L, rows)
        ((1 / train_config.global_batch_size) * official_loss(logits, q_halt, labels)).backward()
        with torch.no_grad():
            for n, p in dense.items():  # AdamATan2, adam-atan2 0.0.3
                g = p.grad
                p.mul_(1 - lr * wd)
                m[n] = b1 * m[n] + (1 - b1) * g
                v[n] = b2 * v[n] + (1 - b2) * g * g
                p.sub_(lr / (1 - b1**t) * torch.atan2(m[n], v[n].sqrt() / (1 - b2**t) ** 0.5))
                p.grad = None
                ema[n] = (1 - mu) * p + mu * ema[n]
            unique, inverse = ids.unique(return_inverse=True)
            summed = torch.zeros(len(unique), rows.shape[1]).scatter_add_(
                0, inverse.unsqueeze(-1).expand(-1, rows.shape[1]), rows.grad)
            table[unique] = table[unique] * (1 - emb_lr * emb_wd) - emb_lr * torch.sign(summed)

        # Float rounding: a step moves a weight by up to lr / (1 - b1^t) * pi / 2 (0.08 here); atan2 of two moments
        # near balance turns last-bit differences of the gradients into about 1e-6 of that.
        close = {"rtol": 1e-4, "atol": 1e-5}
        got = dict(trainer.model.named_parameters())
        for n, p in dense.items():
            torch.testing.assert_close(got[n], p, **close, msg=lambda text, n=n, t=t: f"step {t}, {n}: {text}")
        torch.testing.assert_close(trainer.model.puzzle_emb.weights, table, **close)
        for shadow, n in zip(trainer.ema.shadow, dense, strict=True):
            torch.testing.assert_close(shadow, ema[n], **close, msg=lambda text, n=n, t=t: f"step {t}, EMA {n}: {text}")
