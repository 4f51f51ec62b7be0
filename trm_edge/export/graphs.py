"""Graph builders: torch -> ONNX for the step graph and the unrolled graph.

Exporter: torch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``). It traces
``TRM.step_embedded`` (the one place the math lives) into plain ONNX ops: RMSNorm becomes
Mul/ReduceMean/Add/Sqrt/Div (ReduceMean takes ``axes`` as an attribute up to opset 17 and as an input
from 18, handled by the exporter), SDPA becomes MatMul/Softmax, SiLU Sigmoid*Mul. Why not the dynamo
exporter: it needs onnxscript (not a dependency), and the TorchScript exporter at opset 17 is the one whose graphs
reproduce the official outputs (docs/design.md, "The reference is float32"). The exporter's ``Identity``-shared weights
and per-call-site constants are then cleaned up by :func:`trm_edge.export.passes.cleanup`.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from trm_edge.bundle.contract import STEP_INPUTS, STEP_OUTPUTS, UNROLLED_OUTPUTS
from trm_edge.errors import ExportError
from trm_edge.export import passes
from trm_edge.quiet import third_party_output

BATCH_AXIS = "batch"


class StepGraph(nn.Module):
    """One supervision step with the graph contract's signature. A model with a single puzzle
    identifier has its embedding row folded in as a constant; with several, it is an input."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        cfg = model.config
        self.folded_puzzle = cfg.puzzle_emb_ndim > 0 and not cfg.has_puzzle_table
        if self.folded_puzzle:
            # Pre-padded to the full puzzle prefix, so the traced F.pad is a no-op: onnxslim's shape
            # inference folded the dynamic pad amounts of an expanded constant row in the wrong order
            # (padding at the front), which validation caught.
            row = model.puzzle_emb.weights[:1].detach().float()
            width = cfg.puzzle_positions * cfg.hidden_size
            self.register_buffer("puzzle_row", nn.functional.pad(row, (0, width - row.shape[-1])))

    def _puzzle(self, inputs: torch.Tensor, puzzle_embedding: torch.Tensor | None) -> torch.Tensor | None:
        if self.folded_puzzle:
            return self.puzzle_row.expand(inputs.shape[0], self.puzzle_row.shape[1])
        return puzzle_embedding

    def forward(self, inputs, z_H, z_L, puzzle_embedding=None):
        return self.model.step_embedded(inputs, z_H, z_L, self._puzzle(inputs, puzzle_embedding))


class UnrolledGraph(StepGraph):
    """All ``halt_max_steps`` supervision steps from the initial state, in one static graph. The
    network's weights are the same module's, so the exporter shares them across every call site."""

    def forward(self, inputs, puzzle_embedding=None):
        cfg = self.model.config
        shape = (inputs.shape[0], cfg.total_len, cfg.hidden_size)
        z_H, z_L = self.model.H_init.expand(shape), self.model.L_init.expand(shape)
        puzzle = self._puzzle(inputs, puzzle_embedding)
        q_steps = []
        for _ in range(cfg.halt_max_steps):
            z_H, z_L, logits, q_halt = self.model.step_embedded(inputs, z_H, z_L, puzzle)
            q_steps.append(q_halt)
        return logits, q_halt, torch.stack(q_steps, dim=1)


@dataclass(frozen=True)
class BuiltGraph:
    """A cleaned-up graph in memory, with what it took to build it."""

    model: onnx.ModelProto
    cleanup: passes.CleanupReport
    export_seconds: float
    cleanup_seconds: float

    def report(self) -> dict[str, Any]:
        return {"export_seconds": round(self.export_seconds, 2), "cleanup_seconds": round(self.cleanup_seconds, 2),
                "cleanup": self.cleanup.to_dict(), "op_types": self.cleanup.after.op_types}


def example_inputs(config, batch: int, *, unrolled: bool = False) -> tuple[torch.Tensor, ...]:
    inputs = torch.ones(batch, config.seq_len, dtype=torch.int32)
    state = torch.zeros(batch, config.total_len, config.hidden_size)
    args: tuple[torch.Tensor, ...] = (inputs,) if unrolled else (inputs, state, state.clone())
    if config.has_puzzle_table:
        args += (torch.zeros(batch, config.puzzle_emb_ndim),)
    return args


def input_names(config, *, unrolled: bool = False) -> list[str]:
    names = ["inputs"] if unrolled else list(STEP_INPUTS[:3])
    return names + (["puzzle_embedding"] if config.has_puzzle_table else [])


def build_graph(model: nn.Module, *, kind: str = "step", opset: int = 17, batch: int | None = None) -> BuiltGraph:
    """Export ``model`` as the ``step`` or ``unrolled`` graph and clean it up (weights stored once).
    ``batch=None`` gives a dynamic batch axis, an integer a static one."""
    if kind not in ("step", "unrolled"):
        raise ExportError(f"unknown graph {kind!r}; choose 'step' or 'unrolled'")
    if batch is not None and batch < 1:
        raise ExportError(f"batch={batch} must be at least 1 (or omitted for a dynamic batch axis)")
    config = model.config
    unrolled = kind == "unrolled"
    wrapper = (UnrolledGraph if unrolled else StepGraph)(model).eval()
    names_in = input_names(config, unrolled=unrolled)
    names_out = list(UNROLLED_OUTPUTS if unrolled else STEP_OUTPUTS)
    dynamic = None if batch is not None else {name: {0: BATCH_AXIS} for name in names_in + names_out}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="trm-edge-export-") as tmp:
        raw = Path(tmp) / f"{kind}.onnx"
        with torch.no_grad(), third_party_output():  # the tracer's warnings: `trm-edge --verbose` shows them
            torch.onnx.export(wrapper, example_inputs(config, batch or 2, unrolled=unrolled), str(raw),
                              input_names=names_in, output_names=names_out, opset_version=opset,
                              dynamic_axes=dynamic, do_constant_folding=True, dynamo=False)
        exported = onnx.load(str(raw))
    exported_at = time.perf_counter()
    cleaned, report = passes.cleanup(exported)
    return BuiltGraph(cleaned, report, exported_at - started, time.perf_counter() - exported_at)


def export_step_onnx(model: nn.Module, path: str | Path, *, opset: int = 17, batch: int | None = None) -> Path:
    """Write the cleaned-up step graph of ``model`` to ``path`` (the quantizer's and tests' entry point).
    Not validated here: :func:`trm_edge.export.validate.validate_step_graph` does that."""
    built = build_graph(model, kind="step", opset=opset, batch=batch)
    passes.save_model(built.model, Path(path))
    return Path(path)
