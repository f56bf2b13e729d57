"""A fence finds any checksum of a big index object with one ranged read of the index, and
a bad fence is one clear line naming it."""

from __future__ import annotations

import hashlib
import io

import pytest

from dmp_cli.packs.catalog import CatalogError, IndexReader, index_objects, merge, pack_entries
from dmp_cli.packs.config import fence_key, parse_index_key
from dmp_cli.packs.fence import Fence, write_fence
from dmp_cli.packs.pack import Member, Pack


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def merged_index(packs: list[Pack], shard: str) -> bytes:
    out = io.BytesIO()
    parts = [index_objects(p, 1)[shard] for p in packs if shard in index_objects(p, 1)]
    merge([IndexReader(io.BytesIO(d), "part") for d in parts], out)
    return out.getvalue()


def fake_pack(tag: str, count: int, shared: list[str] = []) -> Pack:  # noqa: B006
    digests = sorted({sha(f"{tag}{i}") for i in range(count)} | set(shared))
    members = [Member(d, 512 + 1024 * i, i % 5) for i, d in enumerate(digests)]
    return Pack(sha(f"pack {tag}"), 1024 * len(digests) + 10240, members)


def fenced(index: bytes, every: int) -> Fence:
    out = io.BytesIO()
    digest = hashlib.sha256(index).hexdigest()
    write_fence(IndexReader(io.BytesIO(index), "idx"), digest, len(index), out, every)
    fence = Fence(io.BytesIO(out.getvalue()), "fence")
    assert (fence.index, fence.size) == (digest, len(index))
    return fence


def find(fence: Fence, index: bytes, digest: str) -> list[object]:
    span = fence.span(digest)
    if span is None:
        return []
    part = index[span[0] : span[1]]
    reader = fence.reader(io.BytesIO(part), span, "idx", shard=digest[0])
    return [e for e in reader.entries() if e.digest == digest]


@pytest.mark.parametrize("every", [1, 3, 16, 10_000], ids=["1", "3", "16", "past-the-end"])
def test_every_checksum_is_found_with_one_ranged_read(every: int) -> None:
    # checksums in several packs straddle the fence's steps
    shared = sorted(d for d in (sha(f"shared{i}") for i in range(300)) if d[0] == "7")
    assert len(shared) >= 5
    packs = [fake_pack(t, 400, shared) for t in "abc"]
    index = merged_index(packs, "7")
    fence = fenced(index, every)
    assert fence.packs == {p.digest: p.size for p in packs}
    expected = sorted(e for p in packs for e in pack_entries(p) if e.digest.startswith("7"))
    for digest in sorted({e.digest for e in expected}):
        assert find(fence, index, digest) == [e for e in expected if e.digest == digest]
    for absent in ("7" + "0" * 63, "7" + "f" * 63, sha("absent")):
        if absent.startswith("7"):
            assert find(fence, index, absent) == []
    if every < 10_000:  # the read is a part of the index, not all of it
        span = fence.span(expected[len(expected) // 2].digest)
        assert span is not None and span[1] - span[0] < len(index) // 2


def test_a_fence_of_an_empty_index_finds_nothing() -> None:
    fence = fenced(merged_index([], "0"), 4)
    assert fence.span("0" * 64) is None


BAD = [
    (b"", "line 1: not a dmp fence (no header line)"),
    (b"dmp-fence 9\n", "line 1: fence version 9 is not one this dmp knows; use a newer dmp"),
    (b"dmp-fence 1\nindex x 3\n", "line 2: unreadable index line"),
    (b"dmp-fence 1\nindex " + b"a" * 64 + b" 100\nzz 1\n", "line 3: unreadable line"),
    (
        b"dmp-fence 1\nindex "
        + b"a" * 64
        + b" 100\n"
        + b"b" * 64
        + b" 50\n"
        + b"a" * 64
        + b" 60\n",
        "line 4: lines out of order",
    ),
    (b"dmp-fence 1\nindex " + b"a" * 64 + b" 100\n" + b"b" * 64 + b" 100\n", "line 3: offset 100"),
]


@pytest.mark.parametrize(
    ("data", "message"), BAD, ids=["empty", "version", "index", "line", "order", "past"]
)
def test_a_bad_fence_is_one_line_naming_it(data: bytes, message: str) -> None:
    with pytest.raises(CatalogError) as caught:
        Fence(io.BytesIO(data), "s3://b/v/index/7/merged-x.fence")
    assert str(caught.value).startswith(f"s3://b/v/index/7/merged-x.fence: {message}")


def test_a_bad_part_of_the_index_names_its_bytes() -> None:
    packs = [fake_pack("a", 100)]
    index = merged_index(packs, "7")
    fence = fenced(index, 4)
    with pytest.raises(CatalogError, match=r"^idx \(bytes 5-19\): line 1: unreadable entry"):
        list(fence.reader(io.BytesIO(index[5:20]), (5, 20), "idx").entries())


def test_the_fence_has_its_name() -> None:
    digest = sha("merged")
    name = parse_index_key(fence_key("7", digest))
    assert name is not None and (name.shard, name.merged, name.fence) == ("7", True, True)
    assert parse_index_key(f"index/7/pack-{digest}.fence") is None
