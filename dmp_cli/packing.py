"""Packing vaults' operations: a pack made of small files and stored with its index, and a
packed file's bytes read out of its pack.

``pack_op`` takes one item that names a batch of small files the vault lacks (their
checksums, sizes and paths) and makes their pack (``dmp_cli.packs.pack``) in a temporary
file: each file read once, hashed on the way, one that changed since the manifest taken
back out. The pack is stored under its own sha256 (a put-if-absent: the same members give
the same bytes), then its index objects, one per shard (``dmp_cli.packs.catalog``). The
row lists the members only once all of them are written: a checksum is in the vault once
an index naming its pack is, and a pack whose indexes were not all written is a leftover
whose files are packed again by the next run.

Like every operation it takes an item and returns a row, so it runs in the embedded
executor's threads and as a task on the fleet's workers.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections import OrderedDict
from typing import Any

from dmp_cli.errors import ColdObject, ObjectExists, StoreError
from dmp_cli.ops import Context, Operation
from dmp_cli.packs.catalog import index_objects
from dmp_cli.packs.config import index_key, pack_key
from dmp_cli.packs.pack import Source, write_pack
from dmp_cli.retry import with_retries
from dmp_cli.rows import Item, Row
from dmp_cli.store import Store

OP_NAME = "pack"
# The bytes of packs read for a fetch that a process keeps for the members still to come.
READS_KEPT = 256 << 20


def pack_item(files: list[tuple[str, int, str]], width: int) -> Item:
    """The item of one pack: its files as (checksum, size, path), and the index's width."""
    item: dict[str, Any] = {"pack": [list(file) for file in files], "width": width}
    return item  # type: ignore[return-value]


def _base(item: Item, ctx: Context) -> Row:
    got: dict[str, Any] = dict(item)
    row: dict[str, Any] = {
        "status": "error",
        "bytes": 0,
        "files": [file[0] for file in got.get("pack", [])],
    }
    return row  # type: ignore[return-value]


def pack_op(item: Item, ctx: Context) -> Row:
    got: dict[str, Any] = dict(item)
    sources = [Source(digest, int(size), ctx.path(path)) for digest, size, path in got["pack"]]
    vault = ctx.vault()
    store = vault.store
    storage_class = ctx.options.storage_class  # the pack's: --archive --storage-class
    present: list[str] = []
    if got.get("ask"):  # planned by HEAD: what the vault holds as plain objects stays so
        held = {d for d in {s.digest for s in sources} if vault.head(d) is not None}
        present = sorted(held)
        sources = [source for source in sources if source.digest not in held]
    directory = os.environ.get("TMPDIR") or None
    with tempfile.TemporaryFile(prefix="dmp-pack-", dir=directory) as out:
        pack = write_pack(sources, out)
        refused = [[r.source.digest, r.source.path, r.reason] for r in pack.refused]
        row: dict[str, Any] = {
            "status": "ok",
            "bytes": 0,
            "files": [file[0] for file in got["pack"]],
            "refused": refused,
            "members": [],
            "present": present,
        }
        if not pack.members:
            return row  # type: ignore[return-value]
        key = pack_key(pack.digest)
        path = f"/proc/self/fd/{out.fileno()}"

        def put() -> int:
            try:
                return store.put_file(
                    key, path, pack.digest, pack.size, ctx.on_bytes, True, storage_class
                )
            except ObjectExists:  # the same members, packed before: the same bytes
                return 0

        sent = with_retries(put)
        # The index objects, read by every run, stay in the store's default class.
        for shard, data in sorted(index_objects(pack, int(got["width"])).items()):
            name = index_key(shard, pack.digest)
            with_retries(lambda name=name, data=data: store.put_bytes(name, data))  # type: ignore[misc]
    row["pack"] = pack.digest
    row["bytes"] = sent
    row["members"] = [[m.digest, m.offset, m.size] for m in pack.members]
    return row  # type: ignore[return-value]


def _where(item: Item, ctx: Context) -> str | None:
    return ctx.vault().store.key_url("packs/")


PACK = Operation(OP_NAME, pack_op, "io", base=_base, where=_where, per_thread=1)


class Reads:
    """The ranged reads of packs this process has made, kept while they are likely to be
    wanted again: a fetch's members of one pack that share a read (``coalesce``) come one
    after another, in whichever of the process's threads, and the first to come reads the
    range while the others wait for it. The least recently used go past ``limit`` bytes."""

    def __init__(self, limit: int = READS_KEPT) -> None:
        self.limit = limit
        self._kept: OrderedDict[tuple[str, str, int, int], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self._reading: dict[tuple[str, str, int, int], threading.Lock] = {}
        # A read refused as its pack is in cold storage, and when: the members that
        # waited for that read are refused alike, not each with a GET of its own.
        self._cold: dict[tuple[str, str, int, int], tuple[str, float]] = {}

    def get(self, store: Store, pack: str, start: int, end: int) -> bytes:
        key = (store.url, pack, start, end)
        with self._lock:
            data = self._kept.get(key)
            if data is not None:
                self._kept.move_to_end(key)
                return data
            reading = self._reading.setdefault(key, threading.Lock())
        asked = time.monotonic()
        with reading:
            with self._lock:
                data = self._kept.get(key)
                cold = self._cold.get(key)
            if data is not None:
                return data
            if cold is not None and cold[1] >= asked:  # the read waited for was refused
                raise ColdObject(cold[0])
            try:
                data = store.get_range(pack_key(pack), start, end - start)
            except ColdObject as exc:
                with self._lock:
                    self._cold[key] = (str(exc), time.monotonic())
                raise
            with self._lock:
                self._cold.pop(key, None)
                self._reading.pop(key, None)
                self._kept[key] = data
                self._size += len(data)
                while self._size > self.limit and len(self._kept) > 1:
                    _, old = self._kept.popitem(last=False)
                    self._size -= len(old)
            return data

    def forget(self, store: Store, pack: str, start: int, end: int) -> None:
        """Drop a read whose bytes proved wrong (a member that does not hash to its
        name), so that the next member or attempt reads the range again."""
        with self._lock:
            data = self._kept.pop((store.url, pack, start, end), None)
            if data is not None:
                self._size -= len(data)


READS = Reads()


def read_member(store: Store, packed: list[Any], alone: bool = False) -> bytes:
    """A packed file's bytes, ``packed`` being its pack's sha256, its offset and size in
    the pack, and the range of the pack read for it (with its neighbours): from that
    read, made once (``Reads``); or ``alone``, by a ranged read of its own, the read kept
    forgotten (its bytes did not hash to the member's name: spoiled on the way, or kept
    from before the pack was mended). Verified by the caller, as every fetched file is."""
    pack, offset, size = packed[0], int(packed[1]), int(packed[2])
    start, end = (int(packed[3]), int(packed[4])) if len(packed) > 4 else (offset, offset + size)
    if size == 0:
        return b""
    if alone:
        READS.forget(store, pack, start, end)
        return store.get_range(pack_key(pack), offset, size)
    data = READS.get(store, pack, start, end)
    piece = data[offset - start : offset - start + size]
    if len(piece) != size:
        raise StoreError(f"{store.key_url(pack_key(pack))}: a read of the pack came back short")
    return piece


__all__ = ["OP_NAME", "PACK", "pack_item", "pack_op", "read_member"]
