"""A packing vault's side of --vault, --archive and --fetch: which of a manifest's
checksums are packed, read from the catalog's shards; and, for --archive, the small files
the vault lacks gathered into packs before the files are gone through one by one.

A vault with a config object (``vault.json``, ``dmp vault init``) packs files smaller than
its ``pack_below``. Without one, nothing here runs: the seed's layout, as ever.

Lookups. The manifest's distinct checksums are read once, by first-level prefix
(``Checksums``); for each shard of the catalog that holds any of them, the shard's index
objects are listed and read, and each checksum of the manifest found there is noted with
its pack, offset and size (``Packed``: a dict, or an sqlite table past many). A shard
whose index objects change while it is read (a compaction replacing them) is read again.

Packing. The manifest is read again; each first entry of a checksum that neither the
listing (when the run planned by listing) nor the catalog found, whose file is a regular
file smaller than ``pack_below``, joins the next pack. A pack is cut at ``pack_target``
bytes and goes as one item of executor work (``dmp_cli.packing``); a run's last pack
joins the one before if under half the target. What each pack row says (packed, refused
as changed, failed) goes into ``Packed``, which the run's items are then annotated from.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import tempfile
import weakref
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dmp_cli.errors import ObjectMissing, RunStopped
from dmp_cli.executor import Executor
from dmp_cli.manifest import open_manifest, parse_lines
from dmp_cli.options import Options, StoreSpec, Work
from dmp_cli.packing import OP_NAME, pack_item
from dmp_cli.packs.catalog import IndexReader, lookup
from dmp_cli.packs.config import VaultConfig, index_prefix, parse_index_key
from dmp_cli.packs.pack import DEFAULT_GAP, Member, coalesce, cut, member_size
from dmp_cli.retry import with_retries
from dmp_cli.rows import Item
from dmp_cli.runs.planning import SPILL_DISTINCT, Checksums, Plan
from dmp_cli.store import Store
from dmp_cli.words import plural

# An index object this big or smaller is read whole; a bigger one through a temporary file.
WHOLE_INDEX = 8 << 20

# What is known of a checksum: ("packed", pack, offset, size, new, start, end), its member
# of a pack, whether this run stored it, and the bytes of the pack that a fetch reads for
# it (``reads_by_pack``); ("plain",) for one a pack's HEAD found stored plain; or
# ("failed", why, transient).
Known = tuple[Any, ...]


class Packed:
    """Checksums (32 raw bytes) and what is known of each: a dict in memory while they
    are few, then sqlite's temporary database (removed by sqlite as it opens it)."""

    def __init__(self, limit: int = SPILL_DISTINCT) -> None:
        self.limit = limit
        self._memory: dict[bytes, Known] | None = {}
        self._db: sqlite3.Connection | None = None
        self._closer: weakref.finalize[[], Packed] | None = None
        self.count = 0
        # A fetch's reads of each pack, (start, end) sorted (``plan_reads``).
        self.reads: dict[str, list[tuple[int, int]]] = {}

    def put(self, raw: bytes, known: Known) -> None:
        if self._memory is not None:
            if raw not in self._memory:
                self.count += 1
            self._memory[raw] = known
            if len(self._memory) > self.limit:
                self._spill()
            return
        assert self._db is not None
        cursor = self._db.execute("SELECT 1 FROM known WHERE digest = ?", (raw,))
        if cursor.fetchone() is None:
            self.count += 1
        self._db.execute("INSERT OR REPLACE INTO known VALUES (?, ?)", (raw, _encode(known)))

    def get(self, raw: bytes) -> Known | None:
        if self._memory is not None:
            return self._memory.get(raw)
        assert self._db is not None
        found = self._db.execute("SELECT what FROM known WHERE digest = ?", (raw,)).fetchone()
        return None if found is None else _decode(found[0])

    def _spill(self) -> None:
        assert self._memory is not None
        db = sqlite3.connect("", check_same_thread=False)  # "": a temporary database
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("CREATE TABLE known (digest BLOB PRIMARY KEY, what TEXT) WITHOUT ROWID")
        db.executemany(
            "INSERT INTO known VALUES (?, ?)",
            ((raw, _encode(known)) for raw, known in self._memory.items()),
        )
        self._db, self._memory = db, None
        self._closer = weakref.finalize(self, db.close)

    def by_pack(self) -> Iterator[list[tuple[bytes, Known]]]:
        """The checksums noted as packed, a pack's at a time (on disk, sorted by pack as
        sqlite reads them, so that memory holds one pack's members)."""
        if self._memory is not None:
            groups: dict[str, list[tuple[bytes, Known]]] = {}
            for raw, known in self._memory.items():
                if known[0] == "packed":
                    groups.setdefault(known[1], []).append((raw, known))
            yield from groups.values()
            return
        assert self._db is not None
        rows = self._db.execute(
            "SELECT digest, what FROM known WHERE what LIKE 'packed%' ORDER BY what"
        )
        group: list[tuple[bytes, Known]] = []
        while chunk := rows.fetchmany(4096):
            for raw, what in chunk:
                known = _decode(what)
                if group and group[0][1][1] != known[1]:
                    yield group
                    group = []
                group.append((raw, known))
        if group:
            yield group

    def close(self) -> None:
        if self._closer is not None:
            self._closer()
        self._db = None
        self._memory = {}


