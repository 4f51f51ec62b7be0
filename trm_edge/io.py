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
- A symbolic link given as the output is replaced itself, as ``mv`` (``rename(2)``) does: its target is never
  written, moved or deleted.
- A write that fails for want of space or by an I/O error (``ENOSPC``, a short write, ...) is one
  :class:`~trm_edge.errors.OutputWriteError` naming the output, the file, the bytes needed where known and the free
  space, raised after the temporary sibling is gone; :func:`check_space` refuses an output of a size known in
  advance before any work.
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

from trm_edge.errors import OutputError, OutputExistsError, OutputSpaceError, OutputWriteError
from trm_edge.locking import output_lock

TEMPORARY_INFIX, OLD_SUFFIX = ".tmp-", ".old"
# Fault injection for the reliability tests: a process whose TRM_EDGE_FAULT names a point kills itself there.
FAULT_VARIABLE = "TRM_EDGE_FAULT"
F = TypeVar("F", bound="Callable[..., Any]")  # a string: subscripting the ABC at run time needs 3.9
# What a failed write says (errno -> words); numpy reports a short write with no errno, in its own words.
WRITE_FAILURES = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is exceeded",
                  errno.EFBIG: "a file is too large for the file system", errno.EIO: "an input/output error",
                  errno.EROFS: "the file system became read-only"}
