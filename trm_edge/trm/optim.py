"""Optimisers and schedules of the paper's recipe, in pure PyTorch.

- ``AdamATan2``: Adam with ``atan2`` in place of ``m / (sqrt(v) + eps)`` (scale-invariant, no epsilon),
  decoupled weight decay; the update of the ``adam-atan2`` package at 0.0.3, which the official requirements'
  unpinned ``adam-atan2`` installs, written with plain tensor ops so it runs anywhere.
- ``sign_sgd_rows_``: the sparse sign-SGD update of the puzzle-embedding table (touched rows only).
- ``EMA``: exponential moving average of weights.
- ``lr_at``: linear warm-up then cosine decay to ``lr_min_ratio``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


class AdamATan2(torch.optim.Optimizer):
    """Per step, for each parameter ``p`` with gradient ``g`` (step count ``t`` from 1)::

        p <- p * (1 - lr * weight_decay)
        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g^2
        p <- p - (lr / (1 - beta1^t)) * atan2(m, sqrt(v) / sqrt(1 - beta2^t))

    as adam-atan2 0.0.3 computes it: the first moment's bias correction scales the step. (0.0.2, replaced a day
    after its release, divided ``m`` inside the atan2 instead: steps up to 21% smaller in the first ~50 steps where
    a gradient keeps its sign.)
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.95),
                 weight_decay: float = 0.0) -> None:
        if lr < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"invalid AdamATan2 settings lr={lr}, betas={betas}, weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay})
        self.step_count = 0  # shared by every parameter: all are updated every step

    @torch.no_grad()
    def step(self, closure=None):
        assert closure is None, "AdamATan2 does not take a closure"
        self.step_count += 1
        t = self.step_count
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            params, grads, exp_avgs, exp_avg_sqs = [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                params.append(p)
                grads.append(p.grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
            if not params:
                continue
            bias1 = 1 - beta1**t
            bias2_sqrt = math.sqrt(1 - beta2**t)
            if wd:
                torch._foreach_mul_(params, 1 - lr * wd)
            torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
            for p, m, v in zip(params, exp_avgs, exp_avg_sqs, strict=True):
                p.add_(torch.atan2(m, v.sqrt() / bias2_sqrt), alpha=-lr / bias1)

    # -- pickle-free state: tensors for safetensors, scalars for JSON ---------------------------------

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """``{"<i>.exp_avg": ..., "<i>.exp_avg_sq": ...}`` by parameter position."""
        out = {}
        for i, p in enumerate(p for g in self.param_groups for p in g["params"]):
            for key, value in self.state.get(p, {}).items():
                out[f"{i}.{key}"] = value
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], step_count: int) -> None:
        params = [p for g in self.param_groups for p in g["params"]]
        for i, p in enumerate(params):
            entries = {key: tensors[f"{i}.{key}"] for key in ("exp_avg", "exp_avg_sq") if f"{i}.{key}" in tensors}
            if entries:
                self.state[p] = {k: v.to(device=p.device, dtype=p.dtype).clone() for k, v in entries.items()}
        self.step_count = step_count


@torch.no_grad()
def sign_sgd_rows_(table: torch.Tensor, ids: torch.Tensor, grads: torch.Tensor, lr: float,
                   weight_decay: float) -> None:
    """Sparse sign-SGD on the rows of ``table`` named by ``ids`` (the official puzzle-embedding optimiser).

    ``grads[i]`` is the gradient for row ``ids[i]``; repeated ids are summed first. Only touched rows
    decay and move: ``w <- w * (1 - lr * weight_decay) - lr * sign(sum of grads)``.
    """
    unique, inverse = ids.long().unique(return_inverse=True)
    summed = torch.zeros(unique.numel(), grads.shape[-1], dtype=grads.dtype, device=grads.device)
    summed.index_add_(0, inverse, grads)
    rows = table[unique]
    rows.mul_(1 - lr * weight_decay).add_(summed.sign().to(rows.dtype), alpha=-lr)
    table[unique] = rows


class EMA:
    """Exponential moving average of a list of tensors: ``ema <- rate * ema + (1 - rate) * value``."""

    def __init__(self, tensors: list[torch.Tensor], rate: float) -> None:
        if not 0 <= rate < 1:
            raise ValueError(f"ema_rate={rate} must be in [0, 1)")
        self.rate = rate
        self.shadow = [t.detach().clone().float() for t in tensors]

    @torch.no_grad()
    def update(self, tensors: list[torch.Tensor]) -> None:
        torch._foreach_lerp_(self.shadow, [t.detach().float() for t in tensors], 1 - self.rate)

    @torch.no_grad()
    def copy_to(self, tensors: list[torch.Tensor]) -> None:
        for dst, src in zip(tensors, self.shadow, strict=True):
            dst.copy_(src)


def lr_at(step: int, base_lr: float, *, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Learning rate for optimiser step ``step`` (counted from 1), as the official ``cosine_schedule_with_warmup``:
    linear from 0 over ``warmup_steps``, then half a cosine from ``base_lr`` down to ``min_ratio * base_lr``
    at ``total_steps``."""
    if step < warmup_steps:
        return base_lr * step / max(1, warmup_steps)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))  # stays at the floor after
    return base_lr * (min_ratio + max(0.0, (1 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))))
