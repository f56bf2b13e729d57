"""Packs: the same members give the same bytes, every member is where the pack says, a
file changed under the writer is left out, and ranged reads come back verified."""

from __future__ import annotations

import errno
import hashlib
import io
import random
import tarfile
from pathlib import Path

import pytest

from dmp_cli.errors import IntegrityError
from dmp_cli.layout import digest_key
from dmp_cli.packs.pack import (
    RECORD,
    Member,
    Pack,
    RangeRead,
    Source,
    batches,
    coalesce,
    extract,
    member_size,
    write_pack,
)

CONTENTS = {
    "empty": b"",
    "one": b"x",
    "block": b"b" * 512,
    "odd": bytes(range(256)) * 7 + b"tail",
    "line\nbreak": b"a name with a newline\n",
    "big": random.Random(1).randbytes(3 << 20),  # more than one CHUNK
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make(root: Path, contents: dict[str, bytes] = CONTENTS) -> list[Source]:
    root.mkdir(parents=True, exist_ok=True)
    sources = []
    for name, data in contents.items():
        (root / name).write_bytes(data)
        sources.append(Source(sha(data), len(data), str(root / name)))
    return sources


def pack_of(sources: list[Source], spool: Path) -> tuple[bytes, Pack]:
    with open(spool, "w+b") as out:
        pack = write_pack(sources, out)
    return spool.read_bytes(), pack


def test_the_same_members_give_the_same_bytes_and_name(tmp_path: Path) -> None:
    first = make(tmp_path / "a")
    # the same contents elsewhere, offered in another order and some twice
    second = make(tmp_path / "b", dict(reversed(CONTENTS.items())))
    data1, pack1 = pack_of(first, tmp_path / "1.tar")
    data2, pack2 = pack_of(second + second[:2], tmp_path / "2.tar")
    assert data1 == data2
    assert pack1.digest == pack2.digest == sha(data1)
    assert pack1.size == len(data1) and len(data1) % RECORD == 0
    assert pack1 == pack2
    # and another member makes another pack
    third = make(tmp_path / "c", {**CONTENTS, "more": b"more"})
    assert pack_of(third, tmp_path / "3.tar")[1].digest != pack1.digest


def test_members_are_sorted_plain_and_where_the_pack_says(tmp_path: Path) -> None:
    data, pack = pack_of(make(tmp_path / "src"), tmp_path / "p.tar")
    members = pack.members
    assert [m.digest for m in members] == sorted(sha(d) for d in CONTENTS.values())
    by_digest = {sha(d): d for d in CONTENTS.values()}
    for member in members:  # a ranged read of the file gives the exact bytes
        with open(tmp_path / "p.tar", "rb") as f:
            f.seek(member.offset)
            assert f.read(member.size) == by_digest[member.digest]
    with tarfile.open(tmp_path / "p.tar") as tar:
        infos = tar.getmembers()
        assert [i.name for i in infos] == [digest_key(m.digest) for m in members]
        for info, member in zip(infos, members, strict=True):
            assert (info.offset_data, info.size) == (member.offset, member.size)
            assert (info.mtime, info.uid, info.gid, info.uname, info.gname) == (0, 0, 0, "", "")
            assert (info.mode, info.type) == (0o644, tarfile.REGTYPE)
            assert info.pax_headers == {}
            file = tar.extractfile(info)
            assert file is not None and file.read() == by_digest[member.digest]
    assert pack.refused == []
    assert data[-1024:] == bytes(1024)


def test_a_file_changed_since_the_manifest_is_left_out(tmp_path: Path) -> None:
    sources = make(tmp_path / "src")
    changed = {"odd": b"?" + CONTENTS["odd"][1:], "one": b"", "block": b"b" * 513}
    for name, data in changed.items():
        (tmp_path / "src" / name).write_bytes(data)
    gone = Source(sha(b"gone"), 4, str(tmp_path / "src" / "no such file"))
    data, pack = pack_of([*sources, gone], tmp_path / "p.tar")
    refused = {Path(r.source.path).name: r.reason for r in pack.refused}
    assert refused == {
        "odd": refused["odd"],
        "one": "shorter than the manifest says (changed since it was made); not packed",
        "block": "longer than the manifest says (changed since it was made); not packed",
        "no such file": "No such file or directory; not packed",
    }
    assert refused["odd"] == (
        f"changed since the manifest was made (sha256 now {sha(changed['odd'])}); not packed"
    )
    # the pack is exactly the pack of the files that were not changed
    kept = {k: v for k, v in CONTENTS.items() if k not in changed}
    clean, expected = pack_of(make(tmp_path / "clean", kept), tmp_path / "clean.tar")
    assert data == clean
    assert pack.digest == expected.digest == sha(data)
    assert pack.members == expected.members


def test_another_file_with_the_same_checksum_stands_in(tmp_path: Path) -> None:
    sources = make(tmp_path / "a", {"f": b"same"})
    spare = make(tmp_path / "b", {"g": b"same"})
    (tmp_path / "a" / "f").write_bytes(b"SAME")
    _, pack = pack_of(sources + spare, tmp_path / "p.tar")
    assert [m.digest for m in pack.members] == [sha(b"same")]
    assert [r.source for r in pack.refused] == sources


def test_nothing_to_pack_is_an_empty_archive(tmp_path: Path) -> None:
    data, pack = pack_of([], tmp_path / "p.tar")
    assert data == bytes(RECORD)
    assert pack.members == []
    with tarfile.open(tmp_path / "p.tar") as tar:
        assert tar.getmembers() == []


def _member(offset: int, size: int, tag: str = "") -> Member:
    return Member(sha(f"{offset}{tag}".encode()), offset, size)


def test_coalescing_merges_near_ranges_and_keeps_far_ones_apart() -> None:
    a, b, c, d = _member(512, 100), _member(1536, 100), _member(10_000, 10), _member(90_000, 5)
    reads = coalesce([d, b, a, c], pack_size=1_000_000, gap=20_000)
    assert reads == [RangeRead(512, 10_010, (a, b, c)), RangeRead(90_000, 90_005, (d,))]
    assert reads[0].http_range() == "bytes=512-10009"
    # a gap of exactly ``gap`` bytes is bridged; one more byte is not
    e = _member(10_010 + 20_000, 1)
    assert len(coalesce([c, e], 1_000_000, gap=20_000)) == 1
    assert len(coalesce([c, _member(10_010 + 20_001, 1)], 1_000_000, gap=20_000)) == 2


def test_the_whole_pack_is_read_when_that_costs_at_most_a_gap_more() -> None:
    a, b = _member(512, 1000), _member(3072, 1000)
    assert coalesce([a, b], pack_size=10_240, gap=8_000) == [RangeRead(0, 10_240, (a, b))]
    assert coalesce([a, b], pack_size=10_240, gap=3_000) == [RangeRead(512, 4072, (a, b))]


def test_empty_members_cost_no_request() -> None:
    a, empty = _member(512, 10), _member(1536, 0)
    assert coalesce([empty], 10_240, gap=0) == [RangeRead(0, 0, (empty,))]
    reads = coalesce([a, empty, a], 10_240, gap=0)
    assert reads == [RangeRead(512, 522, (a,)), RangeRead(0, 0, (empty,))]
    assert reads[1].length == 0


def test_a_whole_packs_members_come_back_in_one_read(tmp_path: Path) -> None:
    data, pack = pack_of(make(tmp_path / "src"), tmp_path / "p.tar")
    reads = coalesce(pack.members, pack.size)
    assert [r.length for r in reads] == [len(data), 0]
    got = _extract_all(reads, data, "packs/p.tar")
    assert got == {sha(d): (d, None) for d in CONTENTS.values()}


def test_ranged_reads_come_back_verified(tmp_path: Path) -> None:
    data, pack = pack_of(make(tmp_path / "src"), tmp_path / "p.tar")
    members = [m for m in pack.members if m.size in (1, 512, 22)]
    reads = coalesce(members, len(data), gap=0)
    assert len(reads) == 3
    got = _extract_all(reads, data, "packs/p.tar")
    assert {k: v[0] for k, v in got.items()} == {m.digest: data[m.offset : m.end] for m in members}
    assert all(error is None for _, error in got.values())


def test_a_member_that_does_not_hash_to_its_name_is_refused(tmp_path: Path) -> None:
    data, pack = pack_of(make(tmp_path / "src"), tmp_path / "p.tar")
    odd = next(m for m in pack.members if m.size == len(CONTENTS["odd"]))
    broken = bytearray(data)
    broken[odd.offset + 5] ^= 1
    got = _extract_all(coalesce(pack.members, len(data)), bytes(broken), "s3://b/packs/p.tar")
    errors = {k: str(e) for k, (_, e) in got.items() if e is not None}
    assert list(errors) == [odd.digest]
    assert errors[odd.digest].startswith(
        f"s3://b/packs/p.tar: member {digest_key(odd.digest)} does not hash to its name (sha256 "
    )
    # a read cut short: the members it did not reach are refused too, not taken as empty
    first = pack.members[0]
    read = RangeRead(0, len(data), tuple(pack.members))
    cut = list(extract(read, io.BytesIO(data[: first.end]), lambda m: io.BytesIO(), "p"))
    verdicts = [(m.size, e is None) for m, e in cut]
    assert verdicts[0] == (first.size, True)
    assert all(not ok for size, ok in verdicts[1:] if size > 0)
    assert any(isinstance(e, IntegrityError) and "cut short" in str(e) for _, e in cut)


def _extract_all(
    reads: list[RangeRead], data: bytes, name: str
) -> dict[str, tuple[bytes, IntegrityError | None]]:
    outs: dict[str, io.BytesIO] = {}
    got = {}
    for read in reads:
        stream = io.BytesIO(data[read.start : read.end])
        for member, error in extract(
            read, stream, lambda m: outs.setdefault(m.digest, io.BytesIO()), name
        ):
            got[member.digest] = (outs[member.digest].getvalue(), error)
    return got


def test_writes_that_fail_are_raised(tmp_path: Path) -> None:
    sources = make(tmp_path / "src", {"f": b"data"})
    with open("/dev/full", "wb", buffering=0) as out, pytest.raises(OSError) as caught:
        write_pack(sources, out)
    assert caught.value.errno == errno.ENOSPC


def _sources(*sizes: int) -> list[Source]:
    return [Source(sha(f"{i}".encode()), size, f"f{i}") for i, size in enumerate(sizes)]


def test_member_sizes_are_what_the_writer_writes(tmp_path: Path) -> None:
    assert [member_size(n) for n in (0, 1, 511, 512, 513)] == [512, 1024, 1024, 1024, 1536]
    sources = make(tmp_path / "src")
    data, _ = pack_of(sources, tmp_path / "p.tar")
    written = sum(member_size(s.size) for s in sources) + 1024  # and the two zero blocks
    assert len(data) == written + (-written % RECORD)


def test_batches_reach_their_target_and_pass_it_by_less_than_a_file() -> None:
    sources = _sources(*[1000] * 100)  # 1,536 bytes each in a pack
    twice = [Source(s.digest, s.size, f"{s.path} again") for s in sources[:10]]
    cut = list(batches(sources + twice, target=15_000))
    # 15,360 bytes each, a checksum's sources together and counted once
    assert [len({s.digest for s in b}) for b in cut] == [10] * 10
    assert sorted(s.path for b in cut for s in b) == sorted(s.path for s in sources + twice)
    for batch in cut:
        digests = [s.digest for s in batch]
        assert digests == sorted(digests)


def test_a_small_last_batch_joins_the_one_before() -> None:
    assert [len(b) for b in batches(_sources(*[1000] * 13), target=15_000)] == [13]
    assert [len(b) for b in batches(_sources(*[1000] * 15), target=15_000)] == [10, 5]
    assert [len(b) for b in batches(_sources(*[1000] * 4), target=15_000)] == [4]
    assert list(batches([], target=15_000)) == []
