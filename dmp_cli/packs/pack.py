"""Packs: deterministic POSIX (pax) tars of small files, each member named by its
checksum's vault key, written once and read back by byte ranges.

The same set of members gives the same bytes, hence the same sha256 (the pack's name): the
members go in checksum order, each with mtime 0, uid and gid 0, no user or group name and
mode 0644, and the archive ends as ``tarfile`` ends one (two zero blocks, padded to a
record). The headers are ``tarfile``'s own; the data is copied here, hashed on the way, so
that a member whose file changed since the manifest can be taken back out.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, TypeVar

from dmp_cli.digest import CHUNK, new_hasher
from dmp_cli.errors import IntegrityError
from dmp_cli.layout import digest_key

BLOCK = tarfile.BLOCKSIZE  # 512
RECORD = tarfile.RECORDSIZE  # 10240
# Two ranges of one pack closer than this are read by one GET: at some 100 MB/s a GET's
# latency (tens of ms) is worth a few MB, and a request costs as much as ~1 MiB sent out.
DEFAULT_GAP = 1 << 20

T = TypeVar("T")


@dataclass(frozen=True)
class Source:
    """A file to pack: the checksum and size the manifest gives it, and where it is."""

    digest: str
    size: int
    path: str


@dataclass(frozen=True, order=True)
class Member:
    """A packed file: its bytes are ``size`` bytes at ``offset`` in the pack."""

    digest: str
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True)
class Refused:
    """A file left out of a pack, and why (one line)."""

    source: Source
    reason: str


@dataclass
class Pack:
    """A pack as written: its sha256 and size, its members in order, the files refused."""

    digest: str
    size: int
    members: list[Member] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)


def _header(digest: str, size: int) -> bytes:
    info = tarfile.TarInfo(digest_key(digest))
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


def _padding(size: int) -> int:
    return -size % BLOCK


def member_size(size: int) -> int:
    """The bytes a file of ``size`` bytes takes in a pack: its header, data and padding."""
    return BLOCK + size + _padding(size)


def batches(sources: Iterable[Source], target: int) -> Iterator[list[Source]]:
    """``sources`` cut into packs, in checksum order; the sources of one checksum stay
    together (``write_pack`` packs it once, from the first of them that is unchanged). A
    batch is closed once it holds ``target`` bytes (``cut``)."""
    by_digest: dict[str, list[Source]] = {}
    for source in sources:
        by_digest.setdefault(source.digest, []).append(source)
    groups = (by_digest[digest] for digest in sorted(by_digest))
    for batch in cut(groups, lambda group: member_size(group[0].size), target):
        yield [source for group in batch for source in group]


def cut(things: Iterable[T], size: Callable[[T], int], target: int) -> Iterator[list[T]]:
    """``things`` in batches, in their order, each closed once it holds ``target`` bytes
    (by ``size``), so that it passes its target by less than one thing; a last batch of
    less than half the target joins the one before it, so that packs are small only where
    the files are too few. One pass, one batch held back at a time."""
    held: list[T] | None = None
    batch: list[T] = []
    total = 0
    for thing in things:
        batch.append(thing)
        total += size(thing)
        if total >= target:
            if held is not None:
                yield held
            held, batch, total = batch, [], 0
    if held is not None and batch and total < target // 2:
        held, batch = held + batch, []
    if held is not None:
        yield held
    if batch:
        yield batch


def write_pack(sources: Iterable[Source], out: BinaryIO) -> Pack:
    """Write the pack of ``sources`` to ``out`` (a seekable file opened for writing, empty,
    at its start) and say what it holds.

    Each file is read once, hashed as it is copied. One whose bytes do not hash to its
    checksum, or that cannot be read, is taken back out (the pack's bytes are as if it had
    never been offered) and listed in ``refused``; another file with the same checksum is
    tried in its place. Checksums offered twice are packed once. An error writing ``out``
    is raised as OSError."""
    by_digest: dict[str, list[Source]] = {}
    for source in sources:
        by_digest.setdefault(source.digest, []).append(source)
    hasher = new_hasher()
    offset = 0
    pack = Pack("", 0)
    for digest in sorted(by_digest):
        for source in by_digest[digest]:
            start_hasher = hasher.copy()
            header = _header(digest, source.size)
            problem = _add(source, header, out, hasher)
            if problem is None:
                pack.members.append(Member(digest, offset + len(header), source.size))
                offset = out.tell()
                break
            pack.refused.append(Refused(source, problem))
            hasher = start_hasher
            out.seek(offset)
            out.truncate()
    trailer = bytes(2 * BLOCK)
    trailer += bytes(-(offset + len(trailer)) % RECORD)
    out.write(trailer)
    hasher.update(trailer)
    out.flush()
    pack.digest = hasher.hexdigest()
    pack.size = offset + len(trailer)
    return pack


def _add(source: Source, header: bytes, out: BinaryIO, hasher: hashlib._Hash) -> str | None:
    """Append one member; the reason it was refused, or None. Writes to ``out`` raise."""
    update = hasher.update
    try:
        fd = os.open(source.path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        return f"{exc.strerror or exc}; not packed"
    try:
        out.write(header)
        update(header)
        check = new_hasher()
        left = source.size
        while left > 0:
            try:
                chunk = os.read(fd, min(CHUNK, left))
            except OSError as exc:
                return f"{exc.strerror or exc}; not packed"
            if not chunk:
                return "shorter than the manifest says (changed since it was made); not packed"
            check.update(chunk)
            out.write(chunk)
            update(chunk)
            left -= len(chunk)
        try:
            longer = os.read(fd, 1)
        except OSError as exc:
            return f"{exc.strerror or exc}; not packed"
        if longer:
            return "longer than the manifest says (changed since it was made); not packed"
        got = check.hexdigest()
        if got != source.digest:
            return f"changed since the manifest was made (sha256 now {got}); not packed"
        pad = bytes(_padding(source.size))
        out.write(pad)
        update(pad)
        return None
    finally:
        os.close(fd)


@dataclass(frozen=True)
class RangeRead:
    """One ranged GET of a pack: bytes ``start`` to ``end`` (exclusive), holding these
    members. One of length 0 needs no request: its members are all empty."""

    start: int
    end: int
    members: tuple[Member, ...]

    @property
    def length(self) -> int:
        return self.end - self.start

    def http_range(self) -> str:
        """The Range header's value (not for a read of length 0)."""
        return f"bytes={self.start}-{self.end - 1}"


