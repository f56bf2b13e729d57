"""A packing vault's upkeep on a directory store: compaction and leftover packs."""

from __future__ import annotations

import hashlib
import io
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dmp_cli.packs.catalog import IndexReader, index_objects
from dmp_cli.packs.config import VaultConfig, index_key, index_prefix, pack_key
from dmp_cli.packs.pack import Source, write_pack
from dmp_cli.runs import packing
from dmp_cli.runs.packing import Packed, read_catalog
from dmp_cli.runs.planning import Checksums
from dmp_cli.store.local import FileStore
from dmp_cli.upkeep import compact, compact_all, leftovers, sweep_leftovers

CONFIG = VaultConfig(pack_below=1 << 20, pack_target=32 << 20)


def store_pack(store: FileStore, tmp: Path, contents: list[bytes], index: bool = True) -> str:
    """A pack of ``contents`` stored, with its index objects unless told not to."""
    sources = []
    for n, data in enumerate(contents):
        path = tmp / f"src-{hashlib.sha256(data).hexdigest()[:12]}-{n}"
        path.write_bytes(data)
        sources.append(Source(hashlib.sha256(data).hexdigest(), len(data), str(path)))
    out = tmp / "pack.tar"
    with open(out, "w+b") as stream:
        pack = write_pack(sources, stream)
    store.put_bytes(pack_key(pack.digest), out.read_bytes())
    if index:
        for shard, data in index_objects(pack, CONFIG.index_width).items():
            store.put_bytes(index_key(shard, pack.digest), data)
    return pack.digest


def found(store: FileStore, digests: list[str]) -> dict[str, str]:
    """The catalog's answer for ``digests``: checksum -> pack."""
    checksums = Checksums()
    for digest in digests:
        checksums.add(digest)
    checksums.finish()
    packed = Packed()
    try:
        read_catalog(store, CONFIG, checksums, packed)
        return {raw.hex(): known[1] for group in packed.by_pack() for raw, known in group}
    finally:
        packed.close()
        checksums.close()


def shard_keys(store: FileStore, shard: str) -> list[str]:
    return sorted(key for key, _ in store.list_keys(index_prefix(shard)))


@pytest.fixture(params=["whole", "spooled"])
def reading(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Index objects read whole, or (as big ones are) through a temporary file."""
    if request.param == "spooled":
        monkeypatch.setattr(packing, "WHOLE_INDEX", 0)
    return str(request.param)


def test_compaction_merges_a_shards_objects_and_keeps_every_entry(
    tmp_path: Path, reading: str
) -> None:
    store = FileStore(str(tmp_path / "vault"))
    contents = [[os.urandom(100 + i + 7 * p) for i in range(40)] for p in range(3)]
    packs = [store_pack(store, tmp_path, c) for c in contents]
    digests = [hashlib.sha256(d).hexdigest() for c in contents for d in c]
    before = found(store, digests)
    assert set(before) == set(digests) and set(before.values()) == set(packs)
    shards = {d[0] for d in digests}
    for shard in shards:  # an index object for each pack with a file in the shard
        holding = {
            pack
            for pack, content in zip(packs, contents, strict=True)
            if any(hashlib.sha256(data).hexdigest()[0] == shard for data in content)
        }
        assert len(shard_keys(store, shard)) == len(holding)

    results = compact_all(store, CONFIG)
    for result in results:
        keys = shard_keys(store, result.shard)
        assert len(keys) <= 1, keys
        if result.merged:
            assert keys == [result.key]
            assert "merged-" in keys[0]
    assert found(store, digests) == before
    # A merged object holds the packs' list and every entry, and parses.
    for shard in shards:
        (key,) = shard_keys(store, shard)
        data = store.get_bytes(key)
        assert data is not None
        reader = IndexReader(io.BytesIO(data), key, shard)
        assert {e.digest for e in reader.entries()} == {d for d in digests if d[0] == shard}
    # Again: nothing to do, nothing changes.
    again = compact_all(store, CONFIG)
    assert all(result.merged == 0 for result in again)
    assert found(store, digests) == before


def test_an_index_added_after_compaction_is_merged_next_time(tmp_path: Path, reading: str) -> None:
    store = FileStore(str(tmp_path / "vault"))
    first = [bytes([i]) * 10 for i in range(30)]
    store_pack(store, tmp_path, first)
    store_pack(store, tmp_path, [bytes([i]) * 11 for i in range(30)])
    compact_all(store, CONFIG)
    later = [bytes([i]) * 12 for i in range(30)]
    store_pack(store, tmp_path, later)
    digests = [hashlib.sha256(d).hexdigest() for d in first + later]
    assert set(found(store, digests)) == set(digests)
    compact_all(store, CONFIG)
    assert set(found(store, digests)) == set(digests)
    assert all(len(shard_keys(store, s)) <= 1 for s in CONFIG.shards())


def test_a_pack_without_an_index_is_a_leftover_removed_once_old(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path / "vault"))
    kept = store_pack(store, tmp_path, [b"kept %d" % i for i in range(5)])
    left = store_pack(store, tmp_path, [b"left %d" % i for i in range(5)], index=False)
    assert [leftover.key for leftover in leftovers(store, CONFIG)] == [pack_key(left)]
    # Still named once its shard is compacted: merged indexes list their packs.
    compact_all(store, CONFIG)
    assert [leftover.key for leftover in leftovers(store, CONFIG)] == [pack_key(left)]

    young = sweep_leftovers(store, CONFIG, remove=True, older_than=timedelta(days=1))
    assert [x.key for x in young.found] == [pack_key(left)] and young.removed == []
    assert store.head(pack_key(left)) is not None
    later = datetime.now(UTC) + timedelta(days=2)
    old = sweep_leftovers(store, CONFIG, remove=True, older_than=timedelta(days=1), now=later)
    assert [x.key for x in old.removed] == [pack_key(left)]
    assert store.head(pack_key(left)) is None
    assert store.head(pack_key(kept)) is not None
    assert list(leftovers(store, CONFIG)) == []


def test_a_merged_index_that_does_not_parse_is_one_clear_error(tmp_path: Path) -> None:
    from dmp_cli.packs.catalog import CatalogError

    store = FileStore(str(tmp_path / "vault"))
    store_pack(store, tmp_path, [b"a", b"b"])
    shard = hashlib.sha256(b"a").hexdigest()[0]
    store.put_bytes(f"index/{shard}/merged-{'0' * 64}.idx", b"not an index\n")
    with pytest.raises(CatalogError, match="not a dmp index"):
        compact(store, CONFIG, shard)
