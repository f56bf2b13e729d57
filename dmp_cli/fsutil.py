"""Write, verify, rename: how every file dmp writes comes into being, and where it may go."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import os
import posixpath
import stat
import tempfile
import uuid
from types import TracebackType
from typing import BinaryIO

from dmp_cli.errors import DmpError, PathRefused


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


# Set to anything but "" or "0", files are written through named temporaries even where
# the filesystem offers unnamed ones (how the tests reach the fallback).
NAMED_TEMPORARIES = "DMP_NAMED_TEMPORARIES"
# What open(O_TMPFILE) fails with where the filesystem lacks it: EOPNOTSUPP (NFS, some
# Lustre and GPFS), EISDIR (a kernel that reads the flag as O_DIRECTORY alone), EINVAL.
_NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})
# Named temporaries a target may have at once: writers of one target at the same time
# (a batch redelivered while its first run still lives) are rare, so a few suffice.
SLOTS = 4


def unnamed_temporaries() -> bool:
    """Whether to try O_TMPFILE first: Linux, with /proc to link the file from."""
    return os.environ.get(NAMED_TEMPORARIES, "") in ("", "0") and _can_link_unnamed()


@functools.cache
def _can_link_unnamed() -> bool:
    return hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")


class PendingFile:
    """A file being written in a directory that takes its name only when complete.

    Where the filesystem can, it is unnamed (O_TMPFILE) until ``publish``: a process
    killed while writing leaves nothing at all. Elsewhere it is a named temporary,
    ``.NAME.xxxxxxxx.dmp-tmp``, held under an flock by its writer for as long as it
    lives; its name is one of a few that follow from NAME, so the next writer of the
    target finds the temporaries of writers that died (their lock free) and removes
    them. A temporary whose lock is held, or cannot be asked about, is never touched.

    ``fd`` is open for reading and writing; ``close`` discards what was not published.
    """

    def __init__(self, dir_fd: int, name: str, mode: int = 0o666, *, own_dir: bool = False):
        self.dir_fd, self.name = dir_fd, name
        self._own_dir = own_dir
        self.temp: str | None = None  # the name while pending, if it has one
        self._published = False
        fd = _unnamed(dir_fd, mode) if unnamed_temporaries() else None
        if fd is None:
            fd, self.temp = _named(dir_fd, name, mode)
        self.fd = fd

    @classmethod
    def beside(cls, target: str, mode: int = 0o666) -> PendingFile:
        """A pending file for the path ``target``, in its directory."""
        directory, name = os.path.split(target)
        dir_fd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return cls(dir_fd, name, mode, own_dir=True)
        except BaseException:
            os.close(dir_fd)
            raise

    def publish(self, replace: bool) -> None:
        """Give the written (and synced) file its name: with ``replace``, by a rename over
        whatever has the name (a link itself, never what it points to); else only if
        nothing has it, or FileExistsError."""
        if self.temp is None:
            source = f"/proc/self/fd/{self.fd}"
            if not replace:
                os.link(source, self.name, dst_dir_fd=self.dir_fd, follow_symlinks=True)
                self._published = True
                return
            # A rename needs a name to move: the file gets a temporary one first, held
            # under this descriptor's lock like any named temporary.
            _lock(self.fd)
            self.temp = _link_temporary(source, self.dir_fd, self.name)
        if replace:
            os.rename(self.temp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        else:
            _link_no_clobber_at(self.temp, self.name, self.dir_fd)
        self._published = True

    def close(self) -> None:
        try:
            if self.temp is not None and not self._published:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.temp, dir_fd=self.dir_fd)
        finally:
            os.close(self.fd)  # the lock goes with it
            if self._own_dir:
                os.close(self.dir_fd)

    def __enter__(self) -> PendingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _unnamed(dir_fd: int, mode: int) -> int | None:
    flags = os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC
    try:
        return os.open(".", flags, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in _NO_TMPFILE:
            return None
        raise


def temporary_names(name: str) -> list[str]:
    """The names a pending file of ``name`` may have: hidden, dmp's, and the same for
    every writer, so that each finds what the others left."""
    stem = f".{name[:100]}.{hashlib.sha256(os.fsencode(name)).hexdigest()[:7]}"
    return [f"{stem}{slot}.dmp-tmp" for slot in range(SLOTS)]


def clear_if_dead(temp: str, dir_fd: int) -> bool:
    """Remove the temporary ``temp`` if its writer is gone (its lock free); whether the
    name is free now. A live writer's file, a file that is not a regular file, and one
    whose lock cannot be asked about (no flock here) are left alone."""
    try:  # most often there is none: a cheap question first
        os.stat(temp, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return True
    try:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        fd = os.open(temp, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        held = os.fstat(fd)
        if not stat.S_ISREG(held.st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a live writer's (EWOULDBLOCK), or no telling: leave it
            return False
        try:
            now = os.stat(temp, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return True
        if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
            return False  # another writer's since we looked
        os.unlink(temp, dir_fd=dir_fd)
        return True
    finally:
        os.close(fd)


def _named(dir_fd: int, name: str, mode: int) -> tuple[int, str]:
    """A named temporary for ``name``, locked; the dead writers' ones cleared first."""
    free = [temp for temp in temporary_names(name) if clear_if_dead(temp, dir_fd)]
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for temp in [*free, _random_name(name)]:
        try:
            fd = os.open(temp, flags, mode, dir_fd=dir_fd)
        except FileExistsError:
            continue
        if _claim(fd):
            return fd, temp
        os.close(fd)
    raise FileExistsError(errno.EEXIST, f"no free temporary name beside {name}")