def _encode(known: Known) -> str:
    return "\t".join(str(int(v)) if isinstance(v, bool) else str(v) for v in known)


def _decode(text: str) -> Known:
    fields = text.split("\t")
    if fields[0] == "packed":
        offset, size, start, end = (int(field) for field in fields[2:4] + fields[5:7])
        return ("packed", fields[1], offset, size, fields[4] == "1", start, end)
    if fields[0] == "failed":
        return ("failed", fields[1], fields[2] == "1")
    return ("plain",)


class _Hex(Sequence[str]):
    """A sorted block of 32-byte checksums seen as their hex, for bisection."""

    def __init__(self, block: bytes) -> None:
        self.block = block

    def __len__(self) -> int:
        return len(self.block) // 32

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        return self.block[index * 32 : (index + 1) * 32].hex()


def manifest_checksums(manifest: str, shown: str | None) -> Checksums:
    """The manifest's distinct checksums, by first-level prefix, sorted."""
    checksums = Checksums(SPILL_DISTINCT)
    try:
        with open_manifest(manifest, shown) as stream:
            for line in parse_lines(stream):
                if line.entry is not None:
                    checksums.add(line.entry.digest)
        checksums.finish()
    except BaseException:
        checksums.close()
        raise
    return checksums


def read_catalog(
    store: Store, config: VaultConfig, checksums: Checksums, packed: Packed
) -> dict[str, int]:
    """Note in ``packed`` each checksum of ``checksums`` that the catalog holds; the size
    of each pack that holds any."""
    sizes: dict[str, int] = {}
    for shard in config.shards():
        prefixes = sorted(p for p in checksums.counts if p.startswith(shard))
        if not prefixes:
            continue
        wanted = _Hex(b"".join(checksums.block(p) for p in prefixes))
        _read_shard(store, shard, wanted, packed, sizes)
    return sizes


def _read_shard(
    store: Store, shard: str, wanted: _Hex, packed: Packed, sizes: dict[str, int]
) -> int:
    """One shard's index objects read, its entries for ``wanted`` noted; listed and read
    again while an object listed is gone by the time it is read (compacted meanwhile)."""
    prefix = index_prefix(shard)
    read = 0
    while True:
        keys = with_retries(lambda: sorted(store.list_keys(prefix)))
        names = [(key, size) for key, size in keys if key.endswith(".idx") and parse_index_key(key)]
        complete = True
        for key, size in names:
            with _index_lines(store, key, size) as lines:
                if lines is None:
                    complete = False  # replaced by a merged index meanwhile: list again
                    continue
                read += 1
                _note(IndexReader(lines, store.key_url(key), shard), wanted, packed, sizes)
        if complete:
            return read


def _note(reader: IndexReader, wanted: _Hex, packed: Packed, sizes: dict[str, int]) -> None:
    """The entries of one index object for ``wanted``, noted."""
    for entry in lookup(wanted, reader):
        raw = bytes.fromhex(entry.digest)
        if packed.get(raw) is None:
            end = entry.offset + entry.size
            packed.put(
                raw, ("packed", entry.pack, entry.offset, entry.size, False, entry.offset, end)
            )
            sizes[entry.pack] = reader.packs[entry.pack]


@contextmanager
def _index_lines(store: Store, key: str, size: int) -> Iterator[Iterable[bytes] | None]:
    """An index object's lines (None if it is gone): a small one read whole, in one GET; a
    big one (a compacted shard) through a temporary file, so that memory does not grow with
    the catalog."""
    if size <= WHOLE_INDEX:
        data = with_retries(lambda: store.get_bytes(key))
        yield None if data is None else data.splitlines(keepends=True)
        return
    with tempfile.TemporaryFile(prefix="dmp-index-") as spool:

        def get() -> None:
            spool.seek(0)
            spool.truncate()
            store.get_file(key, spool)

        try:
            with_retries(get)
        except ObjectMissing:
            yield None
            return
        spool.seek(0)
        yield spool


