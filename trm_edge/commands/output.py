"""Shared CLI output helpers: the stdout console and ``--json`` emission (progress bars and the stderr console:
:mod:`trm_edge.progress`)."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from rich.console import Console

console = Console()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def print_json(obj: Any) -> None:
    """One JSON object on stdout, nothing else (for ``--json``)."""
    sys.stdout.write(json.dumps(obj, default=_jsonable) + "\n")
    sys.stdout.flush()
