"""Putting recorded metadata back, as ``tar -xp --xattrs --acls`` does.

A fetched file gets its owner (as root), extended attributes (POSIX ACLs among them), mode
and times on its open descriptor, before it is linked into place (``apply_fd``), wherever
it is written: in this process or on a worker. Symbolic links and directories come at the
end of the run, in this process (``restore_tree``): links are made as links, never
followed, and no later write goes through one (every directory on the way is opened
without following links); names recorded as hard links of one file that are still files
of their own (their first name was not in place when they were written) are linked to it
if their contents are the same; directories are made, and their metadata set last,
deepest first, after their contents.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import grp
import os
import pwd
import stat
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from dmp_cli.errors import DmpError, PathRefused
from dmp_cli.fsutil import is_link_at, open_parent, target_parts
from dmp_cli.meta import Record, get_name, hard_link_key, mode_of
from dmp_cli.options import Options
from dmp_cli.quoting import quote_name

T = TypeVar("T")

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


class AttributesRefused(DmpError):
    """Extended attributes (or ACLs) the target refused to take: everything else of the
    entry, its content included, is in place."""


# POSIX ACLs as Linux keeps them: extended attributes of these names.
ACLS = ("system.posix_acl_access", "system.posix_acl_default")


def apply_fd(fd: int, meta: dict[str, Any], options: Options) -> str | None:
    """A file's or directory's recorded owner (as root), extended attributes, mode and
    mtime, on its open descriptor; what the target refused of the attributes, in words
    (None if nothing). The owner goes first (a chown clears the set-id bits and file
    capabilities), the mode after the ACLs: a chmod then sets the owner, mask and other
    entries to the recorded mode's bits, which are the recorded ACL's, so both come back
    as recorded whatever order the kernel derives one from the other in."""
    if owners_settable():
        os.fchown(fd, *_ids(meta, options.owner_names))
    refused = set_xattrs(fd, meta.get("xattrs"))
    os.fchmod(fd, mode_of(meta))
    mtime = int(meta["mtime_ns"])
    os.utime(fd, ns=(os.fstat(fd).st_atime_ns, mtime))
    return refused


def set_xattrs(fd: int, xattrs: dict[str, str] | None) -> str | None:
    """The recorded extended attributes (``None``: a companion older than their
    recording, which leaves the file's alone), each set on its own: one the target
    refuses (no support for it, ``trusted.*`` when not root) does not keep the others
    back. An ACL the file has and the record has not (inherited from a directory's
    default ACL) is removed, as ``tar --acls`` does. What was refused, in words."""
    if xattrs is None:
        return None
    refused: list[tuple[str, str]] = []
    for name, value in xattrs.items():
        try:
            os.setxattr(fd, name, base64.b64decode(value))
        except OSError as exc:
            refused.append((name, exc.strerror or str(exc)))
    try:
        there = os.listxattr(fd)
    except OSError:
        there = []  # none kept here: no ACL to remove either
    for name in ACLS:
        if name in there and name not in xattrs:
            try:
                os.removexattr(fd, name)
            except OSError as exc:
                if exc.errno != errno.ENODATA:
                    refused.append((name, f"not removed: {exc.strerror or exc}"))
    return refused_words(refused) if refused else None


def refused_words(refused: list[tuple[str, str]]) -> str:
    """``extended attribute trusted.a not restored: Operation not permitted``, or the
    same of several (by reason, where they differ)."""
    reasons = {reason for _, reason in refused}
    names = ", ".join(name for name, _ in refused)
    if len(reasons) == 1:
        what = "extended attribute" if len(refused) == 1 else "extended attributes"
        return f"{what} {names} not restored: {reasons.pop()}"
    listed = ", ".join(f"{name} ({reason})" for name, reason in refused)
    return f"extended attributes not restored: {listed}"


def apply_at(dir_fd: int, name: str, meta: dict[str, Any], options: Options) -> str | None:
    """``apply_fd`` on the regular file ``name`` in ``dir_fd``, never through a link."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PathRefused("exists and is not a regular file")
        return apply_fd(fd, meta, options)
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
    directories made, names recorded as hard links of one file linked to it where they
    are not yet, then every directory's owner, attributes, mode and times, deepest first.
    Each failure is told to ``on_problem`` (path, reason) and counted."""
    counts = TreeCounts()
    dirs: list[tuple[str, Record]] = []
    firsts: dict[tuple[int, int], str] = {}  # hard-linked files only: (dev, ino) -> name
    later: list[tuple[str, str]] = []
    for rec in records:
        path = get_name(rec, "path")
        key = hard_link_key(rec)
        if key is not None:
            first = firsts.setdefault(key, path)
            if first != path:
                later.append((path, first))
            continue
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
    for path, first in later:  # before the directories' times: a link changes them
        try:
            _hard_link(_parts(first, options), _parts(path, options), first)
        except (OSError, DmpError) as exc:
            counts.failed += 1
            on_problem(path, _reason(exc))
    for path, rec in reversed(dirs):
        try:
            parts = _parts(path, options)
            apply = partial(apply_fd, meta=_dir_meta(rec), options=options)
            refused = _with_dir(parts, apply, make=False)
            if refused is not None:
                raise AttributesRefused(refused)
            counts.dirs += 1
        except (OSError, DmpError) as exc:
            counts.failed += 1
            on_problem(path, _reason(exc))
    return counts


def _dir_meta(rec: Record) -> Record:
    """A directory's record as ``apply_fd`` takes it: from format version 2 on, with its
    extended attributes (none recorded: none kept, an inherited ACL removed)."""
    if "ino" in rec and "xattrs" not in rec:
        return {**rec, "xattrs": {}}
    return rec


def _hard_link(first: list[str], parts: list[str], first_path: str) -> None:
    """The name ``parts``, recorded as a hard link of ``first``, made one if it is a file
    of its own (written while its first name was not yet in place) with the same content:
    nothing is lost by that. A name that is missing is left so (its row said why); one
    whose first name is missing, or holds another content, stays as it is, and is told."""
    if not first or not parts:
        raise PathRefused("not a file name")
    not_linked = f"not a hard link of {quote_name(first_path).decode('utf-8', 'surrogateescape')}"
    parent = open_parent(parts, make=False)
    if parent is None:
        return
    try:
        try:
            here = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        source = open_parent(first, make=False)
        if source is None:
            raise PathRefused(f"{not_linked} as recorded: that name is missing")
        try:
            try:
                there = os.stat(first[-1], dir_fd=source, follow_symlinks=False)
            except FileNotFoundError:
                raise PathRefused(f"{not_linked} as recorded: that name is missing") from None
            if (there.st_dev, there.st_ino) == (here.st_dev, here.st_ino):
                return  # linked already
            if not (stat.S_ISREG(here.st_mode) and stat.S_ISREG(there.st_mode)):
                raise PathRefused(f"{not_linked} as recorded: not both regular files")
            if not _same_content(source, first[-1], parent, parts[-1]):
                raise PathRefused(f"{not_linked} as recorded: their contents differ")
            _replace_by_link(source, first[-1], there, parent, parts[-1])
        finally:
            os.close(source)
    finally:
        os.close(parent)


def _same_content(dir_a: int, a: str, dir_b: int, b: str) -> bool:
    """Whether two regular files hold the same bytes (neither opened through a link)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd_a = os.open(a, flags, dir_fd=dir_a)
    try:
        fd_b = os.open(b, flags, dir_fd=dir_b)
        try:
            if os.fstat(fd_a).st_size != os.fstat(fd_b).st_size:
                return False
            offset = 0
            while True:
                mine, theirs = os.pread(fd_a, 1 << 20, offset), os.pread(fd_b, 1 << 20, offset)
                if mine != theirs:
                    return False
                if not mine:
                    return True
                offset += len(mine)
        finally:
            os.close(fd_b)
    finally:
        os.close(fd_a)


def link_beside(
    src_dir: int, src: str, expect: os.stat_result, dir_fd: int, name: str
) -> str | None:
    """A new temporary name beside ``name`` in ``dir_fd`` for the file ``src`` (in
    ``src_dir``), if it is still the file ``expect`` describes; else None (no link left)."""
    temp = f".{name[:100]}.{uuid.uuid4().hex[:8]}.dmp-tmp"
    os.link(src, temp, src_dir_fd=src_dir, dst_dir_fd=dir_fd, follow_symlinks=False)
    now = os.stat(temp, dir_fd=dir_fd, follow_symlinks=False)
    if (now.st_dev, now.st_ino) != (expect.st_dev, expect.st_ino):
        os.unlink(temp, dir_fd=dir_fd)
        return None
    return temp


def _replace_by_link(
    src_dir: int, src: str, expect: os.stat_result, dir_fd: int, name: str
) -> None:
    temp = link_beside(src_dir, src, expect, dir_fd, name)
    if temp is None:
        raise PathRefused("not linked as recorded: its first name changed meanwhile")
    try:  # a rename replaces the name itself, never what it points to
        os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise


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


def _with_dir(parts: list[str], use: Callable[[int], T], make: bool) -> T:
    """``use`` a descriptor of the directory ``parts`` names (made if ``make``), opened
    without following a link anywhere on the way; what it returns."""
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
        return use(fd)
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


__all__ = [
    "ACLS",
    "AttributesRefused",
    "TreeCounts",
    "apply_at",
    "apply_fd",
    "is_link",
    "link_beside",
    "restore_tree",
]