def coalesce(members: Iterable[Member], pack_size: int, gap: int = DEFAULT_GAP) -> list[RangeRead]:
    """The few ranged reads that fetch these members of one pack of ``pack_size`` bytes.

    A read costs a request and its bytes; ``gap`` is the number of bytes a request is worth.
    Members less than ``gap`` bytes apart share a read, so a read never skips more than
    ``gap`` bytes and two reads are always more than ``gap`` apart; the whole pack is read
    instead when that adds fewer than ``gap`` bytes to a single read (all or most of its
    members wanted: a fetch of a whole tree reads each pack once). Empty members need no
    bytes: they go into a read of length 0, listed last."""
    wanted = sorted(set(members), key=lambda m: (m.offset, m.digest))
    reads: list[RangeRead] = []
    empty: list[Member] = []
    start = end = -1
    group: list[Member] = []
    for member in wanted:
        if member.size == 0:
            empty.append(member)
            continue
        if group and member.offset - end <= gap:
            group.append(member)
            end = max(end, member.end)
            continue
        if group:
            reads.append(RangeRead(start, end, tuple(group)))
        start, end, group = member.offset, member.end, [member]
    if group:
        reads.append(RangeRead(start, end, tuple(group)))
    if len(reads) == 1 and pack_size - reads[0].length <= gap:
        reads = [RangeRead(0, pack_size, reads[0].members)]
    if empty:
        reads.append(RangeRead(0, 0, tuple(empty)))
    return reads


def extract(
    read: RangeRead, stream: BinaryIO, out_for: Callable[[Member], BinaryIO], pack: str
) -> Iterator[tuple[Member, IntegrityError | None]]:
    """Copy each member of ``read`` out of ``stream`` (the bytes of the read, from its
    start) into ``out_for(member)``, hashing it on the way, and yield it with None once its
    bytes hash to its checksum, or with an IntegrityError naming the pack object ``pack``
    and the member: the caller must then not put that output in place."""
    at = read.start
    for member in read.members:
        out = out_for(member)
        if member.size == 0:
            yield member, _verdict(new_hasher().hexdigest(), member, pack)
            continue
        if member.offset < at:
            raise ValueError(f"{pack}: members of a read must not overlap")
        _skip(stream, member.offset - at)
        hasher = new_hasher()
        left = member.size
        while left > 0:
            chunk = stream.read(min(CHUNK, left))
            if not chunk:
                break
            hasher.update(chunk)
            out.write(chunk)
            left -= len(chunk)
        at = member.end - left
        if left:
            yield (
                member,
                IntegrityError(
                    f"{pack}: member {digest_key(member.digest)} cut short "
                    f"({member.size - left} of {member.size} bytes)"
                ),
            )
            continue
        yield member, _verdict(hasher.hexdigest(), member, pack)


def _verdict(got: str, member: Member, pack: str) -> IntegrityError | None:
    if got == member.digest:
        return None
    return IntegrityError(
        f"{pack}: member {digest_key(member.digest)} does not hash to its name (sha256 {got})"
    )


def _skip(stream: BinaryIO, count: int) -> None:
    while count > 0:
        chunk = stream.read(min(CHUNK, count))
        if not chunk:
            return
        count -= len(chunk)
