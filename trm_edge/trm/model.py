"""The Tiny Recursive Model: one tiny network applied recursively. The ONE place its math lives.

Module and parameter names mirror the official code's ``inner`` model, so an official state dict
maps onto this one by stripping its prefix (see checkpoint.py).
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from trm_edge.bundle.contract import halts
from trm_edge.config import TRMConfig, swiglu_inner_size


def trunc_normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """JAX-style truncated normal in [-2, 2] std units, rescaled so the result has exactly ``std``."""
    if std == 0:
        return tensor.zero_()
    lower, upper = -2.0, 2.0
    sqrt2 = math.sqrt(2)
    a, b = math.erf(lower / sqrt2), math.erf(upper / sqrt2)
    z = (b - a) / 2
    c = (2 * math.pi) ** -0.5
    pdf_u, pdf_l = c * math.exp(-0.5 * upper**2), c * math.exp(-0.5 * lower**2)
    comp_std = std / math.sqrt(1 - (upper * pdf_u - lower * pdf_l) / z - ((pdf_u - pdf_l) / z) ** 2)
    with torch.no_grad():
        tensor.uniform_(a, b).erfinv_().mul_(sqrt2 * comp_std).clip_(lower * comp_std, upper * comp_std)
    return tensor


def rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Weightless RMSNorm over the last axis, computed in at least float32 (float64 stays float64)."""
    dtype = x.dtype
    x = x.to(torch.promote_types(dtype, torch.float32))
    return (x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps)).to(dtype)


