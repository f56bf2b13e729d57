"""The catalog: which pack holds a checksum, and where in it, as index objects sharded by
the checksum's first hex digits.

An index object is text, one line each, sorted so that it can be streamed and merged::

    dmp-index 1
    pack <pack sha256> <pack size>                      (its packs, by sha256)
    <checksum> <pack number> <data offset> <size>       (by checksum, then pack)

A pack's number is its place in the object's own pack list, from 0, so a line costs some
80 bytes. Every checksum of an object is in its shard. Reading one streams it: memory
holds the pack list and a line, never the object.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, NoReturn

from dmp_cli.errors import DmpError
from dmp_cli.packs.pack import BLOCK, Member, Pack

MAGIC = b"dmp-index"
VERSION = 1
_PACK = re.compile(rb"pack ([0-9a-f]{64}) (0|[1-9][0-9]{0,18})\n\Z")
_ENTRY = re.compile(
    rb"([0-9a-f]{64}) (0|[1-9][0-9]{0,9}) ([1-9][0-9]{0,18}) (0|[1-9][0-9]{0,18})\n\Z"
)


class CatalogError(DmpError):
    """An index object does not parse, or contradicts itself or another."""


@dataclass(frozen=True, order=True)
class Entry:
    """A packed checksum: its bytes are ``size`` bytes at ``offset`` in the pack ``pack``."""

    digest: str
    pack: str
    offset: int
    size: int

    def member(self) -> Member:
        return Member(self.digest, self.offset, self.size)


def pack_entries(pack: Pack) -> list[Entry]:
    return [Entry(m.digest, pack.digest, m.offset, m.size) for m in pack.members]


def index_objects(pack: Pack, width: int) -> dict[str, bytes]:
    """A new pack's index objects, one per shard (the first ``width`` hex digits of the
    checksum) that holds any of its members: shard -> the object's bytes."""
    shards: dict[str, list[Entry]] = {}
    for entry in sorted(pack_entries(pack)):
        shards.setdefault(entry.digest[:width], []).append(entry)
    return {
        shard: b"".join(_encode({pack.digest: pack.size}, entries))
        for shard, entries in shards.items()
    }


def _encode(packs: dict[str, int], entries: Iterable[Entry]) -> Iterator[bytes]:
    """The lines of an index of ``entries`` (sorted, each pack's in ``packs``)."""
    yield MAGIC + b" %d\n" % VERSION
    number = {}
    for n, pack in enumerate(sorted(packs)):
        number[pack] = n
        yield b"pack %s %d\n" % (pack.encode(), packs[pack])
    for entry in entries:
        yield b"%s %d %d %d\n" % (
            entry.digest.encode(),
            number[entry.pack],
            entry.offset,
            entry.size,
        )


