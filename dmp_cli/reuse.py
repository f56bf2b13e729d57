"""--create --update: the checksums of an earlier manifest, reused for files unchanged since.

A file is unchanged when its size, mtime and ctime (in nanoseconds), inode and device
are those its entry's record holds in the earlier manifest's companion: nobody can set a
ctime, so a file rewritten with its mtime put back, a ``touch -d``, a chmod or a file
replaced by a rename is hashed again. A companion of format version 1 records neither
ctime nor inode nor device: with one, a file is unchanged when its size and mtime are
(as rsync decides), and the run says so once. Only regular files are reused: the record
of a symbolic link to a file says nothing of the file it names.

The earlier manifest is read as a stream beside the walk (``Reuse``) while both come in
the same order, as a --dir walk's manifest and the walk that makes it again do. When they
do not (a list of files, several inputs, a manifest made otherwise), its entries go into
an index on disk (SQLite, in a temporary directory removed after the run): memory stays
flat however long the manifest is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from dmp_cli.errors import DmpError
from dmp_cli.manifest import Line, parse_lines
from dmp_cli.meta import Companion, MetaError, companion_of
from dmp_cli.quoting import quote_name

# What an item to hash carries of its earlier entry ("old"): its checksum, then the
# fields a file must still have to keep it: size and mtime_ns, and from a companion of
# format version 2 on ctime_ns, ino and dev.
Old = list[Any]

# Where each of those fields is in what ``dmp_cli.recorder.stat_of`` gives.
_STAT_FIELDS = (3, 2, 6, 7, 8)  # size, mtime_ns, ctime_ns, ino, dev
_RECORD_FIELDS = ("size", "mtime_ns", "ctime_ns", "ino", "dev")


class EarlierError(DmpError):
    """The earlier manifest (or its companion) cannot be used: nothing is written."""

    exit_code = 2


def unchanged(old: Old, fields: list[Any]) -> bool:
    """Whether a file whose ``stat_of`` fields are ``fields`` is the one ``old`` was
    recorded from: a regular file, with every recorded field the same."""
    if fields[0] != "file":
        return False
    return all(
        fields[where] == value for where, value in zip(_STAT_FIELDS, old[1:], strict=False)
    )


def _shown(path: str) -> str:
    return quote_name(path).decode("utf-8", "surrogateescape")


def _key(path: str) -> str:
    """A path's place in a walk's order: its names compared one by one, as a walk sorts
    each directory's (NUL, which no name holds, sorts before any character)."""
    return path.replace("/", "\0")


class Earlier:
    """An earlier manifest and its companion (``MANIFEST.meta``), verified to match each
    other before anything is reused. Raises EarlierError, in one line naming the file."""

    def __init__(self, manifest: str) -> None:
        self.manifest = manifest
        self.companion_path = companion_of(manifest)
        shown, shown_meta = _shown(manifest), _shown(self.companion_path)
        try:
            with open(manifest, "rb"):
                pass
        except OSError as exc:
            raise EarlierError(
                f"--update {shown}: cannot read the earlier manifest: {exc.strerror or exc}"
            ) from None
        if not os.path.isfile(self.companion_path):
            raise EarlierError(
                f"--update {shown}: no companion file of metadata ({shown_meta}) to tell "
                "which files are unchanged; hash them all with --create alone"
            )
        self.companion = Companion(self.companion_path, shown_meta, manifest, shown)
        self.ordered = True  # its entries in a walk's order (checked as it is verified)
        self.entries = 0
        try:
            self._verify()
        except MetaError as exc:
            raise EarlierError(f"--update: {exc}") from None
        except OSError as exc:
            raise EarlierError(f"--update {shown}: {exc.strerror or exc}") from None

    @property
    def version(self) -> int:
        """The companion's format version (1 lacks ctime, inode and device)."""
        return self.companion.version

    def _verify(self) -> None:
        """The companion against its manifest (``Companion.verify``), noting on the way
        whether the entries come in a walk's order."""
        import hashlib

        with open(self.manifest, "rb") as stream:
            digest = hashlib.file_digest(stream, "sha256").hexdigest()
        with open(self.manifest, "rb") as stream:
            self.companion._verify(self._noted(parse_lines(stream)), digest)

    def _noted(self, lines: Iterator[Line]) -> Iterator[Line]:
        last = ""
        for line in lines:
            if line.entry is None:
                continue
            self.entries += 1
            key = _key(line.entry.path)
            if key < last:
                self.ordered = False
            last = key
            yield line

    def olds(self) -> Iterator[tuple[str, Old | None]]:
        """Each entry's path and what an item carries of it, in the manifest's order;
        None for an entry that is not a regular file (never reused)."""
        fields = _RECORD_FIELDS if self.version >= 2 else _RECORD_FIELDS[:2]
        records = (value for value in self.companion.records() if value.get("entry"))
        with open(self.manifest, "rb") as stream:
            for line in parse_lines(stream):
                entry = line.entry
                if entry is None:
                    continue
                value = next(records)
                if value.get("type") != "file":
                    yield entry.path, None
                    continue
                yield entry.path, [entry.digest, *(value[key] for key in fields)]

    def reuse(self) -> Reuse:
        return Reuse(self)


