"""The directories a worker's jobs may touch (DMP_ALLOWED_ROOTS), and paths resolved
beneath them without a symbolic link planted on the way taking them elsewhere.

A path is allowed when it is named beneath a root (as the root resolves: the roots are
the site's, trusted, and resolved once) and resolves there, one component at a time, with
no symbolic link on the way. Any link among the directories is refused, whether it leads
out or stays inside: the kernel's ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`` where
there is one, else a walk of ``O_PATH | O_NOFOLLOW`` descriptors, and both answer alike.
The last component may be a link only where the job would not follow it
(``follow_final=False``). ``..`` is taken on the way, and refused where it climbs above
the root. A path that does not exist yet (a fetch's target) is judged by its deepest
existing directory, and the names after it, which may not hold ``..``.

``check`` answers before the work; ``open_beneath`` opens by the same resolution, for a
caller that would not leave time between the answer and its use.
"""

from __future__ import annotations

import ctypes
import errno
import os
import posixpath
import stat
from collections.abc import Iterable

from dmp_cli.errors import PathRefused, UsageError

SETTING = "DMP_ALLOWED_ROOTS"

# openat2(2): its number is the same on every architecture's table (Linux 5.6 and later).
_SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
_RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
# What openat2 fails with where it cannot be used: no such call (ENOSYS), a seccomp
# filter that refuses it (EPERM), a kernel that knows none of these flags (EINVAL).
_NO_OPENAT2 = frozenset({errno.ENOSYS, errno.EPERM, errno.EINVAL})
# RESOLVE_BENEATH says EAGAIN when a rename raced its "..": the lookup is tried again.
_RETRIES = 8
_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


def parse_roots(value: str) -> tuple[str, ...]:
    """The roots DMP_ALLOWED_ROOTS names (colon-separated), each resolved: an entry that is
    not an absolute path to a directory is a usage error naming it. An empty value names
    none."""
    if not value.strip():
        return ()
    roots: list[str] = []
    for entry in value.split(":"):
        if not entry.startswith("/"):
            what = repr(entry) if entry else "an empty entry"
            raise UsageError(f"{SETTING} must name absolute directories, not {what}")
        try:
            real = os.path.realpath(entry, strict=True)
            is_dir = stat.S_ISDIR(os.stat(real).st_mode)
        except OSError as exc:
            raise UsageError(f"{SETTING}: {entry}: {exc.strerror or exc}") from None
        if not is_dir:
            raise UsageError(f"{SETTING}: {entry}: not a directory")
        if real not in roots:
            roots.append(real)
    return tuple(roots)


class AllowedRoots:
    """Paths judged, and opened, beneath ``roots`` (absolute, resolved: ``parse_roots``).

    ``use_openat2`` chooses the resolution: None uses openat2 where the kernel has it
    (learned once), False always walks (how the tests reach the fallback)."""

    def __init__(self, roots: Iterable[str], *, use_openat2: bool | None = None) -> None:
        self.roots = tuple(roots)
        if not all(root.startswith("/") for root in self.roots):
            raise ValueError(f"roots must be absolute: {self.roots}")
        self.use_openat2 = openat2_available() if use_openat2 is None else use_openat2
        # Longest first: of nested roots, the nearest judges first.
        self._parts = sorted(((r, _parts(r)) for r in self.roots), key=lambda p: -len(p[1]))

    def check(self, path: str, cwd: str, *, follow_final: bool = True) -> str | None:
        """None if ``path`` (relative ones from ``cwd``) is allowed, else one line saying
        why not. Where the job would not follow a link at the end (it records or replaces
        the link), ``follow_final=False`` lets the last component be one."""
        flags = os.O_PATH if follow_final else os.O_PATH | os.O_NOFOLLOW
        try:
            os.close(self._open(path, cwd, flags, 0, missing=True))
        except PathRefused as exc:
            return str(exc)
        except OSError as exc:
            return f"{_shown(path)}: {exc.strerror or exc}"
        return None

    def open_beneath(self, path: str, cwd: str, flags: int, mode: int = 0o666) -> int:
        """A descriptor of ``path`` opened with ``flags`` (O_CLOEXEC added) where ``check``
        would allow it, no link followed, the last component included (with O_PATH |
        O_NOFOLLOW, a link there is opened itself). PathRefused with ``check``'s line if
        not allowed; the OSError of the open if it fails (FileNotFoundError, ...)."""
        return self._open(path, cwd, flags | os.O_CLOEXEC, mode, missing=False)

    def _open(self, path: str, cwd: str, flags: int, mode: int, *, missing: bool) -> int:
        shown = _shown(path)
        if not path or "\0" in path:
            raise PathRefused(f"{shown}: not a path")
        full = path if path.startswith("/") else posixpath.join(cwd, path)
        if not full.startswith("/"):
            full = posixpath.join(os.getcwd(), full)
        names = _parts(full)
        refusal = f"{shown}: outside the allowed roots ({', '.join(self.roots)})"
        for root, root_names in self._parts:
            if names[: len(root_names)] != root_names:
                continue
            try:
                return self._open_in(root, names[len(root_names) :], flags, mode, missing)
            except _Escape:
                continue
            except _Link as link:
                where = posixpath.join(root, *link.names) if link.names else path
                refusal = f"{shown}: a symbolic link on the way ({_shown(where)})"
                break
            except _Missing as gap:
                refusal = f"{shown}: '..' after {_shown(posixpath.join(root, *gap.names))}"
                refusal += ", which does not exist"
                break
        raise PathRefused(refusal)

    def _open_in(self, root: str, names: list[str], flags: int, mode: int, missing: bool) -> int:
        """``names`` opened beneath ``root``; where they do not all exist and ``missing``,
        their deepest existing directory instead."""
        root_fd = os.open(root, _DIR)
        try:
            try:
                return self._resolve(root_fd, names, flags, mode)
            except FileNotFoundError:
                if not missing:
                    raise
            for depth in range(len(names) - 1, -1, -1):
                try:
                    fd = self._resolve(root_fd, names[:depth], _DIR, 0)
                except FileNotFoundError:
                    continue
                if ".." in names[depth:]:
                    os.close(fd)
                    raise _Missing(names[: depth + 1])
                return fd
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), root)
        finally:
            os.close(root_fd)

    def _resolve(self, root_fd: int, names: list[str], flags: int, mode: int) -> int:
        if not self.use_openat2:
            return _walk(root_fd, names, flags, mode)
        try:
            return _openat2(root_fd, "/".join(names) or ".", flags, mode, _RESOLVE)
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                raise _Escape from None
            if exc.errno == errno.ELOOP:
                raise _Link(_link_in(root_fd, names)) from None
            raise


