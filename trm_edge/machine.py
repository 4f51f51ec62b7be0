"""What this machine lets trm-edge use: the CPU cores of this process (its affinity, not the machine's count)."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
