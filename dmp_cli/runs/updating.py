"""--create --dir --update, embedded, where nobody wants a row a file: the tree walked
again in pieces by the hashing processes, each beside its piece of the earlier manifest
(``dmp_cli.rewalk``), this process only cutting the pieces and writing what comes back.

A piece goes out as where its lines are in the earlier files, and what a hashing process
keeps of them comes back so too: this process copies those bytes from the earlier files
to the new ones (``copy_file_range``, in the kernel), and only the lines made anew pass
through a pipe.

Every file passes through the command's own process otherwise (the walk, the earlier
entry, the batch to a hashing process and back, the record, the line), which costs more
than the ``lstat`` that tells an unchanged file. Here an unchanged file costs an
``lstat`` and a comparison in a hashing process, and its earlier lines come back as they
were, a piece's at a time.
"""

from __future__ import annotations

import json
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import BinaryIO, NamedTuple, Protocol, runtime_checkable

from dmp_cli.earlier_piece import Piece, PieceResult, Unusable, names_of
from dmp_cli.meta import Recorder, get_name
from dmp_cli.reuse import Earlier
from dmp_cli.rewalk import rewalk_piece
from dmp_cli.runs.report import Listener

# The earlier companion is cut into pieces of about this many bytes of records.
PIECE_BYTES = 1 << 19
# A piece holds at most this many files (so many more than its earlier entries: the rest
# of the piece is another).
PIECE_FILES = 100_000
# Files, and bytes, a piece hashes at most: a tree so changed goes the general way.
PIECE_HASHES = (1000, 64 << 20)
_READ = 1 << 18
_COPY = 1 << 24  # bytes copied a call at most
_PATH = re.compile(rb'\{"path":"([^"\\]*)"')


@runtime_checkable
class PieceRunner(Protocol):
    """An executor that runs pieces in its hashing processes, results in order."""

    def ordered(
        self, func: Callable[[Piece], PieceResult], args: Iterable[Piece]
    ) -> Iterator[PieceResult]: ...


class Cut(NamedTuple):
    """A piece of the earlier manifest: its paths from ``lo`` to before ``hi`` (None:
    from the start, to the end), where its records and manifest lines are in the
    earlier files, and their first line numbers."""

    lo: list[str] | None
    hi: list[str] | None
    span: tuple[int, int]
    first: int
    mspan: tuple[int, int]
    mfirst: int


@dataclass
class Totals:
    """What the pieces add up to."""

    items: int = 0
    files: int = 0
    bytes: int = 0
    reused: int = 0
    reused_bytes: int = 0
    problems: int = 0
    old_records: int = 0  # the earlier companion's records, counted as cut
    old_entries: int = 0


def rewrite(
    earlier: Earlier,
    root: str,
    recursive: bool,
    runner: PieceRunner,
    out: BinaryIO,
    recorder: Recorder | None,
    fmt: str,
    own: list[str],
    hear: Listener,
    totals: Totals,
) -> None:
    """Write the manifest (to ``out``) and the companion records (to ``recorder``) of a
    --create --dir ``root`` that reuses ``earlier``. Raises Unusable (before or after
    writing) where the earlier manifest cannot be read in pieces: the run then goes the
    general way. ``totals`` adds up the pieces as they are written."""
    if hear.on_total is not None:
        hear.on_total(int(earlier.companion.trailer.get("entries", 0)), None)

    def pieces() -> Iterator[Piece]:
        for cut in _cut(earlier, totals):
            yield Piece(
                root,
                recursive,
                cut.lo,
                cut.hi,
                cut.span,
                cut.mspan,
                cut.first,
                cut.mfirst,
                earlier.companion,
                fmt,
                recorder is not None,
                own,
                PIECE_FILES,
                PIECE_HASHES,
            )

    with _Output(earlier, out, recorder) as output:
        for sent, result in _with_pieces(runner, pieces()):
            while True:
                output.write(result)
                _count(result, hear, totals)
                if result.rest is None:
                    break
                lo, at, mat, i, j = result.rest  # cut short: the rest here
                sent = replace(
                    sent,
                    lo=lo,
                    span=(at, sent.span[1]),
                    mspan=(mat, sent.mspan[1]),
                    first=sent.first + i,
                    mfirst=sent.mfirst + j,
                )
                result = rewalk_piece(sent)
    trailer = earlier.companion.trailer
    if trailer.get("records") != totals.old_records or trailer.get("entries") != totals.old_entries:
        raise Unusable("the counts differ")
    if hear.on_total is not None:
        hear.on_total(totals.items, totals.bytes)


