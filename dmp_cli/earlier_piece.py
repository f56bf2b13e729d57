"""A piece of an earlier manifest and its companion, as --create --dir --update walks the
tree again in pieces (``dmp_cli.rewalk``): what a piece is, what comes back of it, and
its earlier entries, taken in order as the walk meets their paths.

A piece is byte ranges of the earlier files, not their bytes: the process that walks it
reads them itself, and what it keeps of them comes back as ranges (``Part``), which the
command's own process copies from the earlier files to the new ones. A piece of an
unchanged tree comes back as one range of each file.

An entry is taken in one of two ways. Kept as it is: the record the walk expects of a
file (``expected``, as ``dmp_cli.recorder.record_line`` writes it up to the link count)
begins the next earlier record, and the manifest line is that path's; then both lines
are the file's new ones (``take_run``, ``take_one``). Or read (``find``): the record
checked as ``dmp_cli.reuse.Earlier`` checks it, against its manifest line, and its entry
handed to the hash operation, which decides. The record the walk makes of a directory
or a link is kept as a range too where it is the next earlier record (``met``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cached_property

from dmp_cli.manifest import LineParser, parse_block
from dmp_cli.meta import Companion
from dmp_cli.reuse import Old, earlier_record

# What may follow a file's record up to its link count, in a record this dmp wrote: its
# extended attributes, sorted.
_XATTRS = re.compile(
    rb',"xattrs":\{"[^"\\\n]*":"[A-Za-z0-9+/=]*"(?:,"[^"\\\n]*":"[A-Za-z0-9+/=]*")*\}\}\Z'
)
_DIGEST = re.compile(rb"[0-9a-f]{64}")
_HEX = b"0123456789abcdef"


# What a piece's output is made of, in order: lines made anew (bytes, each ending in a
# newline), or the bytes from ``start`` to ``end`` of the earlier file (whole lines).
Part = bytes | tuple[int, int]


class Unusable(Exception):
    """The earlier manifest is not in the walk's order, or its pieces do not line up:
    the run takes the general way instead."""


@dataclass
class Piece:
    """What a process needs to make one piece of the output."""

    root: str  # the --dir, as given
    recursive: bool
    lo: list[str] | None  # the piece's first path, as its names (None: the start)
    hi: list[str] | None  # the next piece's first path (None: the end)
    span: tuple[int, int]  # where the earlier companion's records in it are: whole lines
    # Where the earlier manifest's lines of its entries are; one byte past the file's end
    # where its last line has no newline (read as if it had one).
    mspan: tuple[int, int]
    first: int  # the companion's line number of the first record
    mfirst: int  # the manifest's line number of the first line
    companion: Companion | None  # its path, its manifest's; None: no earlier lines
    fmt: str = "dmp"
    meta: bool = True  # a companion is written
    own: list[str] = field(default_factory=list)  # the run's own files, left out
    limit: int = 100_000  # files at most, before the piece is cut short
    # Files, and bytes, to hash at most: beyond, the general way (which hashes them in
    # every process at once, not one after another in this one) is the faster.
    to_hash: tuple[int, int] = (1000, 64 << 20)


@dataclass
class PieceResult:
    manifest: list[Part] = field(default_factory=list)
    companion: list[Part] = field(default_factory=list)
    items: int = 0  # files and problems, as a progress bar counts them
    files: int = 0
    bytes: int = 0
    reused: int = 0
    reused_bytes: int = 0
    records: int = 0
    entries: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)
    # Where a piece cut short goes on: the path, the offsets of the next earlier record
    # and manifest line, and how many of each the piece passed.
    rest: tuple[list[str], int, int, int, int] | None = None


def names_of(path: str) -> list[str]:
    """A path's place in a walk's order: its names (a walk sorts each directory's)."""
    return path.split("/")


class EarlierPiece:
    """The earlier entries of a piece, taken in order: ``i`` the next record, ``j`` the
    next manifest line (``at`` and ``mat`` where they are in their files), ``last`` the
    place of the last entry taken (each taken after it, or the earlier manifest is not
    in the walk's order)."""

    def __init__(self, piece: Piece) -> None:
        self.p = piece
        companion = piece.companion
        meta_path, manifest_path = (companion.path, companion.manifest) if companion else ("", "")
        self.data = _read_lines(meta_path, piece.span)
        self.mlines = _lines(_read_lines(manifest_path, piece.mspan))
        self.base = piece.span[0]  # where self.data is in the companion
        self.i = self.j = 0
        self.at, self.mat = piece.span[0], piece.mspan[0]
        self.last: list[str] | None = None
        self.pending: tuple[list[str], Old | None] | None = None  # read, not taken
        self.dmp = piece.fmt == "dmp"
        # The earlier manifest's form, by its first line: dmp's, or sha256sum's.
        self.dmp_before = not self.mlines or self.mlines[0][66:67] == b'"'
        digests = b"".join([line[:64] for line in self.mlines])
        self.digests_ok = not digests.translate(None, _HEX)  # 64 each: the tails tell
        self.trusted = os.geteuid() == 0  # root reads trusted.* attributes
        self.parser = LineParser()

    @cached_property
    def lines(self) -> list[bytes]:
        """The earlier records, one a line: split only where the walk reads them one by
        one (a file kept with the others of its directory never is)."""
        return _lines(self.data)

    def skip_others(self) -> None:
        """Pass over the earlier records of directories and links: made again."""
        data, base = self.data, self.base
        while self.at - base < len(data):
            start = self.at - base
            end = data.index(b"\n", start)
            if data.find(b'"entry":true', start, end) >= 0:
                return
            self.at += end + 1 - start
            self.i += 1
            self.pending = None

    def take_run(
        self, run: list[bytes], bprefix: bytes, names: list[bytes], last: list[str]
    ) -> tuple[Part, Part] | None:
        """The earlier lines (records, manifest lines) of files of one directory, one
        after another (``names``, the last at ``last``), whose records are expected to
        be ``run`` with nothing after: taken, if they are all the next ones as they are."""
        self.skip_others()
        count, j, at, mat = len(run), self.j, self.at, self.mat
        # The records hold no newline: the same bytes are the same lines.
        expected = b"}\n".join(run) + b"}\n"
        if not self.data.startswith(expected, at - self.base):
            return None
        mlines = self.mlines[j : j + count]
        if len(mlines) != count or not self._manifest_lines(mlines, bprefix, names):
            return None
        self.i, self.j, self.pending, self.last = self.i + count, j + count, None, last
        self.at += len(expected)
        self.mat += sum(map(len, mlines)) + count
        if self.dmp != self.dmp_before:
            pairs = zip(mlines, names, strict=True)
            return (at, self.at), b"".join([self._relined(m, bprefix + name) for m, name in pairs])
        return (at, self.at), (mat, self.mat)

    def _manifest_lines(self, mlines: list[bytes], bprefix: bytes, names: list[bytes]) -> bool:
        """Whether the earlier manifest's lines are those of these files, in the form of
        the earlier manifest's first line, with checksums as dmp writes them."""
        if not self.digests_ok:
            return False
        tails = b"\n".join([line[64:] for line in mlines])
        if self.dmp_before:
            return tails == b'  "' + bprefix + (b'"\n  "' + bprefix).join(names) + b'"'
        return tails == b"  " + bprefix + (b"\n  " + bprefix).join(names)

    def _relined(self, mline: bytes, path: bytes) -> bytes:
        """An earlier line in the other form: this run's."""
        return mline[:64] + (b'  "' + path + b'"\n' if self.dmp else b"  " + path + b"\n")

    def take_one(self, expected: bytes, path: bytes, place: list[str]) -> tuple[Part, Part] | None:
        """One file's earlier lines (record, manifest line), taken if its record
        (``expected``) begins the next earlier record and its line is ``path``'s."""
        self.skip_others()
        if self.i >= len(self.lines) or self.j >= len(self.mlines):
            return None
        line = self.lines[self.i]
        if not line.startswith(expected):
            return None
        rest = line[len(expected) :]
        if rest != b"}" and not (
            _XATTRS.match(rest) and (self.trusted or b'"trusted.' not in rest)
        ):
            return None
        mline = self.mlines[self.j]
        before = b'  "' + path + b'"' if self.dmp_before else b"  " + path
        if len(mline) != 64 + len(before) or not mline.endswith(before):
            return None
        if not _DIGEST.fullmatch(mline, 0, 64):
            return None
        at, mat = self.at, self.mat
        self._take()
        self.last = place
        if self.dmp != self.dmp_before:
            return (at, self.at), self._relined(mline, path)
        return (at, self.at), (mat, self.mat)

    def met(self, record: bytes) -> Part:
        """The record (a line) the walk made of a directory or a link: the next earlier
        record's bytes where it is that record, taken; else itself."""
        at = self.at  # a record is a line: the same bytes are the next line
        if self.pending is None and self.data.startswith(record, at - self.base):
            self.i += 1
            self.at += len(record)
            return at, self.at
        return record

    def offsets(self) -> tuple[int, int]:
        """Where the next earlier record and manifest line are, in their files."""
        return self.at, self.mat

    def find(self, key: list[str]) -> Old | None:
        """The earlier entry of the path at ``key``, if the piece holds one; the entries
        before it are passed over (deleted files), each checked as it is read."""
        while True:
            found = self._next()
            if found is None:
                return None
            place, old = found
            if place > key:
                return None
            self._take()
            if place == key:
                return old

    def _next(self) -> tuple[list[str], Old | None] | None:
        """The next earlier entry (its place, and what an item carries of it), not
        taken; None at the piece's end. Raises MetaError at a record that is not its
        manifest line's entry."""
        lines, companion = self.lines, self.p.companion
        while self.i < len(lines):
            if self.pending is not None:
                return self.pending
            assert companion is not None
            number = self.p.first + self.i
            fields = earlier_record(companion, lines[self.i], number)
            if fields is None:  # a directory's or a link's record
                self.at += len(lines[self.i]) + 1
                self.i += 1
                continue
            if self.j >= len(self.mlines):
                raise Unusable("the pieces do not line up")
            mline = self.mlines[self.j]
            parsed = list(parse_block(mline, self.parser, self.p.mfirst + self.j - 1))
            if len(parsed) != 1 or parsed[0][1] is None:
                raise Unusable("a manifest line that is not an entry")
            line, digest, path = parsed[0]
            if fields[0] != path:
                raise companion.bad(number, f"its path is not that of manifest line {line}")
            place = names_of(path)
            lo, hi = self.p.lo, self.p.hi
            if (
                (self.last is not None and place < self.last)
                or (lo is not None and place < lo)
                or (hi is not None and place >= hi)
            ):
                raise Unusable("not in the walk's order")
            self.pending = (place, [digest, *fields[2:7]] if fields[1] == "file" else None)
            return self.pending
        return None

    def _take(self) -> None:
        """The next record and manifest line passed."""
        if self.pending is not None:
            self.last = self.pending[0]
            self.pending = None
        self.at += len(self.lines[self.i]) + 1
        self.mat += len(self.mlines[self.j]) + 1
        self.i += 1
        self.j += 1

    def drain(self) -> None:
        """The piece's earlier entries after the walk's last file: checked, dropped."""
        while self._next() is not None:
            self._take()
        if self.j != len(self.mlines):
            raise Unusable("the pieces do not line up")


def _read_lines(path: str, span: tuple[int, int]) -> bytes:
    """The bytes from ``span``'s start to its end of the file at ``path``: whole lines
    (where the last has no newline, as if it had one). Unusable if they are not there."""
    start, end = span
    if start == end:
        return b""
    try:
        with open(path, "rb") as stream:
            data = os.pread(stream.fileno(), end - start, start)
    except OSError:
        raise Unusable("the earlier files cannot be read") from None
    if len(data) == end - start - 1 and not data.endswith(b"\n"):
        data += b"\n"  # the manifest's last line, without its newline
    if len(data) != end - start or not data.endswith(b"\n"):
        raise Unusable("the earlier files changed")
    return data


def _lines(data: bytes) -> list[bytes]:
    """Whole lines, without their newlines."""
    return data[:-1].split(b"\n") if data else []


__all__ = ["EarlierPiece", "Part", "Piece", "PieceResult", "Unusable", "names_of"]
