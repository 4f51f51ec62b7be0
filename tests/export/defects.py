"""Small real export defects, made on a copy of a torch model (so the exporter itself writes the faulty
graph): what export validation must refuse. Shared by tests/export/test_validation.py and
benchmarks/validation_margins.py (which measures how far each lands above the fp32 tolerance)."""

from __future__ import annotations

import copy

import torch

from trm_edge.trm.model import rms_norm

RELATIVE = 1e-3  # the smallest perturbation validation must catch


def perturb_tensor(model, seed: int = 0):
    """Every element of one weight tensor (the first block's channel down-projection) off by 1e-3 relative."""
    bad = copy.deepcopy(model)
    weight = bad.L_level.layers[0].mlp.down_proj.weight
    signs = torch.randint(0, 2, weight.shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    with torch.no_grad():
        weight.mul_(1 + RELATIVE * signs)
    return bad


def perturb_element(model, seed: int = 0):
    """One weight element (the largest of the first block's channel down-projection) off by 1e-3 relative."""
    bad = copy.deepcopy(model)
    weight = bad.L_level.layers[0].mlp.down_proj.weight
    with torch.no_grad():
        weight.view(-1)[weight.abs().argmax()] *= 1 + RELATIVE
    return bad


def swap_layers(model, seed: int = 0):
    """The two blocks' channel up-projections swapped (a layer-index mix-up in a weight mapping)."""
    bad = copy.deepcopy(model)
    first, second = bad.L_level.layers[0].mlp.gate_up_proj, bad.L_level.layers[1].mlp.gate_up_proj
    first.weight, second.weight = second.weight, first.weight
    return bad


def drop_norm(model, seed: int = 0):
    """The last block's final RMSNorm left out."""
    bad = copy.deepcopy(model)
    block = bad.L_level.layers[-1]

    def forward(h, rope):
        if hasattr(block, "mlp_t"):
            t = h.transpose(1, 2)
            h = rms_norm(t + block.mlp_t(t), block.eps).transpose(1, 2)
        else:
            h = rms_norm(h + block.self_attn(h, rope), block.eps)
        return h + block.mlp(h)  # the defect: no norm around this sum

    block.forward = forward
    return bad


DEFECTS = {"perturb_tensor": perturb_tensor, "perturb_element": perturb_element, "swap_layers": swap_layers,
           "drop_norm": drop_norm}
