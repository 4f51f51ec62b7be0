"""Writing outputs, the one way every command does it (docs/reliability.md), and file checksums.

- :func:`check_output` runs before any work: an existing path is refused unless ``force``; a location that cannot
  be written (read-only, under a file, the current directory itself) is one line, not a traceback after the work.
- :func:`atomic_directory` and :func:`atomic_file` write into a temporary sibling and put it in place at the end,
  holding the path's lock (``trm_edge.locking``) so that two writers never mix. A crash at any instant leaves the
  old output or the new one under the path:

  * a new file or directory arrives by one ``rename``;
  * a directory replaces an existing one by one ``renameat2(RENAME_EXCHANGE)`` where Linux offers it (the old
    content lands in the temporary sibling and is removed after);
  * elsewhere by two renames through a ``.NAME.old`` sibling, which the next writer of the path moves back when a
    crash fell between them.

  Temporary siblings of killed runs (``.NAME.tmp-XXXXXXXX``) are removed by the next writer of that path, under
  its lock, when no one else can be using them.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import hashlib
import inspect
import json
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from trm_edge.errors import OutputError, OutputExistsError
from trm_edge.locking import output_lock

TEMPORARY_INFIX, OLD_SUFFIX = ".tmp-", ".old"
# Fault injection for the reliability tests: a process whose TRM_EDGE_FAULT names a point kills itself there.
FAULT_VARIABLE = "TRM_EDGE_FAULT"
F = TypeVar("F", bound="Callable[..., Any]")  # a string: subscripting the ABC at run time needs 3.9


def fault_point(name: str, target: Path) -> None:
    """SIGKILL this process here when ``$TRM_EDGE_FAULT`` names this point, alone or as ``POINT:NAME`` for the
    writes of outputs named NAME only (tests/reliability drive it)."""
    if os.environ.get(FAULT_VARIABLE) in (name, f"{name}:{target.name}"):
        os.kill(os.getpid(), signal.SIGKILL)


def check_output(path: str | os.PathLike, *, force: bool) -> Path:
    """The output path, after the checks that must come before any work (see the module docstring)."""
    target = Path(path)
    absolute = Path(os.path.abspath(target))
    cwd = Path.cwd()
    if absolute == cwd or absolute in cwd.parents:
        raise OutputError(f"cannot write the output to {str(path)!r}: it is the current directory or holds it; "
                          "choose a new path")
    if (target.exists() or target.is_symlink()) and not force:
        raise OutputExistsError(f"output {str(target)!r} exists; choose another path or pass --force")
    ancestor = absolute.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"cannot write the output to {str(path)!r}: {str(ancestor)!r} is a file, not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".trm-edge-probe-", dir=ancestor))
    except OSError as error:
        raise OutputError(f"cannot write the output to {str(path)!r}: {error.strerror} ({str(ancestor)!r})") from None
    return target


@contextmanager
def claim_output(path: str | os.PathLike, *, force: bool) -> Iterator[Path]:
    """:func:`check_output`, then the path's lock for the whole ``with`` block: a command claims its output before
    its work, so that a second writer of the same path is refused at once rather than after it."""
    target = check_output(path, force=force)
    target.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(target):
        yield target


def claims_output(parameter: str = "output") -> Callable[[F], F]:
    """Decorate a writer whose ``parameter`` names its output (and whose ``force`` allows replacing it): the call
    runs inside :func:`claim_output`, so the checks come before its work and its lock covers all of it."""

    def decorate(function: F) -> F:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def claimed(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            with claim_output(bound.arguments[parameter], force=bool(bound.arguments.get("force", False))):
                return function(*args, **kwargs)

        return claimed  # type: ignore[return-value]

    return decorate


@contextmanager
def atomic_directory(path: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it takes the place of ``path`` atomically. On any
    exception (also KeyboardInterrupt) it is removed and ``path`` is left as it was."""
    target = check_output(path, force=force)
    with _prepared(target, force=force):
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{TEMPORARY_INFIX}", dir=target.parent))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; the output should get the usual permissions
        try:
            yield tmp
            fault_point("replace:before", target)
            _put_in_place(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


@contextmanager
def atomic_file(path: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling file path to write; on success it replaces ``path`` in one rename."""
    target = check_output(path, force=force)
    with _prepared(target, force=force):
        fd, name = tempfile.mkstemp(prefix=f".{target.name}{TEMPORARY_INFIX}", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            yield tmp
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o666 & ~umask)
            fault_point("replace:before", target)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def write_json_atomic(path: str | os.PathLike, obj: Any, *, force: bool = True) -> None:
    """Write JSON to ``path`` through :func:`atomic_file` (replacing it by default: manifests, reports)."""
    with atomic_file(path, force=force) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


@contextmanager
def _prepared(target: Path, *, force: bool) -> Iterator[None]:
    """Parents made, the path's lock held, a crashed writer's litter cleared, and the existence check made again
    under the lock (another process may have written the path since :func:`check_output`)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(target):
        clear_litter(target)
        if target.exists() and not force:
            raise OutputExistsError(f"output {str(target)!r} exists; choose another path or pass --force")
        yield


def clear_litter(target: Path) -> list[Path]:
    """Remove the temporary siblings of killed writers of ``target`` and put back a ``.NAME.old`` that a crash
    between two renames left without its replacement. Call it holding the path's lock. Returns what it removed."""
    pattern = re.compile(re.escape(f".{target.name}{TEMPORARY_INFIX}") + r"[a-z0-9_]{8}$")
    old = target.with_name(f".{target.name}{OLD_SUFFIX}")
    if (old.exists() or old.is_symlink()) and not target.exists():
        old.rename(target)
    removed = [p for p in target.parent.iterdir() if pattern.match(p.name)]
    if old.exists():
        removed.append(old)
    for p in removed:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return removed


def _put_in_place(tmp: Path, target: Path) -> None:
    if not (target.exists() or target.is_symlink()):
        os.rename(tmp, target)
    elif _exchange(tmp, target):
        fault_point("replace:exchanged", target)
        shutil.rmtree(tmp)  # the old content
    else:
        old = target.with_name(f".{target.name}{OLD_SUFFIX}")
        os.rename(target, old)
        fault_point("replace:between-renames", target)
        os.rename(tmp, target)
        shutil.rmtree(old)


_RENAME_EXCHANGE, _AT_FDCWD = 2, -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where the platform or the file
    system does not offer it."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # not offered on this file system or kernel
        return False
    raise OSError(code, os.strerror(code), str(b))


@functools.lru_cache(maxsize=None)
def _renameat2() -> Any:
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    except OSError:  # no C library to load by that name (not a POSIX system)
        return None


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
