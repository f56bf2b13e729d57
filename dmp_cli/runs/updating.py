"""--create --dir --update, embedded, where nobody wants a row a file: the tree walked
again in pieces by the hashing processes, each beside its piece of the earlier manifest
(``dmp_cli.rewalk``), this process only cutting the pieces and writing what comes back.

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
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable

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
_PATH = re.compile(rb'\{"path":"([^"\\]*)"')


@runtime_checkable
class PieceRunner(Protocol):
    """An executor that runs pieces in its hashing processes, results in order."""

    def ordered(
        self, func: Callable[[Piece], PieceResult], args: Iterable[Piece]
    ) -> Iterator[PieceResult]: ...


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

    def piece(
        lo: list[str] | None,
        hi: list[str] | None,
        lines: bytes,
        first: int,
        mlines: bytes,
        mfirst: int,
    ) -> Piece:
        return Piece(
            root,
            recursive,
            lo,
            hi,
            lines,
            mlines,
            first,
            mfirst,
            earlier.companion,
            fmt,
            recorder is not None,
            own,
            PIECE_FILES,
            PIECE_HASHES,
        )

    def pieces() -> Iterator[Piece]:
        for lo, hi, lines, first, mlines, mfirst in _cut(earlier, totals):
            yield piece(lo, hi, lines, first, mlines, mfirst)

    for sent, result in _with_pieces(runner, pieces()):
        while True:
            _write(result, out, recorder, hear, totals)
            if result.rest is None:
                break
            lo, i, j = result.rest  # cut short: the rest here
            sent = piece(
                lo,
                sent.hi,
                _after(sent.lines, i),
                sent.first + i,
                _after(sent.mlines, j),
                sent.mfirst + j,
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


def _write(
    result: PieceResult,
    out: BinaryIO,
    recorder: Recorder | None,
    hear: Listener,
    totals: Totals,
) -> None:
    if result.manifest:
        out.write(result.manifest)
        if recorder is not None:
            recorder.manifest_bytes(result.manifest)
    if recorder is not None and result.companion:
        recorder.lines(result.companion, result.records, result.entries)
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


def _cut(
    earlier: Earlier, totals: Totals
) -> Iterator[tuple[list[str] | None, list[str] | None, bytes, int, bytes, int]]:
    """The earlier companion's records and manifest's lines, in pieces: (lo, hi, records,
    the first's line number, manifest lines, the first's line number)."""
    manifest = _LineReader(earlier.manifest)
    with open(earlier.companion_path, "rb") as meta:
        meta.readline()  # the header, checked already
        left = _records_end(meta) - meta.tell()
        number = 1
        rest = b""
        ahead: tuple[list[str] | None, bytes, int, bytes, int] | None = None
        lo: list[str] | None = None
        while left > 0:
            data = meta.read(min(PIECE_BYTES, left))
            if not data:
                raise Unusable("the companion changed")
            left -= len(data)
            block = rest + data
            end = block.rfind(b"\n")
            if end < 0:
                rest = block
                continue
            rest, block = block[end + 1 :], block[:end]
            entries = block.count(b'"entry":true')
            mfirst = manifest.number + 1
            mlines = manifest.take(entries)
            records = block.count(b"\n") + 1
            totals.old_records += records
            totals.old_entries += entries
            start = names_of(_first_path(block[: block.find(b"\n") % (len(block) + 1)]))
            if ahead is not None:
                yield (ahead[0], start, ahead[1], ahead[2], ahead[3], ahead[4])
                lo = start
            ahead = (lo, block, number + 1, mlines, mfirst)
            number += records
        if rest:
            raise Unusable("a record cut short")
        if ahead is not None:
            yield (ahead[0], None, ahead[1], ahead[2], ahead[3], ahead[4])
        else:
            yield (None, None, b"", 2, b"", 1)
    if not manifest.at_end():
        raise Unusable("the manifest is longer")


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


def _after(lines: bytes, count: int) -> bytes:
    """Lines (joined by newlines) without the first ``count``."""
    return b"\n".join(lines.split(b"\n")[count:]) if lines else b""


class _LineReader:
    """A file's lines, taken so many at a time, joined by newlines."""

    def __init__(self, path: str) -> None:
        self.stream = open(path, "rb")  # noqa: SIM115
        self.buffer = b""
        self.lines = 0  # whole lines in the buffer
        self.number = 0  # lines taken
        self.ended = False

    def take(self, count: int) -> bytes:
        """The next ``count`` lines; Unusable if there are fewer."""
        if count == 0:
            return b""
        while self.lines < count and not self.ended:
            data = self.stream.read(max(_READ, 128 * (count - self.lines)))
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
        end = _newline(self.buffer, count, self.lines)
        taken, self.buffer = self.buffer[:end], self.buffer[end + 1 :]
        self.lines -= count
        self.number += count
        return taken

    def at_end(self) -> bool:
        if not self.ended:
            self.ended = not self.stream.read(1) and not self.buffer
            self.stream.close()
            return self.ended
        return not self.buffer


def _newline(data: bytes, count: int, lines: int) -> int:
    """Where the ``count``th of the ``lines`` newlines of ``data`` is."""
    guess = len(data) * count // lines
    before = data.count(b"\n", 0, guess)
    if before >= count:  # too far: back to the line before
        at = guess
        for _ in range(before - count + 1):
            at = data.rfind(b"\n", 0, at)
        return at
    at = guess - 1
    for _ in range(count - before):
        at = data.find(b"\n", at + 1)
    return at
