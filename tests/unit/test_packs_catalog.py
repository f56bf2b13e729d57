"""The catalog: a pack's index objects per shard, read back, looked up in one pass, merged
into one deterministically, and refused with one line naming the object when bad."""

from __future__ import annotations

import hashlib
import io
import random
import re

import pytest

from dmp_cli.packs.catalog import (
    CatalogError,
    Entry,
    IndexReader,
    index_objects,
    lookup,
    merge,
    pack_entries,
)
from dmp_cli.packs.pack import Member, Pack


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def fake_pack(tag: str, count: int) -> Pack:
    """A pack's description (no bytes needed): members at 1 KiB steps, by checksum."""
    digests = sorted(sha(f"{tag}{i}") for i in range(count))
    members = [Member(d, 512 + 1024 * i, i % 7) for i, d in enumerate(digests)]
    return Pack(sha(f"pack {tag}"), 1024 * count + 10240, members)


def reader(data: bytes, name: str = "index/a/x.idx", shard: str | None = None) -> IndexReader:
    return IndexReader(io.BytesIO(data), name, shard)


def test_a_packs_index_round_trips_shard_by_shard() -> None:
    pack = fake_pack("p", 200)
    objects = index_objects(pack, 1)
    assert sorted(objects) == list("0123456789abcdef")  # 200 members meet every shard
    read = []
    for shard, data in sorted(objects.items()):
        index = reader(data, f"index/{shard}/pack-{pack.digest}.idx", shard)
        assert index.packs == {pack.digest: pack.size}
        read += list(index.entries())
    assert read == pack_entries(pack)
    one = objects["0"].decode().splitlines()
    assert one[:2] == ["dmp-index 1", f"pack {pack.digest} {pack.size}"]
    entry = next(e for e in read if e.digest.startswith("0"))
    assert one[2] == f"{entry.digest} 0 {entry.offset} {entry.size}"
    assert set(index_objects(pack, 2)) == {e.digest[:2] for e in read}


def test_lookup_finds_exactly_the_wanted_checksums_in_one_pass() -> None:
    pack = fake_pack("p", 500)
    every = pack_entries(pack)
    index = index_objects(pack, 1)
    rng = random.Random(7)
    chosen = rng.sample(every, 40)
    wanted = sorted({e.digest for e in chosen} | {sha(f"absent {i}") for i in range(40)})
    found = []
    for shard, data in sorted(index.items()):
        found += list(lookup(wanted, reader(data, shard=shard)))
    assert found == sorted(chosen)
    assert list(lookup([], reader(index["0"]))) == []


def test_lookup_stops_reading_past_the_last_wanted_checksum() -> None:
    pack = fake_pack("p", 100)
    data = index_objects(pack, 1)["a"]
    first = next(reader(data).entries())
    lines = iter(data.splitlines(keepends=True))
    got = list(lookup([first.digest], IndexReader(lines, "i")))
    assert got == [first]
    assert next(lines, None) is not None  # the rest was never read


def test_a_checksum_in_two_packs_is_found_in_both() -> None:
    a, b = fake_pack("a", 30), fake_pack("b", 30)
    shared = a.members[0]
    b.members = sorted([*b.members, Member(shared.digest, 512 + 1024 * 30, 3)])
    b.size += 1024
    shard = shared.digest[0]
    out = io.BytesIO()
    merge([reader(index_objects(p, 1)[shard]) for p in (a, b)], out)
    got = list(lookup([shared.digest], reader(out.getvalue())))
    assert [e.pack for e in got] == sorted([a.digest, b.digest])