class Reuse:
    """Finds a path's earlier entry: by reading the earlier manifest on beside the walk
    while both go in a walk's order, else (from the first path out of that order, or
    from the start if the manifest is not in it) in an index on disk."""

    def __init__(self, earlier: Earlier) -> None:
        self.earlier = earlier
        self._index: _Index | None = None
        self._stream: Iterator[tuple[str, Old | None]] | None = None
        self._current: tuple[str, Old | None] | None = None
        self._current_key = ""
        self._last = ""
        if not earlier.ordered:
            self._index = _Index(earlier)
        else:
            self._stream = earlier.olds()
            self._advance()

    def _advance(self) -> None:
        assert self._stream is not None
        self._current = next(self._stream, None)
        if self._current is not None:
            self._current_key = _key(self._current[0])

    def find(self, path: str) -> Old | None:
        """What the item of ``path`` carries of its earlier entry, if it has one."""
        if self._index is not None:
            return self._index.find(path)
        key = _key(path)
        if key < self._last:  # the walk is not in the manifest's order
            self._close_stream()
            self._index = _Index(self.earlier)
            return self._index.find(path)
        self._last = key
        while self._current is not None and self._current_key < key:
            self._advance()
        if self._current is not None and self._current_key == key:
            return self._current[1]
        return None

    def _close_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()  # type: ignore[attr-defined]
            self._stream = None

    def close(self) -> None:
        self._close_stream()
        if self._index is not None:
            self._index.close()
            self._index = None


class _Index:
    """The earlier manifest's entries in an SQLite file of a temporary directory, by
    path (the first entry of a path wins, as the stream's does)."""

    def __init__(self, earlier: Earlier) -> None:
        import sqlite3  # here, not where only ``unchanged`` is wanted (every hashing process)
        import tempfile

        self.directory = tempfile.mkdtemp(prefix="dmp-update-")
        try:
            self.db = sqlite3.connect(os.path.join(self.directory, "earlier.db"))
            self.db.execute("PRAGMA journal_mode=OFF")
            self.db.execute("PRAGMA synchronous=OFF")
            self.db.execute("CREATE TABLE old (path BLOB PRIMARY KEY, old TEXT) WITHOUT ROWID")
            self.db.executemany(
                "INSERT OR IGNORE INTO old VALUES (?, ?)",
                (
                    (os.fsencode(path), json.dumps(old))
                    for path, old in earlier.olds()
                    if old is not None
                ),
            )
            self.db.commit()
        except BaseException:
            self.close()
            raise

    def find(self, path: str) -> Old | None:
        found = self.db.execute(
            "SELECT old FROM old WHERE path = ?", (os.fsencode(path),)
        ).fetchone()
        if found is None:
            return None
        old: Old = json.loads(found[0])
        return old

    def close(self) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            db.close()
        import shutil

        shutil.rmtree(self.directory, ignore_errors=True)


__all__ = ["Earlier", "EarlierError", "Old", "Reuse", "unchanged"]