class IndexReader:
    """One index object, read as a stream of lines (a file opened in binary mode does).
    Making it reads the header and the pack list; ``entries`` reads the rest, once.

    ``name`` (the object's address) is in every error; ``shard``, when given, is the shard
    the object was found under, which every checksum must be in. With ``packs`` (the
    object's pack list, from its fence), ``lines`` are a part of the object that begins at
    an entry: there is no header to read."""

    def __init__(
        self,
        lines: Iterable[bytes],
        name: str,
        shard: str | None = None,
        packs: dict[str, int] | None = None,
    ) -> None:
        self.name = name
        self.shard = shard
        self._lines = iter(lines)
        self._number = 0
        self._read = 0  # bytes read so far
        self._first: bytes | None = None
        self.packs: dict[str, int] = {}
        self._list: list[str] = []
        if packs is not None:  # a part of an object, from a line on: its packs are known
            self._list = sorted(packs)
            self.packs = dict(packs)
            self._first = self._next()
            return
        header = self._next()
        if header != MAGIC + b" %d\n" % VERSION:
            if header is not None and header.startswith(MAGIC + b" "):
                version = header[len(MAGIC) + 1 :].strip().decode("ascii", "replace")
                self._fail(f"index version {version} is not one this dmp knows; use a newer dmp")
            self._fail("not a dmp index (no header line)")
        while (line := self._next()) is not None and line.startswith(b"pack "):
            match = _PACK.match(line)
            if not match:
                self._fail("unreadable pack line")
            pack = match.group(1).decode()
            if self._list and pack <= self._list[-1]:
                self._fail("packs out of order")
            self._list.append(pack)
            self.packs[pack] = int(match.group(2))
        self._first = line

    def _next(self) -> bytes | None:
        self._number += 1
        line = next(self._lines, None)
        if line is not None:
            self._read += len(line)
        return line

    def _fail(self, what: str) -> NoReturn:
        raise CatalogError(f"{self.name}: line {self._number}: {what}")

    def entries(self) -> Iterator[Entry]:
        """The entries in order (checksum, then pack); CatalogError at the first that does
        not parse, is out of order or out of its shard, or lies outside its pack."""
        for _, entry in self.entries_at():
            yield entry

    def entries_at(self) -> Iterator[tuple[int, Entry]]:
        """The entries, each with the byte offset of its line in what was read."""
        line = self._first
        last: tuple[str, int] | None = None
        while line is not None:
            match = _ENTRY.match(line)
            if not match:
                self._fail("unreadable entry (want: checksum pack offset size)")
            digest = match.group(1).decode()
            number, offset, size = (int(match.group(i)) for i in (2, 3, 4))
            if number >= len(self._list):
                self._fail(f"pack number {number} not in the object's {len(self._list)} packs")
            if last is not None and (digest, number) <= last:
                self._fail("entries out of order")
            if self.shard is not None and not digest.startswith(self.shard):
                self._fail(f"checksum {digest} is not in shard {self.shard}")
            pack = self._list[number]
            if offset < BLOCK or offset + size > self.packs[pack]:
                self._fail(f"member at {offset}+{size} lies outside its pack")
            last = (digest, number)
            yield self._read - len(line), Entry(digest, pack, offset, size)
            line = self._next()


def lookup(wanted: Sequence[str], index: IndexReader) -> Iterator[Entry]:
    """The entries of ``index`` whose checksums are in ``wanted`` (sorted ascending, each
    once): one pass over the object, which stops as soon as no later line can match. The
    same checksum may be in several packs: each is yielded."""
    lo = 0
    for entry in index.entries():
        lo = bisect_left(wanted, entry.digest, lo)
        if lo == len(wanted):
            return
        if wanted[lo] == entry.digest:
            yield entry


def merge(indexes: Sequence[IndexReader], out: BinaryIO) -> tuple[str, int]:
    """Write to ``out`` the one index object that holds every entry of ``indexes`` (of one
    shard): the same entries give the same bytes, whatever objects they came from. Return
    its sha256 and size. Raise CatalogError if two of them disagree about a pack or member.
    Every index is open at once: merge many in batches (a merge of merges is the same)."""
    packs: dict[str, int] = {}
    for index in indexes:
        for pack, size in index.packs.items():
            if packs.setdefault(pack, size) != size:
                raise CatalogError(f"{index.name}: pack {pack} has another size in another index")
    merged = heapq.merge(*(_named(index) for index in indexes))
    hasher = hashlib.sha256()
    written = 0
    last: tuple[Entry, str] | None = None

    def entries() -> Iterator[Entry]:
        nonlocal last
        for entry, name in merged:
            if last is not None and (last[0].digest, last[0].pack) == (entry.digest, entry.pack):
                if last[0] != entry:
                    raise CatalogError(
                        f"{name}: checksum {entry.digest} in pack {entry.pack} is at "
                        f"{entry.offset}+{entry.size}, and elsewhere in {last[1]}"
                    )
                continue
            last = (entry, name)
            yield entry

    for line in _encode(packs, entries()):
        out.write(line)
        hasher.update(line)
        written += len(line)
    out.flush()
    return hasher.hexdigest(), written


def _named(index: IndexReader) -> Iterator[tuple[Entry, str]]:
    for entry in index.entries():
        yield entry, index.name
