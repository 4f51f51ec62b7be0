"""Write checkpoints in the official TRM layout (``step_N`` + ``all_config.yaml``) for import tests."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from trm_edge.trm.model import TRM


def write_official_checkpoint(model: TRM, directory: Path, *, prefix: str = "_orig_mod.model.inner.",
                              dtype: torch.dtype = torch.bfloat16, step: int = 1000) -> Path:
    """Save ``model`` as the official trainer would: a state dict of the compiled ACTLossHead, with the
    architecture in ``all_config.yaml`` beside it; weights in ``dtype`` (the official default is bf16)."""
    cfg = model.config
    directory.mkdir(parents=True, exist_ok=True)
    state = {prefix + k: v.to(dtype) for k, v in model.state_dict().items()}
    if hasattr(model, "rotary_emb"):  # some official builds persist the RoPE caches; import must ignore them
        state[prefix + "rotary_emb.cos_cached"] = model.rotary_emb.cos.clone()
    path = directory / f"step_{step}"
    torch.save(state, path)
    arch = {
        "name": "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
        "loss": {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"},
        "halt_exploration_prob": cfg.halt_exploration_prob, "halt_max_steps": cfg.halt_max_steps,
        "H_cycles": cfg.H_cycles, "L_cycles": cfg.L_cycles, "H_layers": 0, "L_layers": cfg.L_layers,
        "hidden_size": cfg.hidden_size, "num_heads": cfg.num_heads, "expansion": cfg.expansion,
        "puzzle_emb_ndim": "${.hidden_size}" if cfg.puzzle_emb_ndim == cfg.hidden_size else cfg.puzzle_emb_ndim,
        "pos_encodings": cfg.pos_encodings, "forward_dtype": "bfloat16", "mlp_t": cfg.mlp_t,
        "puzzle_emb_len": cfg.puzzle_emb_len, "no_ACT_continue": cfg.no_ACT_continue,
    }
    (directory / "all_config.yaml").write_text(yaml.safe_dump({"arch": arch, "global_batch_size": 768}))
    return path
