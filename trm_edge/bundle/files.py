"""A bundle's files as an untrusted reader must take them: confined to the bundle directory, from one directory.

A bundle is copied, downloaded and replaced in place, so its manifest is untrusted input. The rule every reader
applies (docs/bundle-format.md, "Reading a bundle"), checked before a file is opened:

- a name the manifest gives is a relative POSIX path of plain components: no ``..`` or ``.``, no empty component,
  no leading ``/``, no backslash, no NUL;
- it resolves inside the bundle directory: a symbolic link is followed only while it stays inside;
- it is a regular file (not a directory, FIFO or device).

Every file is opened relative to one descriptor of the bundle directory, taken when reading starts. trm-edge's
writers replace a bundle as a whole directory (``trm_edge.io``), so the files read through one descriptor all come
from one bundle, the old one or the new one. A file that vanishes meanwhile (the old directory being removed after
a swap) raises :class:`BundleChanged`, which ``load_bundle`` answers by reading the bundle again.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
from pathlib import Path
from typing import Union

from trm_edge.errors import BundleError

Contents = Union[bytes, mmap.mmap]  # a file's bytes: read whole, or mapped (the puzzle table: up to GBs)
_MAX_LINKS = 40  # symbolic links followed in one name, as Linux's ELOOP limit
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


class BundleChanged(BundleError):
    """The bundle directory was replaced (or a file in it removed) while it was being read."""


class MissingFile(BundleError):
    """A file the manifest names is not in the bundle."""


def check_name(name: object, *, where: str) -> str:
    """``name`` if it is a plain relative name of a file inside a bundle (see the module docstring)."""
    if not isinstance(name, str) or not name:
        raise BundleError(f"{where}: file name {name!r} is not a non-empty string")
    if "\x00" in name or "\\" in name or name.startswith("/") or not _encodable(name) or any(
            part in ("", ".", "..") for part in name.split("/")):
        raise BundleError(f"{where}: file name {name!r} is not a plain relative name inside the bundle "
                          "(no '..', '.', empty part, absolute path, backslash, NUL or lone surrogate)")
    return name


def _encodable(name: str) -> bool:
    """A name the file system can be asked for (a lone surrogate from JSON's \\ud800 is not)."""
    try:
        os.fsencode(name)
    except UnicodeEncodeError:
        return False
    return True


class BundleDirectory:
    """Read-only access to the files of one bundle directory, through one descriptor of it (a context manager)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.real = os.path.realpath(self.root)
        try:
            self._fd = os.open(self.real, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except FileNotFoundError:
            raise BundleError(f"bundle {str(self.root)!r} does not exist") from None
        except NotADirectoryError:
            raise BundleError(f"bundle {str(self.root)!r} is not a directory") from None
        except OSError as error:
            raise BundleError(f"bundle {str(self.root)!r} cannot be opened: {error.strerror}") from None
        self._identity = _identity(os.fstat(self._fd))

    def __enter__(self) -> BundleDirectory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def replaced(self) -> bool:
        """The bundle's path now names another directory than the one being read (or none)."""
        try:
            return _identity(os.stat(self.real)) != self._identity
        except OSError:
            return True

    def read(self, name: str) -> bytes:
        fd = self._open(name)
        try:
            with os.fdopen(fd, "rb", closefd=False) as handle:
                return handle.read()
        finally:
            os.close(fd)

    def map(self, name: str) -> Contents:
        """The file mapped read-only (its pages are read when used), or its bytes when it is empty."""
        fd = self._open(name)
        try:
            if os.fstat(fd).st_size == 0:
                return b""
            return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)

    def _open(self, name: str) -> int:
        where = f"bundle {str(self.root)!r}"
        inside = self._resolve(check_name(name, where=where), where=where)
        try:
            fd = os.open(inside, _OPEN_FLAGS, dir_fd=self._fd)
        except FileNotFoundError:
            raise self._missing(name) from None
        except OSError as error:
            raise BundleError(f"{where}: {name!r} cannot be read: {error.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise BundleError(f"{where}: {name!r} is not a regular file")
        return fd

    def _resolve(self, name: str, *, where: str) -> str:
        """``name`` with its symbolic links followed, as a link-free path relative to the bundle directory; a link
        that leads outside the bundle is refused before anything it points at is opened."""
        pending, done, links = name.split("/"), [], 0
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if not done:
                    raise _outside(name, where)
                done.pop()
                continue
            try:
                target = os.readlink("/".join([*done, part]), dir_fd=self._fd)
            except FileNotFoundError:
                raise self._missing(name) from None
            except OSError as error:
                if error.errno != errno.EINVAL:  # EINVAL: not a symbolic link
                    raise BundleError(f"{where}: {name!r} cannot be read: {error.strerror}") from None
                done.append(part)
                continue
            links += 1
            if links > _MAX_LINKS:
                raise BundleError(f"{where}: {name!r} goes through more than {_MAX_LINKS} symbolic links")
            if os.path.isabs(target):
                if os.path.commonpath([self.real, target]) != self.real:
                    raise _outside(name, where)
                done, target = [], os.path.relpath(target, self.real)
            pending[:0] = target.split("/")
        return "/".join(done) or "."

    def _missing(self, name: str) -> BundleError:
        if self.replaced:
            return BundleChanged(f"{name!r} vanished while it was read")
        return MissingFile(f"bundle {str(self.root)!r} is incomplete: {name!r} is missing")


def _outside(name: str, where: str) -> BundleError:
    return BundleError(f"{where}: {name!r} leads outside the bundle directory (a symbolic link out of it); a bundle "
                       "holds its files itself: copy it with `cp -rL` to replace links by the files")


def _identity(status: os.stat_result) -> tuple[int, int]:
    return status.st_dev, status.st_ino
