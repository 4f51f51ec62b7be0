"""Training losses: stablemax cross-entropy on the answer tokens + the halting head's BCE (the paper's).

``IGNORE_LABEL_ID`` marks label cells that carry no loss (the official convention: a dataset's
``ignore_label_id`` is rewritten to -100 when a batch is built).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_LABEL_ID = -100
Q_HALT_LOSS_WEIGHT = 0.5  # the official ACTLossHead: lm_loss + 0.5 * q_halt_loss
# The halting threshold of training and of the trainer's evaluation (the contract's rule, ``halts``): a slot halts
# when its q_halt logit exceeds 0 (sigmoid 0.5), what the halting BCE trains the head to predict. The evaluation's
# q_halt accuracy (did halting agree with an exact answer?) and its halting stop use it alike. Deployment may
# calibrate another threshold per model (a bundle's ``loop.halt_threshold``).
TRAIN_HALT_THRESHOLD = 0.0


def stablemax_s(x: torch.Tensor) -> torch.Tensor:
    """s(x) = x + 1 for x >= 0, 1 / (1 - x) for x < 0: positive, monotone, linear growth (no exp overflow).

    The ``1 / (1 - x)`` branch sees ``min(x, 0)``: ``torch.where`` differentiates both branches, and at a
    logit of exactly 1 the unclamped branch's infinite derivative times the zero it is masked with is NaN
    (it stopped the default model's training run at step 2,496; the official code adds 1e-30 for this)."""
    return torch.where(x < 0, 1 / (1 - x.clamp(max=0)), x + 1)


def log_stablemax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    s = stablemax_s(x)
    return torch.log(s / s.sum(dim=dim, keepdim=True))


def stablemax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                            ignore_index: int = IGNORE_LABEL_ID) -> torch.Tensor:
    """Per-token stablemax cross-entropy in float64, 0 where ``labels == ignore_index``. Shape of ``labels``."""
    logprobs = log_stablemax(logits.to(torch.float64), dim=-1)  # [..., V]
    valid = labels != ignore_index
    index = torch.where(valid, labels, 0).long().unsqueeze(-1)
    picked = logprobs.gather(-1, index).squeeze(-1)
    return -torch.where(valid, picked, 0)


@dataclass
class ACTLoss:
    """One supervision step's loss over a batch, and the per-sample facts the trainer needs."""

    loss: torch.Tensor  # scalar, float64: mean over samples of (lm + 0.5 * q_halt); what is backpropagated
    lm_loss: torch.Tensor  # scalar: mean over samples of the per-token mean stablemax CE
    q_halt_loss: torch.Tensor  # scalar: mean over samples of the halting BCE
    seq_is_correct: torch.Tensor  # [B] bool: every valid cell predicted right
    cell_accuracy: torch.Tensor  # [B] fraction of valid cells right (0 for samples without valid cells)
    has_labels: torch.Tensor  # [B] bool: the sample has at least one valid cell


def act_loss(logits: torch.Tensor, q_halt_logits: torch.Tensor, labels: torch.Tensor,
             ignore_index: int = IGNORE_LABEL_ID) -> ACTLoss:
    """The paper's deep-supervision loss for one step (``no_ACT_continue``: no Q-continue term).

    Per sample: the mean stablemax CE over its valid cells, plus 0.5 x BCE(q_halt_logits, whole answer
    right). Averaged over the batch (the official code sums and divides by the global batch size).
    """
    with torch.no_grad():
        mask = labels != ignore_index  # [B, S]
        counts = mask.sum(-1)  # [B]
        correct = mask & (logits.argmax(-1) == labels)
        seq_is_correct = correct.sum(-1) == counts
        cell_accuracy = correct.sum(-1) / counts.clamp_min(1)
    per_token = stablemax_cross_entropy(logits, labels, ignore_index)  # [B, S] float64
    lm = per_token.sum(-1) / counts.clamp_min(1)  # [B]
    q = F.binary_cross_entropy_with_logits(q_halt_logits.to(torch.float64), seq_is_correct.to(torch.float64),
                                           reduction="none")  # [B]
    lm_loss, q_halt_loss = lm.mean(), q.mean()
    return ACTLoss(lm_loss + Q_HALT_LOSS_WEIGHT * q_halt_loss, lm_loss.detach(), q_halt_loss.detach(),
                   seq_is_correct, cell_accuracy, counts > 0)
