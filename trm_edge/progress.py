"""Progress on stderr (stdout stays clean for ``--json``), for the CLI and the trainer alike: a live rich bar on a
terminal, and off one (a log file, CI, a pipe), where a live bar shows nothing until the end, a plain line every
few seconds with done/total, rate and ETA."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

err_console = Console(stderr=True)
LINE_INTERVAL_S = 5.0


def progress(*extra: TextColumn, disable: bool = False, transient: bool = True,
             lines: bool = True) -> Progress | LineProgress:
    """A progress bar with ETA on stderr; ``extra`` columns go last. Off a terminal, unless ``lines`` is False
    (a caller that logs its own lines), a :class:`LineProgress`."""
    if lines and not disable and not err_console.is_terminal:
        return LineProgress(err_console)
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra,
        console=err_console,
        disable=disable,
        transient=transient,
    )


class LineProgress:
    """The part of rich's Progress the commands use (``add_task``, ``advance``, ``update``), reported as a line
    every ``interval`` seconds and once at the end: ``eval test: 120/1000 (12%), 4.1/s, ETA 3m35s``."""

    def __init__(self, console: Console, interval: float = LINE_INTERVAL_S) -> None:
        self.console = console
        self.interval = interval
        self._tasks: list[dict[str, Any]] = []

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, kind: Any, *rest: Any) -> None:
        if kind is None:
            for task in self._tasks:
                if task["completed"] != task["said"]:
                    self._say(task)

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields: Any) -> int:
        now = time.monotonic()
        self._tasks.append({"description": description, "total": total, "completed": completed, "start": completed,
                            "started": now, "last": now, "said": completed})
        return len(self._tasks) - 1

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def update(self, task_id: int, *, completed: float | None = None, advance: float | None = None,
               total: float | None = None, description: str | None = None, **fields: Any) -> None:
        task = self._tasks[task_id]
        if total is not None:
            task["total"] = total
        if description is not None:
            task["description"] = description
        if completed is not None:
            task["completed"] = completed
        if advance is not None:
            task["completed"] += advance
        if time.monotonic() - task["last"] >= self.interval:
            self._say(task)

    def _say(self, task: dict[str, Any]) -> None:
        now = time.monotonic()
        task["last"], task["said"] = now, task["completed"]
        done, total = task["completed"], task["total"]
        rate = (done - task["start"]) / max(now - task["started"], 1e-9)
        parts = [f"{done:g}/{total:g} ({100 * done / total:.0f}%)" if total else f"{done:g}", f"{rate:.3g}/s"]
        if total and rate > 0 and done < total:
            parts.append(f"ETA {_duration((total - done) / rate)}")
        self.console.print(f"{task['description']}: {', '.join(parts)}", markup=False, highlight=False)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
