"""The PNGs of ``bench --plot`` and ``compare --plot`` (matplotlib: host side, imported when drawing)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trm_edge.runtimes.parity import StepParity


def require_matplotlib() -> None:
    """Fail before the runs, not after them, where matplotlib is not installed (a device-only install)."""
    import matplotlib  # noqa: F401


def bench_plot(entries: list[dict[str, Any]], labels: list[str], path: Path) -> None:
    """Latency (p50, p95) and throughput vs batch size, one line per bench entry."""
    with _figure(path, title=None) as (left, right):
        for entry, label in zip(entries, labels):  # noqa: B905
            batches = [r["batch"] for r in entry["results"]]
            (line,) = left.plot(batches, [r["puzzle_s_p50"] for r in entry["results"]], "o-", label=f"{label} p50")
            left.plot(batches, [r["puzzle_s_p95"] for r in entry["results"]], "o--", color=line.get_color(),
                      label=f"{label} p95")
            right.plot(batches, [r["puzzles_per_s"] for r in entry["results"]], "o-", label=label)
        left.set(xlabel="batch", ylabel="puzzle latency (s)", xscale="log", title="latency")
        right.set(xlabel="batch", ylabel="puzzles / s", xscale="log", title="throughput")


def compare_plot(per_step: list[StepParity], path: Path, *, title: str) -> None:
    """Teacher-forced divergence and disagreement (cells, halting decisions) vs supervision step."""
    steps = [r.step for r in per_step]
    with _figure(path, title=title) as (left, right):
        left.semilogy(steps, [max(r.logits_max_abs, 1e-12) for r in per_step], "o-", label="max abs")
        left.semilogy(steps, [max(r.logits_mean_abs, 1e-12) for r in per_step], "o--", label="mean abs")
        left.set(xlabel="supervision step", ylabel="logits difference", title="teacher-forced divergence")
        right.plot(steps, [1 - r.argmax_agreement for r in per_step], "o-", label="cells")
        right.plot(steps, [1 - r.halt_agreement for r in per_step], "o--", label="halt decisions")
        right.set(xlabel="supervision step", ylabel="disagreement", title="argmax / halting")


def save_figure(fig: Any, path: Path, *, dpi: int) -> None:
    """Write a figure atomically (the format from the path's suffix, PNG without one); the command checked the path
    before its work and passes ``--force`` on by replacing what is there now."""
    from trm_edge.io import atomic_file

    with atomic_file(path, force=True) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix[1:].lower() or "png")


@contextlib.contextmanager
def _figure(path: Path, *, title: str | None) -> Iterator[tuple[Any, Any]]:
    """Two axes side by side; when the block is done their legends, the title, and the PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    try:
        yield left, right
        for axes in (left, right):
            axes.legend(fontsize="small")
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        save_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)
