"""The PyTorch reference runtime: ``model.step`` from a checkpoint directory.

The only runtime that imports torch. It runs the same step function that training and export use
(trm_edge/trm/model.py), in float32, so every other runtime is judged against it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from trm_edge.errors import PuzzleError, RuntimeUnavailableError
from trm_edge.runtimes.interface import Runtime
from trm_edge.runtimes.model_source import ModelSource


class TorchRuntime(Runtime):
    """``model.step_embedded`` on numpy feeds. ``device``: cpu (default) or cuda."""

    name = "torch"
    runs = ("checkpoint",)

    def __init__(self, source: ModelSource, *, device: str | None = None, threads: int | None = None,
                 precision_hint: str | None = None, model: Any = None) -> None:
        super().__init__(source, device=device, threads=threads, precision_hint=precision_hint)
        self.model = model  # an already-loaded TRM may be handed in (tests, export validation)
        self._device = torch.device(device or "cpu")
        if self._device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeUnavailableError("torch:cuda asked for, but torch sees no CUDA device; use torch:cpu")

    @classmethod
    def from_model(cls, model: Any, *, task: str = "sudoku", device: str | None = None) -> TorchRuntime:
        """Wrap an in-memory TRM (no checkpoint on disk)."""
        from pathlib import Path

        source = ModelSource(kind="checkpoint", path=Path("<memory>"), config=model.config, task=task)
        return cls(source, device=device, model=model)

    def _load(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        if self.model is None:
            from trm_edge.trm.checkpoint import load_model

            self.model = load_model(self.source.path)
        self.model = self.model.to(self._device).float().eval()
        self._single_embedding = None
        if self.config.puzzle_emb_ndim > 0 and not self.config.has_puzzle_table:
            with torch.no_grad():  # the one shared row, folded into the graph on the bundle side
                self._single_embedding = self.model.puzzle_embedding(None, 1)

    def initial_state(self) -> tuple[np.ndarray, np.ndarray]:
        self.load()
        return (self.model.H_init.detach().float().cpu().numpy().copy(),
                self.model.L_init.detach().float().cpu().numpy().copy())

    def puzzle_embedding(self, identifiers: np.ndarray) -> np.ndarray | None:
        if not self.config.has_puzzle_table:
            return None
        self.load()
        ids = np.asarray(identifiers, dtype=np.int64).reshape(-1)
        rows = self.config.num_puzzle_identifiers
        if ids.size and (ids.min() < 0 or ids.max() >= rows):
            raise PuzzleError(f"puzzle identifiers must be in 0..{rows - 1}; got {int(ids.min())}..{int(ids.max())}")
        return self.model.puzzle_emb.weights.detach().float().cpu().numpy()[ids]

    def _step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        dev = self._device
        with torch.inference_mode():
            inputs = torch.from_numpy(feeds["inputs"]).to(dev)
            z_H = torch.from_numpy(feeds["z_H"]).to(dev)
            z_L = torch.from_numpy(feeds["z_L"]).to(dev)
            if "puzzle_embedding" in feeds:
                puzzle = torch.from_numpy(feeds["puzzle_embedding"]).to(dev)
            elif self._single_embedding is not None:
                puzzle = self._single_embedding.expand(inputs.shape[0], -1)
            else:
                puzzle = None
            outs = self.model.step_embedded(inputs, z_H, z_L, puzzle)
        names = ("z_H_next", "z_L_next", "logits", "q_halt_logits")
        return {n: t.float().cpu().numpy() for n, t in zip(names, outs, strict=True)}

    def _close(self) -> None:
        pass  # the model stays (cheap to keep; a reload would re-read the checkpoint)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "device": str(self._device), "torch": torch.__version__,
                "threads": torch.get_num_threads()}
