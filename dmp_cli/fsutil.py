"""Write, verify, rename: how every file dmp writes comes into being."""

from __future__ import annotations

import errno
import os
import tempfile
from types import TracebackType
from typing import BinaryIO

from dmp_cli.errors import DmpError


def dir_prefix(directory: str) -> str:
    """``directory`` ending in one "/": with a name (no "/" in it) or a relative path
    added, os.path.join's result, at a tenth of its cost (walks and workers join a path
    a file)."""
    return directory if directory.endswith("/") else directory + "/"


def temp_beside(target: str) -> tuple[int, str]:
    """A new temporary file in the target's directory (so the final rename stays on one
    filesystem), hidden and clearly dmp's."""
    directory, name = os.path.split(target)
    return tempfile.mkstemp(prefix=f".{name[:100]}.", suffix=".dmp-tmp", dir=directory or ".")


def link_no_clobber(source: str, target: str) -> None:
    """Move ``source`` to ``target`` unless ``target`` exists; raises FileExistsError then."""
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno not in (
            errno.EPERM,
            errno.ENOTSUP,
            errno.EOPNOTSUPP,
            errno.EXDEV,
            errno.EMLINK,
        ):
            raise
        # No hard links here (some FUSE and object-store mounts): claim the name first.
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        os.replace(source, target)
        return
    os.unlink(source)


class AtomicFile:
    """A file that appears complete at ``target`` on commit, or not at all.

    The temporary file is made at once, so that an unwritable target fails before any
    work is done; ``commit`` never replaces a file that appeared meanwhile.
    """

    def __init__(self, target: str, mode: int = 0o666) -> None:
        self.target = target
        fd, self.temp = temp_beside(target)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, mode & ~umask)
        self.stream: BinaryIO = os.fdopen(fd, "wb", buffering=1 << 20)

    def commit(self) -> None:
        self.stream.flush()
        os.fsync(self.stream.fileno())
        self.stream.close()
        try:
            link_no_clobber(self.temp, self.target)
        except FileExistsError:
            self.abort()
            raise DmpError(
                f"{self.target}: File exists (appeared while it was being written; left untouched)"
            ) from None

    def abort(self) -> None:
        if not self.stream.closed:
            self.stream.close()
        try:
            os.unlink(self.temp)
        except FileNotFoundError:
            pass

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