def pack_missing(
    manifest: str,
    shown: str | None,
    executor: Executor,
    spec: StoreSpec,
    options: Options,
    config: VaultConfig,
    way: Plan,
    packed: Packed,
    on_note: Callable[[str], None],
) -> tuple[int, int]:
    """Pack the small files of ``manifest`` whose content the vault lacks; what each pack
    row says goes into ``packed``. The number of packs stored and of files in them."""
    answers = way.answers if way.way == "list" else None
    ask = answers is None  # planned by HEAD: each pack asks about its files first

    def candidates() -> Iterator[tuple[str, int, str]]:
        with open_manifest(manifest, shown) as stream:
            for line in parse_lines(stream):
                entry = line.entry
                if entry is None:
                    continue
                raw = bytes.fromhex(entry.digest)
                if packed.get(raw) is not None:
                    continue  # packed already, or met earlier in this manifest
                if (
                    answers is not None
                    and entry.digest[:2] not in way.failed
                    and answers.get(raw) is not None
                ):
                    continue  # a plain object the listing saw
                try:
                    st = os.stat(entry.path)
                except OSError:
                    continue  # the file's own row says why
                if not stat.S_ISREG(st.st_mode) or not config.packs(st.st_size):
                    continue
                packed.put(raw, ("failed", "not packed", False))  # until its pack says
                yield entry.digest, st.st_size, entry.path

    items = (
        _with_ask(pack_item(files, config.index_width), ask)
        for files in cut(candidates(), lambda file: member_size(file[1]), config.pack_target)
    )
    packs = files = 0
    for row in executor.map(Work.of(OP_NAME, spec, options), items):
        got: dict[str, Any] = dict(row)
        if got.get("fatal"):
            raise RunStopped(str(got.get("error")))
        if got.get("status") != "ok":
            why = str(got.get("error") or "the pack was not stored")
            for digest in got.get("files", []):
                packed.put(bytes.fromhex(digest), ("failed", why, bool(got.get("transient"))))
            continue
        for digest in got.get("present", []):
            packed.put(bytes.fromhex(digest), ("plain",))
        for digest, _path, why in got.get("refused", []):
            packed.put(bytes.fromhex(digest), ("failed", why, False))
        if got.get("members"):
            packs += 1
            for digest, offset, size in got["members"]:
                files += 1
                end = offset + size
                packed.put(
                    bytes.fromhex(digest), ("packed", got["pack"], offset, size, True, offset, end)
                )
    if packs:
        on_note(
            f"packed {plural(files, 'small file', 'small files')} into "
            f"{plural(packs, 'pack', 'packs')}"
        )
    return packs, files


def _with_ask(item: Item, ask: bool) -> Item:
    if ask:
        item["ask"] = True
    return item


def plan_reads(packed: Packed, sizes: dict[str, int], gap: int = DEFAULT_GAP) -> int:
    """For a fetch: the few ranged reads of each pack that bring its wanted members
    (``dmp_cli.packs.pack.coalesce``: near members share a read, most of a pack is read
    whole), kept by pack (``Packed.reads``: a few a pack) for ``annotate``. The number of
    reads."""
    count = 0
    for group in packed.by_pack():
        pack = group[0][1][1]
        members = [Member(raw.hex(), known[2], known[3]) for raw, known in group]
        reads = [(r.start, r.end) for r in coalesce(members, sizes.get(pack, 0), gap) if r.length]
        packed.reads[pack] = sorted(reads)
        count += len(reads)
    return count


def _read_of(packed: Packed, pack: str, offset: int, size: int) -> tuple[int, int]:
    """The read of the pack that holds the member at ``offset``: its own, if none does."""
    reads = packed.reads.get(pack)
    if reads and size:
        at = bisect_right(reads, (offset, 1 << 63)) - 1
        if at >= 0 and reads[at][0] <= offset and offset + size <= reads[at][1]:
            return reads[at]
    return offset, offset + size


def annotate(items: Iterable[Item], packed: Packed) -> Iterator[Item]:
    """The run's items, each whose checksum ``packed`` knows marked: ``packed`` (its pack,
    offset and size, and ``packed_new`` if this run stored it), or ``pack_error`` (why its
    pack was not stored, and ``pack_transient``). Only the first item of a checksum that
    this run packed is ``packed_new``: a later one (a detached job's items are not
    deduplicated) is a copy already archived, as it is in a vault without packs."""
    for item in items:
        digest = item.get("digest")
        if digest and not item.get("same"):
            raw = bytes.fromhex(digest)
            known = packed.get(raw)
            got: dict[str, Any] = item  # type: ignore[assignment]
            if known is not None and known[0] == "packed":
                start, end = _read_of(packed, known[1], known[2], known[3])
                got["packed"] = [known[1], known[2], known[3], start, end]
                if known[4]:
                    got["packed_new"] = True
                    packed.put(raw, (*known[:4], False, *known[5:]))
            elif known is not None and known[0] == "failed":
                got["pack_error"] = known[1]
                if known[2]:
                    got["pack_transient"] = True
        yield item


__all__ = [
    "Packed",
    "annotate",
    "manifest_checksums",
    "pack_missing",
    "read_catalog",
]
