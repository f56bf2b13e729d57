"""A fence: the small object beside a big index object that lets one checksum be found with
two reads, the fence and one ranged read of the index, instead of the whole index.

It holds the index object's sha256 and size, its pack list, and every ``every``-th entry's
checksum with the byte offset of its line in the index::

    dmp-fence 1
    index <index sha256> <index size>
    pack <pack sha256> <pack size>          (as in the index)
    <checksum> <offset>                     (by offset)

At 1,024 entries a step, a shard of 6 million entries has a fence of some 500 KB and reads
of some 80 KB of its index.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from typing import BinaryIO, NoReturn

from dmp_cli.packs.catalog import CatalogError, IndexReader

MAGIC = b"dmp-fence"
VERSION = 1
EVERY = 1024
_INDEX = re.compile(rb"index ([0-9a-f]{64}) (0|[1-9][0-9]{0,18})\n\Z")
_PACK = re.compile(rb"pack ([0-9a-f]{64}) (0|[1-9][0-9]{0,18})\n\Z")
_POST = re.compile(rb"([0-9a-f]{64}) (0|[1-9][0-9]{0,18})\n\Z")


def write_fence(
    index: IndexReader, digest: str, size: int, out: BinaryIO, every: int = EVERY
) -> None:
    """Write the fence of ``index`` (just opened: its entries not yet read), an object of
    ``size`` bytes whose sha256 is ``digest``, to ``out``."""
    out.write(MAGIC + b" %d\n" % VERSION)
    out.write(b"index %s %d\n" % (digest.encode(), size))
    for pack in sorted(index.packs):
        out.write(b"pack %s %d\n" % (pack.encode(), index.packs[pack]))
    for n, (at, entry) in enumerate(index.entries_at()):
        if n % every == 0:
            out.write(b"%s %d\n" % (entry.digest.encode(), at))
    out.flush()


class Fence:
    """A fence, read whole (it is small): ``span`` says which bytes of its index to read
    for a checksum, ``reader`` reads them."""

    def __init__(self, lines: Iterable[bytes], name: str) -> None:
        self.name = name
        self._number = 0
        it = iter(lines)

        def next_line() -> bytes | None:
            self._number += 1
            return next(it, None)

        header = next_line()
        if header != MAGIC + b" %d\n" % VERSION:
            if header is not None and header.startswith(MAGIC + b" "):
                version = header[len(MAGIC) + 1 :].strip().decode("ascii", "replace")
                self._fail(f"fence version {version} is not one this dmp knows; use a newer dmp")
            self._fail("not a dmp fence (no header line)")
        match = _INDEX.match(next_line() or b"")
        if not match:
            self._fail("unreadable index line")
        self.index = match.group(1).decode()
        self.size = int(match.group(2))
        self.packs: dict[str, int] = {}
        self.starts: list[str] = []
        self.offsets: list[int] = []
        while (line := next_line()) is not None:
            if line.startswith(b"pack ") and not self.starts:
                found = _PACK.match(line)
                if not found or found.group(1).decode() in self.packs:
                    self._fail("unreadable pack line")
                self.packs[found.group(1).decode()] = int(found.group(2))
                continue
            post = _POST.match(line)
            if not post:
                self._fail("unreadable line (want: checksum offset)")
            digest, offset = post.group(1).decode(), int(post.group(2))
            if self.starts and (digest < self.starts[-1] or offset <= self.offsets[-1]):
                self._fail("lines out of order")
            if offset >= self.size:
                self._fail(f"offset {offset} past the index's {self.size} bytes")
            self.starts.append(digest)
            self.offsets.append(offset)

    def _fail(self, what: str) -> NoReturn:
        raise CatalogError(f"{self.name}: line {self._number}: {what}")

    def span(self, digest: str) -> tuple[int, int] | None:
        """The bytes [start, end) of the index that hold every entry of ``digest``, if any
        can: from the step before the first that starts at or past it (a checksum in
        several packs may straddle a step), to the first that starts past it."""
        first = bisect_left(self.starts, digest) - 1
        last = bisect_right(self.starts, digest)
        start = self.offsets[max(first, 0)] if self.offsets else 0
        end = self.offsets[last] if last < len(self.offsets) else self.size
        if last == 0 or start >= end:
            return None
        return start, end

    def reader(
        self, lines: Iterable[bytes], span: tuple[int, int], name: str, shard: str | None = None
    ) -> IndexReader:
        """The entries in the bytes ``span`` of the index object ``name``, read as ``lines``."""
        where = f"{name} (bytes {span[0]}-{span[1] - 1})"
        return IndexReader(lines, where, shard, packs=self.packs)
