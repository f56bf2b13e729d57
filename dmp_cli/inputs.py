"""Turning what `--create` was given into the files to hash, in a deterministic order.

Patterns are expanded here, not by the shell: a cluster directory easily exceeds the
shell's argument limit. Walks are sorted by name and never descend symlinked directories.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter

from dmp_cli.fsutil import dir_prefix
from dmp_cli.rows import Item

OnProblem = Callable[[str, str], None]


@dataclass
class Inputs:
    """Everything `--create` can be given: names or patterns, directories, a list file;
    and an earlier manifest whose checksums are kept for the files unchanged since
    (``update``, ``dmp_cli.reuse``)."""

    patterns: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    recursive: bool = False
    files_from: str | None = None
    null_separated: bool = False
    update: str | None = None

    def given(self) -> bool:
        return bool(self.patterns or self.dirs or self.files_from)


def problem(path: str, reason: str, code: int | None = None) -> Item:
    """An input that cannot be hashed, as an item: its row says why, in its place."""
    item: Item = {"path": path, "problem": reason}
    if code is not None:
        item["errno"] = code
    return item


def _oserror(path: str, exc: OSError) -> Item:
    return problem(path, exc.strerror or str(exc), exc.errno)


def _file_item(path: str) -> Item:
    try:
        st = os.stat(path)
    except OSError as exc:
        return _oserror(path, exc)
    if stat.S_ISDIR(st.st_mode):
        return problem(path, "Is a directory (use --dir to include its files)")
    if not stat.S_ISREG(st.st_mode):
        return problem(path, "Not a regular file")
    return {"path": path, "size": st.st_size}


def _iglob(pattern: str) -> Iterator[str]:
    """``glob.iglob(pattern, recursive=True)``, except that ``**`` matches only real
    directories: a symlinked directory is neither matched nor descended, as in --recursive
    walks (so a link loop cannot make an expansion endless)."""
    dirname, basename = os.path.split(pattern)
    if not glob.has_magic(pattern):
        if os.path.lexists(pattern) if basename else os.path.isdir(dirname):
            yield pattern
        return
    parents: Iterable[str]
    if dirname and dirname != pattern and glob.has_magic(dirname):
        parents = (parent for parent in _iglob(dirname) if not parent or os.path.isdir(parent))
    else:
        parents = [dirname]
    for parent in parents:
        for name in _matches(parent, basename):
            yield os.path.join(parent, name) if parent else name


def _matches(parent: str, basename: str) -> Iterator[str]:
    directory = parent or os.curdir
    if basename == "**":
        if not parent or os.path.isdir(parent):
            yield ""  # zero directories
        yield from _subtree(directory)
    elif glob.has_magic(basename):
        hidden = basename.startswith(".")
        for name in _names(directory):
            if (hidden or not name.startswith(".")) and fnmatch.fnmatchcase(name, basename):
                yield name
    elif (
        os.path.lexists(os.path.join(directory, basename)) if basename else os.path.isdir(directory)
    ):
        yield basename


def _names(directory: str) -> list[str]:
    try:
        with os.scandir(directory) as scan:
            return [entry.name for entry in scan]
    except OSError:
        return []


def _subtree(directory: str) -> Iterator[str]:
    """Every name below ``directory`` that ``**`` matches, relative to it."""
    try:
        with os.scandir(directory) as scan:
            entries = list(scan)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):
            yield entry.name
            for name in _subtree(entry.path):
                yield os.path.join(entry.name, name)
        elif not entry.is_dir():  # a symlinked directory is skipped altogether
            yield entry.name


def _expand_pattern(pattern: str, on_no_match: OnProblem) -> Iterator[Item]:
    if not glob.has_magic(pattern) or os.path.lexists(pattern):
        yield _file_item(pattern)
        return
    matched = False
    for path in sorted({path for path in _iglob(pattern) if path}, key=os.fsencode):
        try:
            st = os.stat(path)
        except OSError as exc:
            yield _oserror(path, exc)
            continue
        if stat.S_ISREG(st.st_mode):
            matched = True
            yield {"path": path, "size": st.st_size}
    if not matched:
        on_no_match(pattern, "no regular file matches this pattern")


@dataclass
class Listing:
    """One directory's entries, sorted by name: (name, kind, detail), where kind is
    ``d`` (a real directory), ``f`` (a regular file, or a link to one; detail its size
    if asked for, else None), ``l`` (any other symbolic link: dangling, or to a
    directory) or ``x`` (an entry that could not be looked at; detail why); or, if the
    directory could not be listed, ``error`` and ``errno``."""

    entries: list[tuple[str, str, int | str | None]] = field(default_factory=list)
    error: str | None = None
    errno: int | None = None


def list_dir(directory: str, sizes: bool = False) -> Listing:
    """List ``directory`` as a walk needs it; with ``sizes``, the files' sizes from the
    same pass (a stat each)."""
    try:
        with os.scandir(directory) as scan:
            found = sorted(scan, key=attrgetter("name"))
    except OSError as exc:
        return Listing(error=exc.strerror or str(exc), errno=exc.errno)
    entries: list[tuple[str, str, int | str | None]] = []
    for entry in found:
        try:
            if entry.is_dir(follow_symlinks=False):
                entries.append((entry.name, "d", None))
            elif entry.is_file():  # a symlink to a file counts, as sha256sum would read it
                entries.append((entry.name, "f", entry.stat().st_size if sizes else None))
            elif entry.is_symlink():
                entries.append((entry.name, "l", None))
        except OSError as exc:
            entries.append((entry.name, "x", exc.strerror or str(exc)))
    return Listing(entries)


# What a walk asks for each directory it enters: its listing (here, or from a worker).
Lister = Callable[[str], Listing]
# Told of each directory a walk enters and each symbolic link it passes over (one that
# is not a link to a file), as it meets them: what a companion of metadata records.
OnMet = Callable[[str], None]


def _walk(directory: str, recursive: bool, lister: Lister, on_met: OnMet | None) -> Iterator[Item]:
    listing = lister(directory)
    if listing.error is not None:
        yield problem(directory, listing.error, listing.errno)
        return
    if on_met is not None:
        on_met(directory)
    prefix = dir_prefix(directory)
    for name, kind, detail in listing.entries:
        path = prefix + name
        if kind == "d":
            if recursive:
                yield from _walk(path, recursive, lister, on_met)
        elif kind == "l":
            if on_met is not None:
                on_met(path)
        elif kind == "f":
            # No size unless the lister stats: a stat per file costs an embedded walk
            # more than the hashing gains from knowing it.
            yield {"path": path} if detail is None else {"path": path, "size": int(detail)}
        else:
            yield problem(path, str(detail))


def _listed(files_from: str, null_separated: bool) -> Iterator[Item]:
    import sys

    from dmp_cli.stdio import stdin_closed

    separator = b"\0" if null_separated else b"\n"
    if files_from == "-" and stdin_closed():  # `<&-`
        yield problem("standard input", os.strerror(errno.EBADF), errno.EBADF)
        return
    try:
        stream = sys.stdin.buffer if files_from == "-" else open(files_from, "rb")  # noqa: SIM115
    except OSError as exc:
        yield _oserror(files_from, exc)
        return
    try:
        pending = b""
        while chunk := stream.read(1 << 16):
            pending += chunk
            *names, pending = pending.split(separator)
            for name in names:
                if name:
                    yield _file_item(os.fsdecode(name))
        if pending:
            yield _file_item(os.fsdecode(pending))
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def walk_items(
    inputs: Inputs,
    on_no_match: OnProblem,
    lister: Lister | None = None,
    on_met: OnMet | None = None,
) -> Iterator[Item]:
    """The files to hash, in a deterministic order: names and patterns in the order
    given, then each directory, then the list file. An input that cannot be used is an
    item with a ``problem``, in its place, so that its row comes in order like any
    other. ``lister`` lists the directories of --dir walks (by default, here);
    ``on_met`` hears of their directories and links as the walk meets them."""
    lister = lister or list_dir
    for pattern in inputs.patterns:
        yield from _expand_pattern(pattern, on_no_match)
    for directory in inputs.dirs:
        if not os.path.isdir(directory):
            reason = (
                "Not a directory" if os.path.lexists(directory) else "No such file or directory"
            )
            yield problem(directory, reason)
            continue
        yield from _walk(directory, inputs.recursive, lister, on_met)
    if inputs.files_from is not None:
        yield from _listed(inputs.files_from, inputs.null_separated)


def expand(inputs: Inputs, on_problem: OnProblem, on_no_match: OnProblem) -> Iterator[Item]:
    """The files to hash, as ``walk_items`` finds them, with each input that cannot be
    used told to ``on_problem`` instead."""
    for item in walk_items(inputs, on_no_match):
        if "problem" in item:
            on_problem(item["path"], item["problem"])
        else:
            yield item