def _link_temporary(source: str, dir_fd: int, name: str) -> str:
    """Link the locked file ``source`` to a free temporary name of ``name``."""
    free = [temp for temp in temporary_names(name) if clear_if_dead(temp, dir_fd)]
    for temp in [*free, _random_name(name)]:
        try:
            os.link(source, temp, dst_dir_fd=dir_fd, follow_symlinks=True)
        except FileExistsError:
            continue
        return temp
    raise FileExistsError(errno.EEXIST, f"no free temporary name beside {name}")


def _random_name(name: str) -> str:
    # All the usual names taken by live writers: this one is left behind if its writer
    # dies, but only the stale-free usual names are ever looked for.
    return f".{name[:100]}.{uuid.uuid4().hex[:8]}.dmp-tmp"


def _lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:  # no flock on this filesystem: nobody can tell it from a dead one's,
        return False  # so nobody removes it (clear_if_dead leaves what it cannot lock)
    return True


def _claim(fd: int) -> bool:
    """Lock a temporary just made; False if a writer clearing dead ones removed it
    between its making and the lock (it found the lock free)."""
    _lock(fd)
    return os.fstat(fd).st_nlink > 0


def _link_no_clobber_at(source: str, target: str, dir_fd: int) -> None:
    """``link_no_clobber`` within one directory."""
    try:
        os.link(source, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        # No hard links here (some FUSE and object-store mounts): claim the name first.
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666, dir_fd=dir_fd))
        os.rename(source, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(source, dir_fd=dir_fd)


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


# ---------------------------------------------------------------- paths a run writes to
# A manifest's paths are data: a fetch or a restore writes only where tar would, and never
# through a symbolic link, whatever the manifest says.


def target_parts(path: str, absolute_names: bool) -> list[str]:
    """The path's components (an absolute path keeps "/" first), refused by tar's rule: no
    absolute path or ``..`` out of the working directory unless --absolute-names."""
    absolute = path.startswith("/")
    if absolute and not absolute_names:
        raise PathRefused("absolute path refused (use --absolute-names to allow it)")
    norm = posixpath.normpath(path)
    if not absolute and (norm == ".." or norm.startswith("../")) and not absolute_names:
        raise PathRefused("'..' leaves the working directory (use --absolute-names to allow it)")
    parts = [part for part in norm.split("/") if part]
    if not parts or parts[-1] in (".", ".."):
        raise PathRefused("not a file name")
    return (["/"] if absolute else []) + parts


def open_parent(parts: list[str], make: bool, cwd: str | None = None) -> int | None:
    """A descriptor of the target's directory, walked one component at a time without
    following symlinks from ``cwd`` (else this process's directory); missing directories
    are made (or, if not ``make``, None)."""
    start, parts = (parts[0], parts[1:]) if parts[0] == "/" else (cwd or ".", parts)
    fd = os.open(start, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    for index, part in enumerate(parts[:-1]):
        try:
            try:
                child = os.open(part, flags, dir_fd=fd)
            except FileNotFoundError:
                if not make:
                    os.close(fd)
                    return None
                _mkdir(part, fd)
                child = os.open(part, flags, dir_fd=fd)
        except OSError as exc:
            link = exc.errno in (errno.ELOOP, errno.ENOTDIR) and is_link_at(fd, part)
            os.close(fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                where = "/".join(parts[: index + 1])
                kind = "a symbolic link" if link else "not a directory"
                raise PathRefused(f"{where} is {kind}; dmp does not write through it") from None
            raise
        os.close(fd)
        fd = child
    return fd


def _mkdir(name: str, dir_fd: int) -> None:
    # It may have been made meanwhile by another thread fetching beside us.
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o777, dir_fd=dir_fd)


def is_link_at(dir_fd: int, name: str) -> bool:
    """Whether ``name`` in ``dir_fd`` is a symbolic link (not followed)."""
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False
