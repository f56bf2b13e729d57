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

import hashlib
import json
import os
import re
from collections.abc import Iterator
from typing import Any

from dmp_cli.errors import DmpError
from dmp_cli.manifest import blocks, parsed
from dmp_cli.meta import Companion, MetaError, companion_of, valid
from dmp_cli.quoting import quote_name
from dmp_cli.recorder import FORMAT, READABLE, VERSION

# What an item to hash carries of its earlier entry ("old"): its checksum, then the
# fields a file must still have to keep it: size and mtime_ns, and from a companion of
# format version 2 on ctime_ns, ino and dev.
Old = list[Any]

# (``unchanged`` finds them in what ``dmp_cli.recorder.stat_of`` gives: size at 3, mtime_ns
# at 2, ctime_ns at 6, ino at 7, dev at 8.)
_RECORD_FIELDS = ("size", "mtime_ns", "ctime_ns", "ino", "dev")


class EarlierError(DmpError):
    """The earlier manifest (or its companion) cannot be used: nothing is written."""

    exit_code = 2


def unchanged(old: Old, fields: list[Any]) -> bool:
    """Whether a file whose ``stat_of`` fields are ``fields`` is the one ``old`` was
    recorded from: a regular file, with every recorded field the same."""
    if fields[0] != "file" or fields[3] != old[1] or fields[2] != old[2]:
        return False
    return len(old) == 3 or (fields[6] == old[3] and fields[7] == old[4] and fields[8] == old[5])


def _shown(path: str) -> str:
    return quote_name(path).decode("utf-8", "surrogateescape")


def _key(path: str) -> str:
    """A path's place in a walk's order: its names compared one by one, as a walk sorts
    each directory's (NUL, which no name holds, sorts before any character)."""
    return path.replace("/", "\0")


