"""An independent, functional float64 re-statement of one TRM supervision step, written from the issue's
spec over a plain state dict. It is the oracle the model's math is tested against; it shares no code with
trm_edge.trm.model."""

from __future__ import annotations

import math

import torch


def _norm(x, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def _swiglu(x, w, prefix):
    h = x @ w[prefix + "gate_up_proj.weight"].T
    gate, up = h[..., : h.shape[-1] // 2], h[..., h.shape[-1] // 2:]
    return (gate * torch.sigmoid(gate) * up) @ w[prefix + "down_proj.weight"].T


def _attention(x, w, prefix, heads, rope):
    b, s, d = x.shape
    hd = d // heads
    qkv = (x @ w[prefix + "qkv_proj.weight"].T).view(b, s, 3, heads, hd)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    if rope is not None:
        cos, sin = rope

        def rot(t):
            return torch.cat((-t[..., hd // 2:], t[..., : hd // 2]), -1)

        q = q * cos[:, None] + rot(q) * sin[:, None]
        k = k * cos[:, None] + rot(k) * sin[:, None]
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(hd)
    out = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(b, s, d)
    return out @ w[prefix + "o_proj.weight"].T


def reference_step(weights, cfg, inputs, z_H, z_L, puzzle_ids=None):
    """One supervision step in float64. ``weights``: trm-edge/official-inner key names."""
    w = {k: v.double() for k, v in weights.items()}
    z_H, z_L = z_H.double(), z_L.double()
    d, eps = cfg.hidden_size, cfg.rms_norm_eps
    p_len = cfg.puzzle_positions
    x = w["embed_tokens.embedding_weight"][inputs.long()]
    if cfg.puzzle_emb_ndim > 0:
        ids = torch.zeros(inputs.shape[0], dtype=torch.long) if puzzle_ids is None else puzzle_ids.long()
        pe = w["puzzle_emb.weights"][ids]
        pe = torch.cat((pe, torch.zeros(pe.shape[0], p_len * d - pe.shape[1], dtype=pe.dtype)), -1)
        x = torch.cat((pe.view(-1, p_len, d), x), 1)
    if cfg.pos_encodings == "learned":
        x = 0.707106781 * (x + w["embed_pos.embedding_weight"])
    x = math.sqrt(d) * x
    rope = None
    if cfg.pos_encodings == "rope":
        hd = d // cfg.num_heads
        inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        f = torch.outer(torch.arange(cfg.total_len, dtype=torch.float64), inv)
        rope = (torch.cat((f, f), -1).cos(), torch.cat((f, f), -1).sin())

    def net(h, inj):
        h = h + inj
        for i in range(cfg.L_layers):
            pre = f"L_level.layers.{i}."
            if cfg.mlp_t:
                t = h.transpose(1, 2)
                h = _norm(t + _swiglu(t, w, pre + "mlp_t."), eps).transpose(1, 2)
            else:
                h = _norm(h + _attention(h, w, pre + "self_attn.", cfg.num_heads, rope), eps)
            h = _norm(h + _swiglu(h, w, pre + "mlp."), eps)
        return h

    for _ in range(cfg.H_cycles):
        for _ in range(cfg.L_cycles):
            z_L = net(z_L, z_H + x)
        z_H = net(z_H, z_L)
    logits = (z_H @ w["lm_head.weight"].T)[:, p_len:]
    q = z_H[:, 0] @ w["q_head.weight"].T + w["q_head.bias"]
    return z_H, z_L, logits, q[..., 0]
