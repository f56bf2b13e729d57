"""A packing vault's upkeep, for ``dmp vault compact`` and ``dmp vault leftovers``: a
shard's index objects merged into one, and packs that no index names found and removed.

Compaction. Each pack adds an index object to each shard it has members in, so a shard
gathers one small object per pack, and planning reads them all. ``compact`` merges the
objects a listing of the shard finds (``dmp_cli.packs.catalog.merge``) into one,
``merged-<sha256>.idx``, writes it, reads it back and checks it, and only then deletes
what it merged. An archive run that adds an index object meanwhile is not touched: it was
not listed. A reader that listed the shard before the deletes and finds an object gone
lists the shard again (``dmp_cli.runs.packing``), and then finds the merged one, which
was written first: no packed checksum is ever missing from the catalog.

Leftovers. A pack is stored before its index objects; a worker killed between the two
leaves a pack that no index names, whose files the next run packs again. ``leftovers``
lists the packs no index object names (read from index objects' names, and from merged
ones' pack lists); ``remove`` deletes those written longer ago than a given age, so that
a pack whose index objects are being written at that moment is left alone.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dmp_cli.errors import StoreError
from dmp_cli.packs.catalog import IndexReader, merge
from dmp_cli.packs.config import (
    PACKS,
    VaultConfig,
    index_prefix,
    merged_index_key,
    parse_index_key,
    parse_pack_key,
)
from dmp_cli.retry import with_retries
from dmp_cli.store import Store

# Index objects merged at once (each is open while they are merged); more are merged in
# rounds, a merge of merges being the same.
MERGE_AT_ONCE = 256
# Packs written more recently than this are not removed as leftovers by default: their
# index objects may be being written.
LEFTOVER_AGE = timedelta(days=1)


@dataclass
class Compacted:
    """What compacting one shard did."""

    shard: str
    merged: int = 0  # index objects merged (0: the shard had one at most)
    entries: int = 0
    key: str | None = None  # the merged object written


def compact(store: Store, config: VaultConfig, shard: str) -> Compacted:
    """Merge the index objects of ``shard`` into one, if it has more than one."""
    prefix = index_prefix(shard)
    keys = with_retries(lambda: sorted(key for key, _ in store.list_keys(prefix)))
    names = [key for key in keys if (parsed := parse_index_key(key)) and not parsed.fence]
    done = Compacted(shard)
    if len(names) < 2:
        return done
    readers = []
    for key in names:
        data = with_retries(lambda key=key: store.get_bytes(key))  # type: ignore[misc]
        if data is None:
            continue  # compacted meanwhile by another run: what is left is merged
        readers.append(IndexReader(io.BytesIO(data), store.key_url(key), shard))
    if len(readers) < 2:
        return done
    data, digest = _merged(readers)
    key = merged_index_key(shard, digest)
    with_retries(lambda: store.put_bytes(key, data))
    back = with_retries(lambda: store.get_bytes(key))
    if back is None or hashlib.sha256(back).hexdigest() != digest:
        raise StoreError(f"{store.key_url(key)}: the merged index did not read back as written")
    check = IndexReader(io.BytesIO(back), store.key_url(key), shard)
    done.entries = sum(1 for _ in check.entries())
    for old in (reader.name for reader in readers):
        name = _key_of(store, old)
        if name != key:
            with_retries(lambda name=name: store.delete(name))  # type: ignore[misc]
    done.merged, done.key = len(readers), key
    return done


def _merged(readers: list[IndexReader]) -> tuple[bytes, str]:
    """The one index object of ``readers``' entries (merged in rounds if they are many)."""
    while len(readers) > MERGE_AT_ONCE:
        rounds = []
        for start in range(0, len(readers), MERGE_AT_ONCE):
            out = io.BytesIO()
            merge(readers[start : start + MERGE_AT_ONCE], out)
            rounds.append(IndexReader(io.BytesIO(out.getvalue()), readers[start].name))
        readers = rounds
    out = io.BytesIO()
    digest, _ = merge(readers, out)
    return out.getvalue(), digest


def _key_of(store: Store, url: str) -> str:
    """The key of an object named by its address (``store.key_url``)."""
    base = store.key_url("")
    return url[len(base) :] if url.startswith(base) else url


def compact_all(
    store: Store, config: VaultConfig, on_shard: Callable[[Compacted], None] | None = None
) -> list[Compacted]:
    """Compact every shard of the catalog, one after another."""
    results = []
    for shard in config.shards():
        result = compact(store, config, shard)
        results.append(result)
        if on_shard is not None:
            on_shard(result)
    return results


@dataclass(frozen=True)
class Leftover:
    """A pack that no index object names."""

    key: str
    size: int
    written: datetime


@dataclass
class LeftoversReport:
    found: list[Leftover] = field(default_factory=list)
    removed: list[Leftover] = field(default_factory=list)


def leftovers(store: Store, config: VaultConfig) -> Iterator[Leftover]:
    """The packs of the vault that no index object names, oldest first."""
    named: set[str] = set()
    for shard in config.shards():
        prefix = index_prefix(shard)
        for key, _ in with_retries(lambda prefix=prefix: list(store.list_keys(prefix))):  # type: ignore[misc]
            parsed = parse_index_key(key)
            if parsed is None or parsed.fence:
                continue
            if not parsed.merged:  # a pack's own index object: named by it
                named.add(parsed.digest)
                continue
            data = with_retries(lambda key=key: store.get_bytes(key))  # type: ignore[misc]
            if data is not None:  # a merged index: the packs it lists
                named.update(IndexReader(io.BytesIO(data), store.key_url(key), shard).packs)
    packs = with_retries(lambda: list(store.list_dated(PACKS)))
    found = [
        Leftover(key, size, written)
        for key, size, written in packs
        if (pack := parse_pack_key(key)) is not None and pack not in named
    ]
    yield from sorted(found, key=lambda leftover: (leftover.written, leftover.key))


def sweep_leftovers(
    store: Store,
    config: VaultConfig,
    remove: bool,
    older_than: timedelta = LEFTOVER_AGE,
    now: datetime | None = None,
) -> LeftoversReport:
    """List the leftover packs; with ``remove``, delete those written at least
    ``older_than`` ago."""
    report = LeftoversReport(list(leftovers(store, config)))
    if remove:
        cutoff = (now or datetime.now(UTC)) - older_than
        for leftover in report.found:
            if leftover.written <= cutoff:
                with_retries(lambda key=leftover.key: store.delete(key))  # type: ignore[misc]
                report.removed.append(leftover)
    return report


__all__ = [
    "Compacted",
    "Leftover",
    "LeftoversReport",
    "compact",
    "compact_all",
    "leftovers",
    "sweep_leftovers",
]