def test_merging_is_deterministic_and_loses_nothing() -> None:
    packs = [fake_pack(t, 300) for t in "abcd"]
    shard = "5"
    parts = [index_objects(p, 1)[shard] for p in packs]
    first, second = io.BytesIO(), io.BytesIO()
    digest, size = merge([reader(d) for d in parts], first)
    merge([reader(d) for d in reversed(parts)], second)
    assert first.getvalue() == second.getvalue()
    assert (digest, size) == (hashlib.sha256(first.getvalue()).hexdigest(), len(first.getvalue()))
    expected = sorted(e for p in packs for e in pack_entries(p) if e.digest.startswith(shard))
    merged = reader(first.getvalue(), shard=shard)
    assert merged.packs == {p.digest: p.size for p in packs}
    assert list(merged.entries()) == expected
    # a merge of a merge and one of its parts (compaction run twice) is the same again
    again = io.BytesIO()
    merge([reader(first.getvalue()), reader(parts[0]), reader(parts[2])], again)
    assert again.getvalue() == first.getvalue()


def test_merging_refuses_indexes_that_disagree() -> None:
    pack = fake_pack("p", 50)
    data = index_objects(pack, 1)["3"]
    line = data.splitlines()[2]
    moved = data.replace(line, line.rsplit(b" ", 2)[0] + b" 600 1")
    with pytest.raises(CatalogError) as caught:
        merge([reader(data, "index/3/a.idx"), reader(moved, "index/3/b.idx")], io.BytesIO())
    text = str(caught.value)
    assert re.fullmatch(
        rf"index/3/a\.idx: checksum [0-9a-f]{{64}} in pack {pack.digest} is at \d+\+\d+, "
        r"and elsewhere in index/3/b\.idx",
        text,
    ), text
    resized = data.replace(str(pack.size).encode(), str(pack.size + 1).encode())
    with pytest.raises(CatalogError, match="has another size in another index"):
        merge([reader(data), reader(resized)], io.BytesIO())


GOOD = fake_pack("g", 40)
GOOD_DATA = index_objects(GOOD, 1)["1"]
_lines = GOOD_DATA.splitlines(keepends=True)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "line 1: not a dmp index (no header line)"),
        (b"PK\x03\x04 zip\n", "line 1: not a dmp index (no header line)"),
        (b"dmp-index 2\n", "line 1: index version 2 is not one this dmp knows; use a newer dmp"),
        (_lines[0] + b"pack xyz 10\n", "line 2: unreadable pack line"),
        (_lines[0] + _lines[1] + _lines[1], "line 3: packs out of order"),
        (_lines[0] + _lines[1] + b"not an entry\n", "line 3: unreadable entry"),
        (_lines[0] + _lines[1] + _lines[2].replace(b" 0 ", b" 1 ", 1), "line 3: pack number 1"),
        (_lines[0] + _lines[1] + _lines[3] + _lines[2], "line 4: entries out of order"),
        (_lines[0] + _lines[1] + _lines[2] + _lines[2], "line 4: entries out of order"),
        (_lines[0] + _lines[1] + _lines[2].rstrip(b"\n"), "line 3: unreadable entry"),
        (_lines[0] + _lines[1] + b"2" + _lines[2][1:], "line 3: checksum 2"),
        (
            _lines[0] + _lines[1] + _lines[2].rsplit(b" ", 2)[0] + b" 100 1\n",
            "line 3: member at 100+1 lies outside its pack",
        ),
        (
            _lines[0] + _lines[1] + _lines[2].rsplit(b" ", 1)[0] + b" 99999999\n",
            "lies outside its pack",
        ),
    ],
    ids=[
        "empty",
        "binary",
        "version",
        "pack-line",
        "pack-order",
        "entry",
        "pack-number",
        "order",
        "duplicate",
        "no-newline",
        "shard",
        "inside-header",
        "past-end",
    ],
)
def test_an_index_that_does_not_parse_is_one_line_naming_it(data: bytes, message: str) -> None:
    name = "s3://bucket/vault/index/1/pack-x.idx"
    with pytest.raises(CatalogError) as caught:
        list(IndexReader(io.BytesIO(data), name, "1").entries())
    text = str(caught.value)
    assert text.startswith(f"{name}: "), text
    assert message in text, text
    assert "\n" not in text


def test_the_good_index_the_bad_ones_are_made_from_reads() -> None:
    entries = list(reader(GOOD_DATA, shard="1").entries())
    assert entries and all(isinstance(e, Entry) and e.digest.startswith("1") for e in entries)
