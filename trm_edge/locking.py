"""One writer at a time: an advisory lock (``flock``) per output path, held in a sibling ``.NAME.lock`` file.

A second trm-edge process that wants to write the same path gets :class:`OutputLockedError` naming the holder's
PID instead of mixing its output with the first one's. The kernel drops the lock when its holder dies, so a killed
run never blocks the next one; the lock file is removed by the holder on release, and a stale one left by a
killed holder is reused. Locks are re-entrant within a process: a command may lock its output up front and the
library's atomic writers inside it lock the same path again without blocking themselves.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trm_edge.errors import OutputLockedError

_held: dict[Path, int] = {}  # paths this process holds, with their nesting depth


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold the advisory lock of ``path`` (whose parent directory must exist) for the ``with`` block."""
    target = Path(os.path.abspath(path))
    if target in _held:
        _held[target] += 1
        try:
            yield
        finally:
            _held[target] -= 1
        return
    fd = _acquire(target)
    _held[target] = 1
    try:
        yield
    finally:
        del _held[target]
        _release(target, fd)


def _acquire(target: Path) -> int:
    lock = lock_path(target)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise OutputLockedError(f"{str(target)!r} is being written by another trm-edge process (PID {holder}); "
                                    "wait for it to finish or stop it") from None
        # The holder before us may have removed the file between our open and our flock: then we hold a lock on
        # a file nobody else will find; start again on the file now at that path.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            except OSError:  # a full disk: the caller says so, and no lock file is left behind
                _release(target, fd)
                raise
            return fd
        os.close(fd)


def _release(target: Path, fd: int) -> None:
    try:
        os.unlink(lock_path(target))  # while still holding it: the next process locks a fresh file
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)
