"""Turning what `--create` was given into the files to hash, in a deterministic order.

Patterns are expanded here, not by the shell: a cluster directory easily exceeds the
shell's argument limit. Walks are sorted by name and never descend symlinked directories.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter

from dmp_cli.ops import Item

OnProblem = Callable[[str, str], None]


@dataclass
class Inputs:
    """Everything `--create` can be given: names or patterns, directories, a list file."""

    patterns: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    recursive: bool = False
    files_from: str | None = None
    null_separated: bool = False

    def given(self) -> bool:
        return bool(self.patterns or self.dirs or self.files_from)


def _file_item(path: str, on_problem: OnProblem) -> Item | None:
    try:
        st = os.stat(path)
    except OSError as exc:
        on_problem(path, exc.strerror or str(exc))
        return None
    if stat.S_ISDIR(st.st_mode):
        on_problem(path, "Is a directory (use --dir to include its files)")
        return None
    if not stat.S_ISREG(st.st_mode):
        on_problem(path, "Not a regular file")
        return None
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


def _expand_pattern(pattern: str, on_problem: OnProblem, on_no_match: OnProblem) -> Iterator[Item]:
    if not glob.has_magic(pattern) or os.path.lexists(pattern):
        item = _file_item(pattern, on_problem)
        if item is not None:
            yield item
        return
    matched = False
    for path in sorted({path for path in _iglob(pattern) if path}, key=os.fsencode):
        try:
            st = os.stat(path)
        except OSError as exc:
            on_problem(path, exc.strerror or str(exc))
            continue
        if stat.S_ISREG(st.st_mode):
            matched = True
            yield {"path": path, "size": st.st_size}
    if not matched:
        on_no_match(pattern, "no regular file matches this pattern")


def _walk(directory: str, recursive: bool, on_problem: OnProblem) -> Iterator[Item]:
    try:
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=attrgetter("name"))
    except OSError as exc:
        on_problem(directory, exc.strerror or str(exc))
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                if recursive:
                    yield from _walk(entry.path, recursive, on_problem)
                continue
            if entry.is_file():  # a symlink to a file counts, as sha256sum would read it
                # No size: a stat per file would cost the walk more than the hashing.
                yield {"path": entry.path}
        except OSError as exc:
            on_problem(entry.path, exc.strerror or str(exc))


def _listed(files_from: str, null_separated: bool, on_problem: OnProblem) -> Iterator[Item]:
    import sys

    separator = b"\0" if null_separated else b"\n"
    try:
        stream = sys.stdin.buffer if files_from == "-" else open(files_from, "rb")  # noqa: SIM115
    except OSError as exc:
        on_problem(files_from, exc.strerror or str(exc))
        return
    try:
        pending = b""
        while chunk := stream.read(1 << 16):
            pending += chunk
            *names, pending = pending.split(separator)
            for name in names:
                if name:
                    item = _file_item(os.fsdecode(name), on_problem)
                    if item is not None:
                        yield item
        if pending:
            item = _file_item(os.fsdecode(pending), on_problem)
            if item is not None:
                yield item
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def expand(inputs: Inputs, on_problem: OnProblem, on_no_match: OnProblem) -> Iterator[Item]:
    """The files to hash, as items with their sizes: names and patterns in the order given,
    then each directory, then the list file. Problems are reported, not raised."""
    for pattern in inputs.patterns:
        yield from _expand_pattern(pattern, on_problem, on_no_match)
    for directory in inputs.dirs:
        if not os.path.isdir(directory):
            reason = (
                "Not a directory" if os.path.lexists(directory) else "No such file or directory"
            )
            on_problem(directory, reason)
            continue
        yield from _walk(directory, inputs.recursive, on_problem)
    if inputs.files_from is not None:
        yield from _listed(inputs.files_from, inputs.null_separated, on_problem)
