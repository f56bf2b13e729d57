"""Putting recorded metadata back, as ``tar -xp`` does.

A fetched file gets its owner (as root), mode and times on its open descriptor, before it
is linked into place (``apply_fd``), wherever it is written: in this process or on a
worker. Symbolic links and directories come at the end of the run, in this process
(``restore_tree``): links are made as links, never followed, and no later write goes
through one (every directory on the way is opened without following links); directories
are made, and their modes and times set last, deepest first, after their contents.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import stat
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from dmp_cli.errors import DmpError, PathRefused
from dmp_cli.fsutil import is_link_at, open_parent, target_parts
from dmp_cli.meta import Record, get_name, mode_of
from dmp_cli.options import Options

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def owners_settable() -> bool:
    """Only root gives files away (as tar does by default only for root)."""
    return os.geteuid() == 0


def _ids(meta: dict[str, Any], by_name: bool) -> tuple[int, int]:
    """The owner and group to give: by number, or by name where both ask for it and
    this system knows the name (else by number, as tar does)."""
    uid, gid = int(meta["uid"]), int(meta["gid"])
    if by_name:
        with contextlib.suppress(KeyError, TypeError):
            uid = pwd.getpwnam(meta["user"]).pw_uid
        with contextlib.suppress(KeyError, TypeError):
            gid = grp.getgrnam(meta["group"]).gr_gid
    return uid, gid


def apply_fd(fd: int, meta: dict[str, Any], options: Options) -> None:
    """A file's or directory's recorded owner (as root), mode and mtime, on its open
    descriptor. The owner goes first: a chown clears the set-id bits that the mode
    then sets."""
    if owners_settable():
        os.fchown(fd, *_ids(meta, options.owner_names))
    os.fchmod(fd, mode_of(meta))
    mtime = int(meta["mtime_ns"])
    os.utime(fd, ns=(os.fstat(fd).st_atime_ns, mtime))


def apply_at(dir_fd: int, name: str, meta: dict[str, Any], options: Options) -> None:
    """``apply_fd`` on the regular file ``name`` in ``dir_fd``, never through a link."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PathRefused("exists and is not a regular file")
        apply_fd(fd, meta, options)
    finally:
        os.close(fd)


def is_link(meta: dict[str, Any] | None) -> bool:
    """An entry recorded as a symbolic link: made as a link at the end of the run."""
    return meta is not None and meta.get("type") == "link"


@dataclass
class TreeCounts:
    links: int = 0
    dirs: int = 0
    failed: int = 0


def restore_tree(
    records: Iterable[Record],
    options: Options,
    on_problem: Callable[[str, str], None],
) -> TreeCounts:
    """The links and directories of a companion, after its files: links made, missing
    directories made, then every directory's owner, mode and times, deepest first.
    Each failure is told to ``on_problem`` (path, reason) and counted."""
    counts = TreeCounts()
    dirs: list[tuple[str, Record]] = []
    for rec in records:
        path = get_name(rec, "path")
        try:
            parts = _parts(path, options)
            if rec["type"] == "link":
                _link(parts, rec, options)
                counts.links += 1
            elif rec["type"] == "dir":
                _with_dir(parts, lambda fd: None, make=True)
                dirs.append((path, rec))
        except (OSError, DmpError) as exc:
            counts.failed += 1
            on_problem(path, _reason(exc))
    for path, rec in reversed(dirs):
        try:
            parts = _parts(path, options)
            _with_dir(parts, partial(apply_fd, meta=rec, options=options), make=False)
            counts.dirs += 1
        except (OSError, DmpError) as exc:
            counts.failed += 1
            on_problem(path, _reason(exc))
    return counts


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, DmpError):
        return exc.strerror or str(exc)
    return str(exc)


def _parts(path: str, options: Options) -> list[str]:
    """The path's components by tar's rules; ``[]`` for the working directory itself."""
    if os.path.normpath(path) == ".":
        return []
    return target_parts(path, options.absolute_names)


def _parent(parts: list[str]) -> int:
    fd = open_parent(parts, make=True)
    assert fd is not None
    return fd


def _with_dir(parts: list[str], use: Callable[[int], None], make: bool) -> None:
    """``use`` a descriptor of the directory ``parts`` names (made if ``make``), opened
    without following a link anywhere on the way."""
    if not parts:
        fd = os.open(".", _DIR_FLAGS)
    else:
        parent = _parent(parts)
        try:
            if make:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(parts[-1], 0o700, dir_fd=parent)
            try:
                fd = os.open(parts[-1], _DIR_FLAGS, dir_fd=parent)
            except OSError as exc:
                if is_link_at(parent, parts[-1]):
                    raise PathRefused("is a symbolic link; dmp does not write through it") from None
                raise exc
        finally:
            os.close(parent)
    try:
        use(fd)
    finally:
        os.close(fd)


def _link(parts: list[str], rec: Record, options: Options) -> None:
    """The link ``rec`` records, made as a link (its target is data, never followed);
    one already there with the same target is left, anything else only replaced with
    --overwrite."""
    if not parts:
        raise PathRefused("not a file name")
    target, name = get_name(rec, "target"), parts[-1]
    parent = _parent(parts)
    try:
        try:
            os.symlink(target, name, dir_fd=parent)
        except FileExistsError:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            same = stat.S_ISLNK(st.st_mode) and os.readlink(name, dir_fd=parent) == target
            if not same:
                if not options.overwrite:
                    raise PathRefused(
                        "exists and is not the recorded symbolic link; "
                        "use --overwrite to replace it"
                    ) from None
                temp = f".{name[:100]}.{uuid.uuid4().hex[:8]}.dmp-tmp"
                os.symlink(target, temp, dir_fd=parent)
                try:  # a rename replaces a link or file itself, never what it points to
                    os.rename(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(temp, dir_fd=parent)
                    raise
        if owners_settable():
            os.chown(name, *_ids(rec, options.owner_names), dir_fd=parent, follow_symlinks=False)
        mtime = int(rec["mtime_ns"])
        os.utime(name, ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)
    finally:
        os.close(parent)


__all__ = ["TreeCounts", "apply_at", "apply_fd", "is_link", "restore_tree"]
