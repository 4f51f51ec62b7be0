"""Progress bars (rich) and the stderr console they draw on, for the CLI and the trainer alike: stdout stays
clean for ``--json``."""

from __future__ import annotations

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


def progress(*extra: TextColumn, disable: bool = False, transient: bool = True) -> Progress:
    """A progress bar with ETA on stderr (stdout stays clean for ``--json``); ``extra`` columns go last."""
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