class _Escape(Exception):
    """``..`` climbed above the root."""


class _Link(Exception):
    """A symbolic link on the way: ``names``, the path to it beneath the root."""

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = names


class _Missing(Exception):
    """``..`` after ``names``, the first that does not exist."""

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = names


def _parts(path: str) -> list[str]:
    # "." and empty components name nothing; ".." stays, for the resolution to take.
    return [name for name in path.split("/") if name not in ("", ".")]


def _shown(path: str) -> str:
    # one line, whatever the name holds
    return path if path.isprintable() else repr(path)


def _walk(root_fd: int, names: list[str], flags: int, mode: int) -> int:
    """The fallback: each directory opened O_PATH | O_NOFOLLOW in the one before, a link
    refused; ``..`` goes back to the directory the walk came from, never above the root.
    The last component is opened with O_NOFOLLOW, a link there refused unless ``flags``
    ask for the link itself (O_PATH | O_NOFOLLOW): what RESOLVE_NO_SYMLINKS does."""
    last = names[-1] if names and names[-1] != ".." else "."
    stack = [os.dup(root_fd)]
    try:
        for index, name in enumerate(names if last == "." else names[:-1]):
            if name == "..":
                if len(stack) == 1:
                    raise _Escape
                os.close(stack.pop())
                continue
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
            kind = os.fstat(fd).st_mode
            if not stat.S_ISDIR(kind):
                os.close(fd)
                if stat.S_ISLNK(kind):
                    raise _Link(names[: index + 1])
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), name)
            stack.append(fd)
        try:
            fd = os.open(last, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=stack[-1])
        except OSError as exc:
            # A link there says ELOOP, or with O_DIRECTORY ENOTDIR (unless not followed).
            followed = exc.errno == errno.ENOTDIR and not flags & os.O_NOFOLLOW
            if exc.errno == errno.ELOOP or (followed and _is_link(last, stack[-1])):
                raise _Link(names) from None
            raise
        if flags & os.O_PATH and not flags & os.O_NOFOLLOW and stat.S_ISLNK(os.fstat(fd).st_mode):
            os.close(fd)
            raise _Link(names)
        return fd
    finally:
        for fd in stack:
            os.close(fd)


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _link_in(root_fd: int, names: list[str]) -> list[str]:
    """Where the link is that openat2 refused (it does not say): the walk finds it."""
    try:
        os.close(_walk(root_fd, names, os.O_PATH, 0))
    except _Link as link:
        return link.names
    except (OSError, _Escape):
        pass
    return []


# ---------------------------------------------------------------- openat2 through ctypes


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


_libc: ctypes.CDLL | None = None
_openat2_usable: bool | None = None


def _openat2(dir_fd: int, path: str, flags: int, mode: int, resolve: int) -> int:
    """openat2(2): a descriptor, or the OSError it failed with."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    # The kernel refuses a mode unless a file may be created.
    creates = flags & os.O_CREAT or flags & os.O_TMPFILE == os.O_TMPFILE
    how = _OpenHow(flags | os.O_CLOEXEC, mode if creates else 0, resolve)
    encoded = os.fsencode(path)
    for _ in range(_RETRIES):
        fd = _libc.syscall(
            ctypes.c_long(_SYS_OPENAT2),
            ctypes.c_int(dir_fd),
            ctypes.c_char_p(encoded),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return int(fd)
        code = ctypes.get_errno()
        if code not in (errno.EAGAIN, errno.EINTR):
            break
    raise OSError(code, os.strerror(code), path)


def openat2_available() -> bool:
    """Whether this kernel (and its seccomp filter) lets openat2 resolve beneath a
    directory: asked once, by opening "/" beneath itself."""
    global _openat2_usable
    if _openat2_usable is None:
        try:
            root_fd = os.open("/", _DIR)
        except OSError:
            return False
        try:
            os.close(_openat2(root_fd, ".", _DIR, 0, _RESOLVE))
            _openat2_usable = True
        except (AttributeError, OSError) as exc:  # AttributeError: no syscall() in libc
            if isinstance(exc, AttributeError) or exc.errno in _NO_OPENAT2:
                _openat2_usable = False
            else:
                return False  # something passing (no descriptor free): ask again later
        finally:
            os.close(root_fd)
    return _openat2_usable