class Earlier:
    """An earlier manifest and its companion (``MANIFEST.meta``). Before anything is
    reused, the companion's first line must be a header of a version this dmp reads and
    its last line must name the manifest's sha256: a companion of another manifest, or
    one cut short, is refused at once. Each record is then checked as it is read, as
    ``Companion.verify`` checks it (its path that of the manifest's entry, the counts at
    the end): a line that is not is an EarlierError in the middle of the run, which then
    writes nothing. Raises EarlierError, in one line naming the file."""

    def __init__(self, manifest: str) -> None:
        self.manifest = manifest
        self.companion_path = companion_of(manifest)
        self.shown, shown_meta = _shown(manifest), _shown(self.companion_path)
        try:
            with open(manifest, "rb"):
                pass
        except OSError as exc:
            raise self._unreadable(exc) from None
        if not os.path.isfile(self.companion_path):
            raise EarlierError(
                f"--update {self.shown}: no companion file of metadata ({shown_meta}) to tell "
                "which files are unchanged; hash them all with --create alone"
            )
        self.companion = Companion(self.companion_path, shown_meta, manifest, self.shown)
        try:
            self.version = self._header()
            self._trailer()
        except MetaError as exc:
            raise EarlierError(f"--update: {exc}") from None

    def _header(self) -> int:
        """The companion's format version, from its first line."""
        try:
            with open(self.companion_path, "rb") as stream:
                first = stream.readline()
        except OSError as exc:
            raise MetaError(f"{self.companion.shown}: {exc.strerror or exc}") from None
        if not first:
            raise self.companion.bad(1, "empty")
        header = self.companion.decode(first, 1)
        version = header.get("version")
        if header.get("format") != FORMAT or not isinstance(version, int):
            raise self.companion.bad(1, f"not a {FORMAT} header")
        if version > VERSION:
            raise MetaError(
                f"{self.companion.shown}: made by a newer dmp (companion format version "
                f"{version}; this dmp reads versions up to {VERSION}); nothing applied"
            )
        if version not in READABLE:
            raise self.companion.bad(1, f"unknown {FORMAT} version {version}")
        self.companion.version = version
        return version

    def _trailer(self) -> None:
        """The companion's last line: it ends the companion of this very manifest."""
        try:
            with open(self.manifest, "rb") as stream:
                digest = hashlib.file_digest(stream, "sha256").hexdigest()
        except OSError as exc:
            raise self._unreadable(exc) from None
        with open(self.companion_path, "rb") as stream:
            size = stream.seek(0, os.SEEK_END)
            stream.seek(max(0, size - 4096))
            last = stream.read().rstrip(b"\n").rpartition(b"\n")[2]
        try:
            trailer = json.loads(last)
        except ValueError:
            trailer = None
        if not isinstance(trailer, dict) or trailer.get("end") is not True:
            raise self._bad_end("cut short (no last line)")
        if trailer.get("manifest_sha256") != digest:
            raise self._bad_end("it was made with another manifest (its sha256 differs)")
        self.companion.trailer = trailer

    def _unreadable(self, exc: OSError) -> EarlierError:
        return EarlierError(
            f"--update {self.shown}: cannot read the earlier manifest: {exc.strerror or exc}"
        )

    def _bad_end(self, why: str) -> MetaError:
        companion = self.companion
        return MetaError(
            f"{companion.shown}: its last line: {why}; not the metadata of "
            f"{companion.manifest_shown} (nothing applied)"
        )

    def olds(self) -> Iterator[tuple[str, Old | None]]:
        """Each entry's path and what an item carries of it, in the manifest's order;
        None for an entry that is not a regular file (never reused). Raises EarlierError
        at a record that is not that of the manifest's entry."""
        try:
            yield from self._olds()
        except MetaError as exc:
            raise EarlierError(f"--update: {exc}") from None

    def _olds(self) -> Iterator[tuple[str, Old | None]]:
        companion, kept = self.companion, (7 if self.version >= 2 else 4)
        records = self._entry_records()
        found = 0
        with open(self.manifest, "rb") as stream:
            for line, digest, path in parsed(stream):
                if digest is None:
                    continue
                number, fields = next(records)
                if fields is None:
                    raise companion.bad(number, "the manifest has more entries")
                if fields[0] != path:
                    raise companion.bad(number, f"its path is not that of manifest line {line}")
                found += 1
                yield path, ([digest, *fields[2:kept]] if fields[1] == "file" else None)
        number, fields = next(records)
        if fields is not None:
            raise companion.bad(number, "an entry the manifest does not have")
        for _ in records:  # nothing after the last line
            pass
        trailer = companion.trailer
        if trailer.get("records") != number - 2 or trailer.get("entries") != found:
            raise companion.bad(number, "its counts do not match its records")

    def _entry_records(self) -> Iterator[tuple[int, list[Any] | None]]:
        """Each entry's record, as its line number and its (path, type, size, mtime_ns,
        ctime_ns, ino, dev), in order; then the last line's number and None. Read a block
        at a time, the records as ``dmp_cli.recorder`` writes them found by one call."""
        companion = self.companion
        number = 0
        ended = False
        with open(self.companion_path, "rb") as meta:
            for block in blocks(meta):
                for path, kind, mtime, size, ctime, ino, dev, other in _LINES.findall(block):
                    number += 1
                    if ended:
                        raise companion.bad(number, "a record after the last line")
                    if kind:
                        try:
                            name = path.decode("utf-8")
                        except UnicodeDecodeError as exc:
                            raise companion.bad(number, f"not a JSON record ({exc})") from None
                        fields = [name, kind.decode(), int(size), int(mtime)]
                        yield number, [*fields, int(ctime), int(ino), int(dev)]
                    elif number == 1:
                        continue  # the header, checked already
                    elif other.startswith(b'{"path') and b'"entry"' not in other:
                        continue  # a directory or a link, as the recorder writes them
                    else:
                        value = companion.decode(other, number)
                        if value.get("end"):
                            ended = True
                            yield number, None
                        elif value.get("entry"):
                            yield number, _checked(companion, value, number)
        if not ended:
            raise companion.bad(number, "cut short (no last line)")

    def reuse(self) -> Reuse:
        return Reuse(self)