_FULL = (errno.ENOSPC, errno.EDQUOT, None)  # None: a short write
_SHORT_WRITE = re.compile(r"(\d+) requested and (\d+) written")
_expected: dict[Path, int] = {}  # outputs whose size check_space was told: absolute path -> bytes


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
    if os.path.lexists(target) and not force:
        raise OutputExistsError(f"output {str(target)!r} exists; choose another path or pass --force")
    ancestor = _existing_ancestor(absolute.parent)
    if not ancestor.is_dir():
        raise OutputError(f"cannot write the output to {str(path)!r}: {str(ancestor)!r} is a file, not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".trm-edge-probe-", dir=ancestor))
    except OSError as error:
        raise OutputError(f"cannot write the output to {str(path)!r}: {error.strerror} ({str(ancestor)!r})") from None
    return target


def check_space(path: str | os.PathLike, needed: int) -> None:
    """Refuse, before any work, an output of at least ``needed`` bytes that its location has no room for. An
    existing output is removed only once its replacement is whole, so the new one must fit beside it. The size is
    remembered for the message of a write that fails all the same."""
    target = Path(path)
    _expected[Path(os.path.abspath(target))] = needed
    where = _existing_ancestor(Path(os.path.abspath(target)).parent)
    free = free_bytes(where)
    if needed > free:
        beside = ("; the existing output is removed only once the new one is whole, so both must fit"
                  if os.path.lexists(target) else "")
        raise OutputSpaceError(f"not enough space for {str(path)!r}: it needs at least {format_bytes(needed)} and "
                               f"{format_bytes(free)} are free in {str(where)!r}{beside}; free some space or "
                               "choose another location")


def free_bytes(path: str | os.PathLike) -> int:
    """The bytes this process may still write on the file system of ``path`` (root may use the reserve)."""
    stats = os.statvfs(path)
    return stats.f_frsize * (stats.f_bfree if os.geteuid() == 0 else stats.f_bavail)


def format_bytes(count: int) -> str:
    """``123 bytes``, ``45.6 kB``, ``7.8 MB``, ``1.2 GB`` (decimal units, as ``df -H`` and file managers)."""
    if count < 1000:
        return f"{count} bytes"
    value = float(count)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000 or unit == "TB":
            break
    return f"{value:.1f} {unit}"


@contextmanager
def _writing(path: str | os.PathLike) -> Iterator[None]:
    """Writes to the output ``path`` inside the block (and the work that writes it) that fail for want of space or
    by an I/O error become one :class:`OutputWriteError` naming the path, instead of a traceback."""
    target = Path(path)
    try:
        yield
    except OSError as error:
        failure = _write_failure(error, target)
        if failure is None:
            raise
        raise failure from error


def _write_failure(error: BaseException, target: Path, tmp: Path | None = None, *,
                  kept: bool = False) -> OutputWriteError | None:
    """The :class:`OutputWriteError` for ``error`` when it is a failed write of the output ``target`` (being built
    in ``tmp``), else None. A failure already reported for a file inside ``tmp`` (a nested writer: a manifest
    written into a bundle being built) is reported again for ``target``. ``kept``: ``target`` is as it was."""
    filename = getattr(error, "filename", None)
    if isinstance(error, OutputWriteError) and isinstance(error.__cause__, OSError) and tmp is not None \
            and _inside(error.path, tmp):
        filename = error.__cause__.filename or error.path
        error = error.__cause__
    if not isinstance(error, OSError):
        return None
    reason = WRITE_FAILURES.get(error.errno) if error.errno is not None else _short_write(error)
    if reason is None:
        return None
    file = _shown_file(filename, target, tmp)
    where = _existing_ancestor(Path(os.path.abspath(target)).parent if file is None or not os.path.isabs(file)
                               else Path(file).parent)
    free, needed = free_bytes(where), _expected.get(Path(os.path.abspath(target)), 0)
    space = f"{format_bytes(free)} free in {str(where)!r}"
    if needed > free:
        space = f"it needs at least {format_bytes(needed)}, and {space}"
    elif error.errno in _FULL:  # the space left, the temporary output gone, is what was too little
        space = f"it needs more than the {space}"
    message = (f"cannot write {str(target)!r}: {reason}" + (f" (writing {file})" if file else "") + f"; {space}"
               + (f"; {str(target)!r} is unchanged" if kept else ""))
    return OutputWriteError(message, path=target)


def _short_write(error: OSError) -> str | None:
    found = _SHORT_WRITE.search(str(error))
    if found is None:
        return None
    return f"only {int(found[2]):,} of {int(found[1]):,} bytes were written (the device is full)"


def _shown_file(filename: Any, target: Path, tmp: Path | None) -> str | None:
    """The file a failed write names, as the user knows it: relative to the output (not its temporary sibling),
    else as given; None where the error names none or names the output itself."""
    if not isinstance(filename, (str, bytes, os.PathLike)):
        return None
    file = Path(os.fsdecode(filename))
    for root in (tmp, target):
        if root is not None and _inside(file, root):
            relative = Path(os.path.abspath(file)).relative_to(os.path.abspath(root))
            return None if relative == Path(".") else relative.as_posix()
    return str(file)


def _inside(path: Path, root: Path) -> bool:
    absolute, top = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    return absolute == top or top in absolute.parents


def _existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


@contextmanager
def claim_output(path: str | os.PathLike, *, force: bool) -> Iterator[Path]:
    """:func:`check_output`, then the path's lock for the whole ``with`` block: a command claims its output before
    its work, so that a second writer of the same path is refused at once rather than after it. A write that fails
    for want of space inside the block is one line (:func:`_writing`)."""
    target = check_output(path, force=force)
    with _writing(target):
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


class Staging:
    """A directory output being built in its temporary sibling ``tmp`` until :meth:`place` puts it at ``target``
    (one rename, or an atomic exchange with what is there). ``where`` is where to write: ``tmp``, then ``target``.
    Without ``tmp``, an output written where it is (a training run resumed), placed from the start."""

    def __init__(self, target: Path, tmp: Path | None = None) -> None:
        self.target = target
        self.tmp = target if tmp is None else tmp
        self.placed = tmp is None

    @property
    def where(self) -> Path:
        return self.target if self.placed else self.tmp

    def place(self) -> None:
        if not self.placed:
            fault_point("replace:before", self.target)
            _put_in_place(self.tmp, self.target)
            self.placed = True

    def discard(self) -> None:
        if not self.placed:
            _remove(self.tmp)


def _temporary_directory(target: Path) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{TEMPORARY_INFIX}", dir=target.parent))
    tmp.chmod(_usual_mode(0o777))  # mkdtemp makes 0700; the output should get the usual permissions
    return tmp


def _usual_mode(mode: int) -> int:
    """``mode`` less this process's umask: what ``open`` and ``mkdir`` would have given."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


@contextmanager
def staged_directory(path: str | os.PathLike, *, force: bool = False) -> Iterator[Staging]:
    """Yield a :class:`Staging` whose temporary sibling takes the place of ``path`` when the writer calls
    ``place()`` (training: at its first checkpoint), at the latest when the block ends. On an exception before that
    (also KeyboardInterrupt) the sibling is removed and ``path`` is left as it was."""
    target = check_output(path, force=force)
    existed = os.path.lexists(target)
    staging: Staging | None = None
    try:
        with _prepared(target, force=force):
            staging = Staging(target, _temporary_directory(target))
            yield staging
            staging.place()
    except BaseException as error:
        if staging is not None:
            staging.discard()
        placed = staging is not None and staging.placed
        failure = _write_failure(error, target, None if staging is None else staging.tmp,
                                kept=existed and not placed)
        if failure is None:
            raise
        raise failure from error


@contextmanager
def atomic_directory(path: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it takes the place of ``path`` atomically. On any
    exception (also KeyboardInterrupt) it is removed and ``path`` is left as it was."""
    with staged_directory(path, force=force) as staging:
        yield staging.tmp


@contextmanager
def atomic_file(path: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling file path to write; on success it replaces ``path`` in one rename."""
    target = check_output(path, force=force)
    existed = os.path.lexists(target)
    tmp: Path | None = None
    try:
        with _prepared(target, force=force):
            fd, name = tempfile.mkstemp(prefix=f".{target.name}{TEMPORARY_INFIX}", dir=target.parent)
            os.close(fd)
            tmp = Path(name)
            yield tmp
            tmp.chmod(_usual_mode(0o666))
            fault_point("replace:before", target)
            os.replace(tmp, target)
    except BaseException as error:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        failure = _write_failure(error, target, tmp, kept=existed)
        if failure is None:
            raise
        raise failure from error


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
        if os.path.lexists(target) and not force:
            raise OutputExistsError(f"output {str(target)!r} exists; choose another path or pass --force")
        yield


def clear_litter(target: Path) -> list[Path]:
    """Remove the temporary siblings of killed writers of ``target`` and put back a ``.NAME.old`` that a crash
    between two renames left without its replacement. Call it holding the path's lock. Returns what it removed."""
    pattern = re.compile(re.escape(f".{target.name}{TEMPORARY_INFIX}") + r"[a-z0-9_]{8}$")
    old = target.with_name(f".{target.name}{OLD_SUFFIX}")
    if os.path.lexists(old) and not os.path.lexists(target):
        old.rename(target)
    removed = [p for p in target.parent.iterdir() if pattern.match(p.name)]
    if os.path.lexists(old):
        removed.append(old)
    for p in removed:
        _remove(p)
    return removed


def _remove(path: Path) -> None:
    """Remove what is at ``path``: a directory with its content, a file, or a symbolic link, never its target."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _put_in_place(tmp: Path, target: Path) -> None:
    """Put the directory ``tmp`` at ``target`` and remove what was there: a directory, a file, or a symbolic link
    itself (replaced, as ``mv`` replaces one, its target untouched)."""
    if not os.path.lexists(target):
        os.rename(tmp, target)
    elif _exchange(tmp, target):
        fault_point("replace:exchanged", target)
        _remove(tmp)  # the old content
    else:
        old = target.with_name(f".{target.name}{OLD_SUFFIX}")
        os.rename(target, old)
        fault_point("replace:between-renames", target)
        os.rename(tmp, target)
        _remove(old)


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
