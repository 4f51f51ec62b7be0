"""The puzzle-embedding table of many-identifier models (ARC): out of the graph, into puzzle_emb.npy.

The step graph takes the row as its ``puzzle_embedding`` input; the bundle keeps the table (rows in
``identifiers.json`` order) so the device looks rows up itself, memory-mapped. ``--puzzles`` (or ``--tasks``)
keeps only the rows of chosen identifiers, and ``--table-dtype float16`` halves what is left: most of an ARC
model's bytes are this table (hundreds of thousands of rows x 512), most of an 8 GB Jetson's memory in float32.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trm_edge.errors import ExportError, choices

TASK_SEPARATOR = "|||"  # augmented ARC names: task|||tK|||permutation
TABLE_DTYPES = ("float32", "float16")  # stored; rows are looked up as float32 either way


@dataclass(frozen=True)
class PuzzleTable:
    ids: list[int]  # official identifier of each kept row
    names: list[str | None]
    table: np.ndarray  # [rows, puzzle_emb_ndim] float32

    def validation_ids(self, count: int) -> np.ndarray:
        """Identifiers for ``count`` validation puzzles: kept rows, non-blank ones first."""
        preferred = [i for i in self.ids if i != 0] or self.ids
        return np.array([preferred[k % len(preferred)] for k in range(count)], dtype=np.int64)

    def embeddings(self, ids: Sequence[int]) -> np.ndarray:
        rows = {ident: r for r, ident in enumerate(self.ids)}
        return np.ascontiguousarray(self.table[[rows[int(i)] for i in ids]], dtype=np.float32)

    def write(self, table_path: Path, identifiers_path: Path, *, dtype: str = "float32") -> None:
        np.save(table_path, np.ascontiguousarray(self.table, dtype=dtype))
        identifiers_path.write_text(json.dumps({"ids": self.ids, "names": self.names}) + "\n")

    def manifest_entry(self, table_file: str, identifiers_file: str, *, dtype: str = "float32") -> dict[str, Any]:
        return {"file": table_file, "identifiers": identifiers_file, "rows": len(self.ids),
                "dim": int(self.table.shape[1]), "dtype": dtype,
                "lookup": "row i of the table is identifier ids[i] (name names[i]) of identifiers.json; "
                          "feed table[row] as puzzle_embedding"}


def select_puzzles(model, puzzles: Sequence[str] | None, names: Sequence[str] | None) -> PuzzleTable | None:
    """The table to ship (None when the graph takes no puzzle_embedding input). ``puzzles`` entries
    match an integer identifier, an exact name, or a task name before ``|||``."""
    cfg = model.config
    if not cfg.has_puzzle_table:
        if puzzles:
            raise ExportError("--puzzles applies to models with several puzzle identifiers; this model has "
                              f"{cfg.num_puzzle_identifiers} (its embedding is folded into the graph)")
        return None
    table = model.puzzle_emb.weights.detach().float().numpy()
    count = table.shape[0]
    if names is not None and len(names) != count:
        raise ExportError(f"the identifier names list has {len(names)} entries but the model has {count} "
                          "puzzle identifiers; pass the identifiers.json of the dataset it was trained on")
    all_names: list[str | None] = list(names) if names is not None else [None] * count
    if not puzzles:
        keep = list(range(count))
    else:
        keep = sorted({i for wanted in puzzles for i in _matches(wanted, all_names, count)})
    return PuzzleTable(keep, [all_names[i] for i in keep], table[keep])


def _matches(wanted: str, names: list[str | None], count: int) -> list[int]:
    text = str(wanted).strip()
    if text.isdigit():
        if int(text) >= count:
            raise ExportError(f"puzzle identifier {int(text)} is out of range: the model has {count} (0..{count - 1})")
        return [int(text)]
    found = [i for i, name in enumerate(names)
             if name is not None and (name == text or name.split(TASK_SEPARATOR)[0] == text)]
    if not found:
        known = sorted({n.split(TASK_SEPARATOR)[0] for n in names if n})
        if not known:
            raise ExportError(f"--puzzles {text!r}: the model's identifiers have no names; give integer ids "
                              "or the dataset's identifiers.json (--identifiers)")
        raise ExportError(f"--puzzles {text!r} matches no identifier; known tasks include {choices(known[:8])}")
    return found