# The lines of a companion, one match each: an entry's record as
# ``dmp_cli.recorder.record_line`` writes it (format version 2), with a path of no escapes,
# in groups 1 to 7, read without a JSON decoder (which costs ten times as much); any other
# line whole in group 8, decoded and checked whole (``_checked``).
_LINES = re.compile(
    rb'^(?:\{"path":"([^"\\\n]*)","type":"(file|link|other)","entry":true,"mode":"[0-7]{4}",'
    rb'"mtime_ns":(\d+),"size":(\d+),"uid":\d+,"gid":\d+,'
    rb'"user":(?:null|"[^"\\\n]*"),"group":(?:null|"[^"\\\n]*"),'
    rb'"ctime_ns":(\d+),"ino":(\d+),"dev":(\d+),"nlink":\d+'
    rb'(?:,"xattrs":\{"[^"\\\n]*":"[A-Za-z0-9+/=]*"(?:,"[^"\\\n]*":"[A-Za-z0-9+/=]*")*\})?'
    rb'(?:,"target":"[^"\\\n]*")?\}|(.*))$',
    re.MULTILINE,
)


def earlier_record(companion: Companion, line: bytes, number: int) -> list[Any] | None:
    """The (path, type, size, mtime_ns, ctime_ns, ino, dev) of line ``number`` of a
    companion of format version 2, an entry's record; None for another record (a
    directory's, a link's). Checked as ``Earlier`` checks its records: MetaError if it is
    not one."""
    match = _LINES.match(line)
    if match is None:  # a line break inside: not a record
        raise companion.bad(number, "not a JSON record")
    path, kind, mtime, size, ctime, ino, dev, other = match.groups()
    if kind:
        try:
            name = path.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise companion.bad(number, f"not a JSON record ({exc})") from None
        return [name, kind.decode(), int(size), int(mtime), int(ctime), int(ino), int(dev)]
    if other.startswith(b'{"path') and b'"entry"' not in other:
        return None
    value = companion.decode(other, number)
    if value.get("end"):
        raise companion.bad(number, "a record after the last line")
    return _checked(companion, value, number) if value.get("entry") else None


def _checked(companion: Companion, value: dict[str, Any], number: int) -> list[Any]:
    """(path, type, size, mtime_ns[, ctime_ns, ino, dev]) of a decoded record, checked whole."""
    try:
        path = valid(value, companion.version)
    except (KeyError, ValueError, TypeError) as exc:
        raise companion.bad(number, f"malformed record ({exc})") from None
    keys = _RECORD_FIELDS if companion.version >= 2 else _RECORD_FIELDS[:2]
    return [path, value["type"], *(value[key] for key in keys)]


class Reuse:
    """Finds a path's earlier entry: by reading the earlier manifest on beside the walk
    while both go in a walk's order, else (from the first path out of that order, or
    from the start if the manifest is not in it) in an index on disk."""

    def __init__(self, earlier: Earlier) -> None:
        self.earlier = earlier
        self._index: _Index | None = None
        self._stream: Iterator[tuple[str, Old | None]] | None = earlier.olds()
        self._current: tuple[str, Old | None] | None = None
        self._current_key = ""  # the current entry's place in a walk's order
        self._last = ""  # the last path asked for's
        self._advance()

    def _advance(self) -> bool:
        """The earlier manifest's next entry; False if it is out of a walk's order."""
        assert self._stream is not None
        self._current = next(self._stream, None)
        if self._current is None:
            return True
        key = _key(self._current[0])
        ordered = key >= self._current_key
        self._current_key = key
        return ordered

    def find(self, path: str) -> Old | None:
        """What the item of ``path`` carries of its earlier entry, if it has one."""
        if self._index is not None:
            return self._index.find(path)
        key = _key(path)
        if key < self._last:  # the walk is not in the manifest's order
            return self._indexed(path)
        self._last = key
        while self._current is not None and self._current_key < key:
            if not self._advance():  # nor is the manifest in a walk's order
                return self._indexed(path)
        if self._current is not None and self._current_key == key:
            return self._current[1]
        return None

    def _indexed(self, path: str) -> Old | None:
        """From now on, the on-disk index."""
        self._close_stream()
        self._index = _Index(self.earlier)
        return self._index.find(path)

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


__all__ = ["Earlier", "EarlierError", "Old", "Reuse", "earlier_record", "unchanged"]
