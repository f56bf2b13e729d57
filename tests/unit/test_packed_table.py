"""What a run knows of a packing vault's checksums (``Packed``), in memory and spilled to
disk alike, and a fetch's reads of each pack planned from it."""

from __future__ import annotations

import hashlib

import pytest

from dmp_cli.rows import Item
from dmp_cli.runs.packing import Packed, annotate, plan_reads

PACKS = [hashlib.sha256(b"pack %d" % n).hexdigest() for n in range(3)]
MiB = 1 << 20


def digest(n: int) -> str:
    return hashlib.sha256(b"%d" % n).hexdigest()


@pytest.fixture(params=[1000, 3], ids=["memory", "spilled"])
def packed(request: pytest.FixtureRequest) -> Packed:
    table = Packed(limit=int(request.param))
    # Pack 0: members close together; pack 1: two far apart; pack 2: one member.
    layout = {0: [(512 + 1024 * i, 100) for i in range(5)], 1: [(512, 10), (512 + 8 * MiB, 10)]}
    layout[2] = [(512, 0)]
    n = 0
    for pack, members in layout.items():
        for offset, size in members:
            end = offset + size
            table.put(
                bytes.fromhex(digest(n)), ("packed", PACKS[pack], offset, size, False, offset, end)
            )
            n += 1
    table.put(bytes.fromhex(digest(100)), ("failed", "changed since the manifest", False))
    table.put(bytes.fromhex(digest(101)), ("plain",))
    return table


def test_checksums_come_a_pack_at_a_time(packed: Packed) -> None:
    groups = list(packed.by_pack())
    assert sorted(len(group) for group in groups) == [1, 2, 5]
    for group in groups:
        assert len({known[1] for _, known in group}) == 1  # one pack each
    assert {raw.hex() for group in groups for raw, _ in group} == {digest(n) for n in range(8)}
    assert packed.get(bytes.fromhex(digest(100))) == ("failed", "changed since the manifest", False)
    assert packed.get(bytes.fromhex(digest(101))) == ("plain",)
    packed.close()


def test_a_fetch_reads_near_members_together_and_far_ones_apart(packed: Packed) -> None:
    sizes = {PACKS[0]: 64 * MiB, PACKS[1]: 64 * MiB, PACKS[2]: 10240}
    reads = plan_reads(packed, sizes)
    assert reads == 3  # pack 0 in one read, pack 1 in two, pack 2's empty member in none
    items: list[Item] = [{"path": f"f{n}", "digest": digest(n)} for n in range(8)]
    items.append({"path": "same", "digest": digest(0), "same": True})
    got = {item["path"]: item.get("packed") for item in annotate(items, packed)}
    assert got["same"] is None  # a later copy is answered from the first entry
    first = got["f0"]
    assert first is not None and (first[3], first[4]) == (512, 512 + 1024 * 4 + 100)
    for n in range(5):
        member = got[f"f{n}"]
        assert member is not None and (member[3], member[4]) == (first[3], first[4])
    far = [got["f5"], got["f6"]]
    assert [(m[3], m[4]) for m in far if m] == [(512, 522), (512 + 8 * MiB, 512 + 8 * MiB + 10)]
    empty = got["f7"]
    assert empty is not None and empty[2] == 0
    packed.close()
