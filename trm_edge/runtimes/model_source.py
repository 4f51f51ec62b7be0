"""What a runtime runs: a deployment bundle (device side) or a checkpoint directory (torch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trm_edge.bundle.store import Bundle
from trm_edge.config import TRMConfig


@dataclass
class ModelSource:
    """What a runtime runs: a deployment bundle (device side) or a checkpoint directory (torch)."""

    kind: str  # "bundle" | "checkpoint"
    path: Path
    config: TRMConfig
    task: str | None  # sudoku | maze | arc (None: a model of no known task, e.g. in tests)
    bundle: Bundle | None = None  # when kind == "bundle"
    target: str | None = None
    precision: str = "fp32"
    halt_threshold: float = 0.0  # the model's calibrated halting threshold (manifest loop / checkpoint halting)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.path}"

    def identifiers(self) -> dict[str, list] | None:
        """``{"ids": [...], "names": [...]}`` of the model's puzzle identifiers: a bundle's table rows, or a
        checkpoint's identifiers.json (every identifier, in order); None when the model names none."""
        if self.bundle is not None:
            return self.bundle.identifiers()
        from trm_edge.trm.checkpoint import read_identifier_names

        names = read_identifier_names(self.path)
        return None if names is None else {"ids": list(range(len(names))), "names": names}


def bundle_source(bundle: Bundle) -> ModelSource:
    """The source of a bundle already opened (or made in memory by export and quantize)."""
    return ModelSource(kind="bundle", path=bundle.path, config=bundle.config, task=bundle.task, bundle=bundle,
                       target=bundle.target, precision=bundle.precision, halt_threshold=bundle.halt_threshold)