def _with_pieces(
    runner: PieceRunner, pieces: Iterator[Piece]
) -> Iterator[tuple[Piece, PieceResult]]:
    """Each piece with its result: the pieces remembered as they are sent."""
    sent: deque[Piece] = deque()

    def remembered() -> Iterator[Piece]:
        for piece in pieces:
            sent.append(piece)
            yield piece

    for result in runner.ordered(rewalk_piece, remembered()):
        yield sent.popleft(), result


class _Output:
    """The new manifest (``out``) and companion (``recorder``'s), written a piece at a
    time: the lines made anew as they are, the ranges kept of the earlier files copied
    from them."""

    def __init__(self, earlier: Earlier, out: BinaryIO, recorder: Recorder | None) -> None:
        self.out, self.recorder = out, recorder
        flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
        try:
            self.manifest = os.open(earlier.manifest, flags)
        except OSError:
            raise Unusable("the earlier manifest cannot be read") from None
        try:
            self.meta = os.open(earlier.companion_path, flags)
        except OSError:
            os.close(self.manifest)
            raise Unusable("the earlier companion cannot be read") from None
        self.manifest_size = os.fstat(self.manifest).st_size
        # Whether copy_file_range (Linux's) works between these files.
        self.in_kernel = hasattr(os, "copy_file_range")

    def __enter__(self) -> _Output:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.manifest)
        os.close(self.meta)

    def write(self, result: PieceResult) -> None:
        """A piece's manifest lines, hashed as written (the companion's last line names
        the manifest's sha256), then its records."""
        recorder = self.recorder
        for part in result.manifest:
            if isinstance(part, bytes):
                self.out.write(part)
                if recorder is not None:
                    recorder.manifest_bytes(part)
                continue
            start, end = part
            for data in self._read(self.manifest, start, min(end, self.manifest_size)):
                self.out.write(data)
                if recorder is not None:
                    recorder.manifest_bytes(data)
            if end > self.manifest_size:  # its last line, which had no newline
                self.out.write(b"\n")
                if recorder is not None:
                    recorder.manifest_bytes(b"\n")
        if recorder is None or not result.companion:
            return
        recorder.lines(b"", result.records, result.entries)
        for part in result.companion:
            if isinstance(part, bytes):
                recorder.stream.write(part)
            else:
                self._copy(self.meta, recorder.stream, *part)

    def _read(self, source: int, start: int, end: int) -> Iterator[bytes]:
        while start < end:
            data = os.pread(source, min(end - start, _COPY), start)
            if not data:
                raise Unusable("the earlier files changed")
            start += len(data)
            yield data

    def _copy(self, source: int, stream: BinaryIO, start: int, end: int) -> None:
        """Bytes ``start`` to ``end`` of ``source`` written to ``stream``: in the kernel
        where it can, else read and written."""
        if self.in_kernel:
            stream.flush()
            target = stream.fileno()
            while start < end:
                try:
                    copied = os.copy_file_range(source, target, min(end - start, _COPY), start)
                except OSError:  # not between these files (or this kernel): read them
                    self.in_kernel = False
                    break
                if not copied:
                    raise Unusable("the earlier files changed")
                start += copied
        for data in self._read(source, start, end):
            stream.write(data)


def _count(result: PieceResult, hear: Listener, totals: Totals) -> None:
    for path, why in result.problems:
        totals.problems += 1
        hear.on_problem(path, why)
    totals.items += result.items
    totals.files += result.files
    totals.bytes += result.bytes
    totals.reused += result.reused
    totals.reused_bytes += result.reused_bytes
    if result.items:
        hear.on_progress(result.items, result.bytes)