class Linear(nn.Module):
    """Linear layer with truncated LeCun-normal init (bias, when present, starts at zero)."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(trunc_normal_(torch.empty(out_features, in_features), std=in_features**-0.5))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class Embedding(nn.Module):
    def __init__(self, num: int, dim: int, *, init_std: float) -> None:
        super().__init__()
        self.embedding_weight = nn.Parameter(trunc_normal_(torch.empty(num, dim), std=init_std))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.embedding_weight)


class PuzzleEmbedding(nn.Module):
    """The per-puzzle embedding table, zero-initialised; trained sparsely with sign-SGD (see train.py)."""

    def __init__(self, num: int, dim: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num, dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weights)


class SwiGLU(nn.Module):
    def __init__(self, width: int, expansion: float) -> None:
        super().__init__()
        inner = swiglu_inner_size(width, expansion)
        self.gate_up_proj = Linear(width, 2 * inner, bias=False)  # gate first, then up
        self.down_proj = Linear(inner, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class RotaryEmbedding(nn.Module):
    """RoPE tables for every position; recomputed from the config, never read from a checkpoint."""

    def __init__(self, head_dim: int, positions: int, theta: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(positions, dtype=torch.float32), inv_freq)
        angles = torch.cat((freqs, freqs), dim=-1)  # [S, head_dim]
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    """Non-causal multi-head self-attention with a fused qkv projection (q, k, v heads in that order)."""

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.qkv_proj = Linear(hidden_size, 3 * hidden_size, bias=False)
        self.o_proj = Linear(hidden_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor, rope: RotaryEmbedding | None) -> torch.Tensor:
        b, s, _ = x.shape
        qkv = self.qkv_proj(x).view(b, s, 3 * self.num_heads, self.head_dim)  # [B, S, 3H, hd]
        q, k, v = qkv.split(self.num_heads, dim=2)  # each [B, S, H, hd]
        if rope is not None:
            cos, sin = rope.cos.unsqueeze(-2), rope.sin.unsqueeze(-2)  # [S, 1, hd]
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, S, hd]
        out = F.scaled_dot_product_attention(q, k, v, is_causal=False)
        return self.o_proj(out.transpose(1, 2).reshape(b, s, -1))


class Block(nn.Module):
    """Post-norm block: token mixing (attention or mlp_t), then a channel SwiGLU."""

    def __init__(self, config: TRMConfig) -> None:
        super().__init__()
        self.eps = config.rms_norm_eps
        if config.mlp_t:
            self.mlp_t = SwiGLU(config.total_len, config.expansion)  # mixes along the sequence axis
        else:
            self.self_attn = Attention(config.hidden_size, config.num_heads)
        self.mlp = SwiGLU(config.hidden_size, config.expansion)

    def forward(self, h: torch.Tensor, rope: RotaryEmbedding | None) -> torch.Tensor:
        if hasattr(self, "mlp_t"):
            t = h.transpose(1, 2)  # [B, D, S]
            h = rms_norm(t + self.mlp_t(t), self.eps).transpose(1, 2)
        else:
            h = rms_norm(h + self.self_attn(h, rope), self.eps)
        return rms_norm(h + self.mlp(h), self.eps)


class ReasoningNet(nn.Module):
    """The one tiny network: ``net(h, injection)`` adds the injection, then runs the blocks."""

    def __init__(self, config: TRMConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Block(config) for _ in range(config.L_layers))

    def forward(self, h: torch.Tensor, injection: torch.Tensor, rope: RotaryEmbedding | None) -> torch.Tensor:
        h = h + injection
        for layer in self.layers:
            h = layer(h, rope)
        return h


class TRM(nn.Module):
    """Tiny Recursive Model. ``step`` is one supervision step; ``predict`` runs the whole loop."""

    def __init__(self, config: TRMConfig) -> None:
        super().__init__()
        self.config = config
        d = config.hidden_size
        self.embed_scale = math.sqrt(d)
        self.embed_tokens = Embedding(config.vocab_size, d, init_std=1 / self.embed_scale)
        self.lm_head = Linear(d, config.vocab_size, bias=False)
        self.q_head = Linear(d, 2, bias=True)  # [halt, continue]; only halt is used (no_ACT_continue)
        if config.puzzle_emb_ndim > 0:
            self.puzzle_emb = PuzzleEmbedding(config.num_puzzle_identifiers, config.puzzle_emb_ndim)
        if config.pos_encodings == "rope":
            self.rotary_emb = RotaryEmbedding(d // config.num_heads, config.total_len, config.rope_theta)
        elif config.pos_encodings == "learned":
            self.embed_pos = Embedding(config.total_len, d, init_std=1 / self.embed_scale)
        self.L_level = ReasoningNet(config)
        self.register_buffer("H_init", trunc_normal_(torch.empty(d), std=1.0))
        self.register_buffer("L_init", trunc_normal_(torch.empty(d), std=1.0))
        with torch.no_grad():  # halting starts near "never halt" for stable bootstrapping
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5.0)

    # -- embeddings -------------------------------------------------------------------------------

    def puzzle_embedding(self, puzzle_identifiers: torch.Tensor | None, batch_size: int) -> torch.Tensor | None:
        """Rows of the puzzle table, ``[B, puzzle_emb_ndim]`` (identifier 0 when none are given)."""
        if self.config.puzzle_emb_ndim == 0:
            return None
        if puzzle_identifiers is None:
            puzzle_identifiers = torch.zeros(batch_size, dtype=torch.long, device=self.H_init.device)
        return self.puzzle_emb(puzzle_identifiers.long().reshape(-1))

    def input_embeddings(self, inputs: torch.Tensor, puzzle_embedding: torch.Tensor | None) -> torch.Tensor:
        x = self.embed_tokens(inputs.long())  # [B, seq_len, D]
        if puzzle_embedding is not None:
            cfg = self.config
            pad = cfg.puzzle_positions * cfg.hidden_size - puzzle_embedding.shape[-1]
            puzzle = F.pad(puzzle_embedding, (0, pad)).view(-1, cfg.puzzle_positions, cfg.hidden_size)
            x = torch.cat((puzzle, x), dim=-2)  # [B, total_len, D]
        if self.config.pos_encodings == "learned":
            x = 0.707106781 * (x + self.embed_pos.embedding_weight)  # 1/sqrt(2) keeps the variance
        return self.embed_scale * x

    # -- the recursion ----------------------------------------------------------------------------

    def initial_state(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (batch_size, self.config.total_len, self.config.hidden_size)
        return self.H_init.expand(shape).clone(), self.L_init.expand(shape).clone()

    def step_embedded(
        self, inputs: torch.Tensor, z_H: torch.Tensor, z_L: torch.Tensor, puzzle_embedding: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One supervision step given the puzzle embedding rows (the step graph's signature)."""
        cfg = self.config
        rope = getattr(self, "rotary_emb", None)
        x = self.input_embeddings(inputs, puzzle_embedding)
        # Gradients flow through the last H cycle only, as in the paper; the rest runs without a graph.
        with torch.no_grad() if cfg.H_cycles > 1 else nullcontext():
            for _ in range(cfg.H_cycles - 1):
                for _ in range(cfg.L_cycles):
                    z_L = self.L_level(z_L, z_H + x, rope)
                z_H = self.L_level(z_H, z_L, rope)
        for _ in range(cfg.L_cycles):
            z_L = self.L_level(z_L, z_H + x, rope)
        z_H = self.L_level(z_H, z_L, rope)
        logits = self.lm_head(z_H)[:, cfg.puzzle_positions:]  # [B, seq_len, V]
        q_halt_logits = self.q_head(z_H[:, 0])[..., 0]  # [B]
        return z_H.detach(), z_L.detach(), logits, q_halt_logits

    def step(
        self,
        inputs: torch.Tensor,
        z_H: torch.Tensor,
        z_L: torch.Tensor,
        puzzle_identifiers: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One supervision step: ``(z_H, z_L) -> (z_H_next, z_L_next, logits, q_halt_logits)``."""
        return self.step_embedded(inputs, z_H, z_L, self.puzzle_embedding(puzzle_identifiers, inputs.shape[0]))

    @torch.no_grad()
    def predict(
        self,
        inputs: torch.Tensor,
        puzzle_identifiers: torch.Tensor | None = None,
        max_steps: int | None = None,
        halt: bool = False,
        threshold: float = 0.0,
    ) -> dict[str, torch.Tensor]:
        """Run the loop. ``halt=False`` runs every step (the official evaluation); ``halt=True`` freezes
        each sample at the first step that halts by the bundle contract's rule, ``q_halt_logits > threshold``
        (:func:`trm_edge.bundle.contract.halts`; 0, sigmoid 0.5, is the training rule)."""
        steps_to_run = max_steps or self.config.halt_max_steps
        batch = inputs.shape[0]
        z_H, z_L = self.initial_state(batch)
        puzzle = self.puzzle_embedding(puzzle_identifiers, batch)
        logits = q_halt = None
        steps = torch.zeros(batch, dtype=torch.long, device=inputs.device)
        done = torch.zeros(batch, dtype=torch.bool, device=inputs.device)
        for i in range(steps_to_run):
            z_H, z_L, new_logits, new_q = self.step_embedded(inputs, z_H, z_L, puzzle)
            if logits is None:
                logits, q_halt = new_logits, new_q
            else:
                keep = done.view(-1, 1, 1)
                logits = torch.where(keep, logits, new_logits)
                q_halt = torch.where(done, q_halt, new_q)
            steps = torch.where(done, steps, torch.full_like(steps, i + 1))
            if halt:
                done = done | halts(new_q, threshold)
                if bool(done.all()):
                    break
        return {"logits": logits, "q_halt_logits": q_halt, "preds": logits.argmax(-1), "steps": steps}


def build_model(config: TRMConfig, seed: int | None = None) -> TRM:
    """A randomly initialised TRM (seeded when ``seed`` is given)."""
    if seed is None:
        return TRM(config)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return TRM(config)
