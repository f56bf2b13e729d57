"""The pieces together, as the archive and fetch of a packing vault will use them, over a
directory standing in for the store: a mixed tree is cut into packs, each written and
indexed by shard; its checksums are then looked up shard by shard, read back by coalesced
ranges, verified, and give the tree again."""

from __future__ import annotations

import hashlib
import io
import random
from collections import defaultdict
from pathlib import Path

from dmp_cli.layout import digest_key
from dmp_cli.packs.catalog import Entry, IndexReader, index_objects, lookup
from dmp_cli.packs.config import (
    VaultConfig,
    index_key,
    index_prefix,
    pack_key,
    parse_index_key,
    parse_pack_key,
)
from dmp_cli.packs.pack import Pack, Source, batches, coalesce, extract, write_pack

BELOW = 4096
TREE = {
    "empty": b"",
    "one": b"1",
    "under": b"u" * (BELOW - 1),
    "at": b"a" * BELOW,  # at the threshold: a plain object
    "over": b"o" * (BELOW + 1),
    "dup/x": b"twice",
    "dup/y": b"twice",
    "new\nline": b"newline",
    **{f"many/{i:03}": random.Random(i).randbytes(i * 7) for i in range(1, 300)},
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_mixed_tree_round_trips_through_packs(tmp_path: Path) -> None:
    config = VaultConfig(pack_below=BELOW)
    tree = tmp_path / "tree"
    sources, plain = [], {}
    for name, data in TREE.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
        if config.packs(len(data)):
            sources.append(Source(sha(data), len(data), str(tree / name)))
        else:
            plain[digest_key(sha(data))] = data
    assert sorted(plain.values()) == [TREE["at"], TREE["over"]]

    # archive: packs of some 100 KB (a store's keys -> bytes)
    store: dict[str, bytes] = {}
    for batch in batches(sources, target=100_000):
        spool = tmp_path / "spool.tar"
        with open(spool, "w+b") as out:
            pack = write_pack(batch, out)
        assert pack.refused == []
        store[pack_key(pack.digest)] = spool.read_bytes()
        for shard, data in index_objects(pack, config.index_width).items():
            store[index_key(shard, pack.digest)] = data
    packs = [parse_pack_key(k) for k in store if parse_pack_key(k)]
    assert len(packs) >= 3
    assert all(len(store[pack_key(p)]) >= 100_000 for p in packs[:-1] if p)

    # fetch: each shard's index objects read once, for that shard's checksums only
    wanted = sorted({sha(d) for d in TREE.values() if config.packs(len(d))})
    found: dict[str, Entry] = {}
    for shard in config.shards():
        mine = [d for d in wanted if config.shard(d) == shard]
        for key in sorted(k for k in store if k.startswith(index_prefix(shard))):
            assert parse_index_key(key) is not None
            reader = IndexReader(io.BytesIO(store[key]), key, shard)
            for entry in lookup(mine, reader):
                found.setdefault(entry.digest, entry)
    assert sorted(found) == wanted

    by_pack: dict[str, list[Entry]] = defaultdict(list)
    for entry in found.values():
        by_pack[entry.pack].append(entry)
    fetched: dict[str, bytes] = {}
    outs: dict[str, io.BytesIO] = {}
    requests = 0
    for pack_digest, entries in by_pack.items():
        data = store[pack_key(pack_digest)]
        for read in coalesce([e.member() for e in entries], len(data)):
            requests += read.length > 0
            stream = io.BytesIO(data[read.start : read.end])  # a ranged GET
            for member, error in extract(
                read,
                stream,
                lambda m: outs.setdefault(m.digest, io.BytesIO()),
                pack_key(pack_digest),
            ):
                assert error is None
                fetched[member.digest] = outs[member.digest].getvalue()
    assert requests == len(by_pack)  # one GET per pack for a whole tree
    for name, data in TREE.items():
        got = fetched.get(sha(data)) if config.packs(len(data)) else plain[digest_key(sha(data))]
        assert got == data, name


def test_packs_hold_each_checksum_once(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    tree.mkdir()
    sources = []
    for i in range(50):
        (tree / f"f{i}").write_bytes(b"same" if i % 2 else b"x" * i)
        sources.append(
            Source(
                sha((tree / f"f{i}").read_bytes()),
                (tree / f"f{i}").stat().st_size,
                str(tree / f"f{i}"),
            )
        )
    cut = list(batches(sources, target=4096))
    digests = [d for b in cut for d in {s.digest for s in b}]  # no checksum in two batches
    assert len(digests) == len(set(digests)) == len({s.digest for s in sources})
    packs: list[Pack] = []
    for n, batch in enumerate(cut):
        with open(tmp_path / f"{n}.tar", "w+b") as out:
            packs.append(write_pack(batch, out))
    assert sorted(m.digest for p in packs for m in p.members) == sorted(set(digests))