def _cut(earlier: Earlier, totals: Totals) -> Iterator[Cut]:
    """The earlier companion's records and manifest's lines, in pieces, each of whole
    records: where they are in the earlier files."""
    manifest = _LineReader(earlier.manifest)
    with open(earlier.companion_path, "rb") as meta:
        meta.readline()  # the header, checked already
        at = meta.tell()  # where the block read next begins
        left = _records_end(meta) - at
        number = 1
        rest = b""
        ahead: Cut | None = None
        lo: list[str] | None = None
        while left > 0:
            data = meta.read(min(PIECE_BYTES, left))
            if not data:
                raise Unusable("the companion changed")
            left -= len(data)
            block = rest + data
            end = _piece_end(block, left > 0)
            if end < 0:
                rest = block
                continue
            start, at = at, at + end + 1
            rest = block[end + 1 :]
            entries = block.count(b'"entry":true', 0, end)
            mfirst = manifest.number + 1
            mspan = manifest.take(entries)
            records = block.count(b"\n", 0, end) + 1
            totals.old_records += records
            totals.old_entries += entries
            first = names_of(_first_path(block[: block.find(b"\n", 0, end) % (end + 1)]))
            if ahead is not None:
                yield ahead._replace(hi=first)
                lo = first
            ahead = Cut(lo, None, (start, at), number + 1, mspan, mfirst)
            number += records
        if rest:
            raise Unusable("a record cut short")
        if ahead is not None:
            yield ahead
        else:
            yield Cut(None, None, (at, at), 2, (0, 0), 1)
    if not manifest.at_end():
        raise Unusable("the manifest is longer")


def _piece_end(block: bytes, more: bool) -> int:
    """Where in ``block`` (records, the last maybe cut short) a piece ends: where
    ``more`` records follow, the newline before the last directory's record in its
    second half, so that a directory's files are walked, listed and sorted by one piece,
    not two; else its last newline."""
    last = block.rfind(b"\n")
    if last > 0 and more:
        found = block.rfind(b'","type":"dir",', len(block) // 2, last)
        if found > 0:
            before = block.rfind(b"\n", 0, found)
            if before > 0:
                return before
    return last


def _records_end(meta: BinaryIO) -> int:
    """Where the companion's last line begins: after it, one newline at most."""
    size = meta.seek(0, os.SEEK_END)
    start = max(0, size - 4096)
    meta.seek(start)
    tail = meta.read()
    meta.seek(0)
    meta.readline()
    body = tail[:-1] if tail.endswith(b"\n") else tail
    last = body.rfind(b"\n") + 1
    if last == 0 or not body[last:].startswith(b'{"end":true') or b"\n" in body[last:]:
        raise Unusable("no last line where it should be")
    return start + last


def _first_path(line: bytes) -> str:
    match = _PATH.match(line)
    if match is not None:
        try:
            return match.group(1).decode("utf-8")
        except UnicodeDecodeError:
            raise Unusable("a record's path is not UTF-8") from None
    try:
        return get_name(json.loads(line), "path")
    except (ValueError, KeyError, TypeError):
        raise Unusable("a record without a path") from None


class _LineReader:
    """A file's lines, taken so many at a time: where they are in the file."""

    def __init__(self, path: str) -> None:
        self.stream = open(path, "rb")  # noqa: SIM115
        self.buffer = b""
        self.base = 0  # where the buffer is in the file
        self.pos = 0  # where the next line is in the buffer
        self.lines = 0  # whole lines in the buffer from there
        self.number = 0  # lines taken
        self.ended = False

    def take(self, count: int) -> tuple[int, int]:
        """Where the next ``count`` lines begin and end (after the last's newline: one
        byte past the file's end if the file's last line has none); Unusable if there
        are fewer."""
        start = self.base + self.pos
        if count == 0:
            return start, start
        while self.lines < count and not self.ended:
            data = self.stream.read(max(_READ, 128 * (count - self.lines)))
            self.buffer, self.base = self.buffer[self.pos :], start
            self.pos = 0
            if not data:
                self.ended = True
                self.stream.close()
                if self.buffer and not self.buffer.endswith(b"\n"):
                    self.buffer += b"\n"
                    self.lines += 1
                break
            self.buffer += data
            self.lines += data.count(b"\n")
        if self.lines < count:
            raise Unusable("the manifest is shorter")
        self.pos = _newline(self.buffer, count, self.lines, self.pos) + 1
        self.lines -= count
        self.number += count
        return start, self.base + self.pos

    def at_end(self) -> bool:
        if not self.ended:
            self.ended = not self.stream.read(1) and self.pos == len(self.buffer)
            self.stream.close()
            return self.ended
        return self.pos == len(self.buffer)


def _newline(data: bytes, count: int, lines: int, start: int = 0) -> int:
    """Where the ``count``th of the ``lines`` newlines of ``data`` from ``start`` on is."""
    guess = start + (len(data) - start) * count // lines
    before = data.count(b"\n", start, guess)
    if before >= count:  # too far: back to the line before
        at = guess
        for _ in range(before - count + 1):
            at = data.rfind(b"\n", start, at)
        return at
    at = guess - 1
    for _ in range(count - before):
        at = data.find(b"\n", at + 1)
    return at
