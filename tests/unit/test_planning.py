"""Planning --vault and --archive: the choice between HEADs and listing, the checksums
spilled to disk, the answers, the listing operation and the stores' listings."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from dmp_cli.errors import StoreError
from dmp_cli.layout import digest_key
from dmp_cli.listing import ANSWER, Sorted, Spilled, listing_item, vault_list_op
from dmp_cli.ops import Context
from dmp_cli.options import Options, StoreSpec, Work
from dmp_cli.rows import Item, Row
from dmp_cli.rules import Command
from dmp_cli.runs.listing_choice import (
    Estimate,
    choose,
    covered,
    estimate,
    forced,
    key_prefix,
    keys_enough,
    requests,
    split,
)
from dmp_cli.runs.planning import Answers, Checksums, Plan
from dmp_cli.store import StorePool, Vault
from dmp_cli.store.local import FileStore
from dmp_cli.store.s3.listing import KeyListing


def sha(i: int) -> str:
    return hashlib.sha256(b"%d" % i).hexdigest()


# ------------------------------------------------------------------ the choice

ALL = {f"{i:02x}": 1 for i in range(256)}  # checksums in every first-level prefix


def counts_of(firsts: str) -> dict[str, int]:
    """A checksum in each first-level prefix named, two characters each."""
    return {firsts[i : i + 2]: 1 for i in range(0, len(firsts), 2)}


def test_list_requests_are_a_page_per_prefix_at_least() -> None:
    assert requests(256, 256, 0) == 256
    assert requests(256, 256, 100_000) == 256  # 391 keys a prefix: one page each
    assert requests(256, 256, 1_000_000) == 256 * 4
    assert requests(256, 10, 1_000_000) == 40
    assert requests(16, 16, 100_000) == 112  # 6,250 keys a prefix: 7 pages each
    assert requests(1, 1, 100_000) == 100
    assert requests(1, 1, 0) == 1


def test_key_prefixes_and_what_they_cover() -> None:
    assert [key_prefix("ab", parts) for parts in (256, 16, 1)] == ["ab/", "a", ""]
    firsts = ["0f", "a0", "ab", "b0"]
    assert covered("ab/", firsts) == ["ab"]
    assert covered("a", firsts) == ["a0", "ab"]
    assert covered("", firsts) == firsts


@pytest.mark.parametrize(
    ("objects", "parts", "requests_"),
    [
        (0, 1, 1),  # an empty vault: one request
        (12_032, 1, 13),  # 16 prefixes would take 16, 23 % more
        (103_936, 16, 112),  # within a tenth of the 104 of the whole vault, in parallel
        (50_000, 1, 50),  # 16 prefixes: 64, 28 % more
        (160_000, 16, 160),
        (1_000_000, 256, 1024),  # 2.4 % more than the whole vault's 1,000
        (1_441_792, 256, 1536),
        (10**8, 256, 100_096),
    ],
)
def test_the_finest_split_within_a_tenth_of_the_fewest_requests(
    objects: int, parts: int, requests_: int
) -> None:
    chosen = split(ALL, objects)
    assert (chosen.parts, chosen.requests) == (parts, requests_)
    fewest = min(requests(p, {1: 1, 16: 16, 256: 256}[p], objects) for p in (1, 16, 256))
    assert chosen.requests <= fewest * 1.1
    finer = [p for p in (16, 256) if p > parts]
    assert all(requests(p, p, objects) > fewest * 1.1 for p in finer)


def test_only_prefixes_holding_a_checksum_are_listed() -> None:
    # Ten checksums in ten first-level prefixes of a vault of 100,000 objects: ten
    # requests, one a prefix, where the whole vault would take 100.
    few = counts_of("000f1f2f3f4f5f6f7f8f")
    chosen = split(few, 100_000)
    assert chosen.parts == 256 and chosen.requests == 10
    assert chosen.prefixes == tuple(f"{first}/" for first in sorted(few))
    # Four of the 256, in two of the 16: a page each of the four, or 7 of each of two.
    four = counts_of("a0a1a2b0")
    assert split(four, 100_000).prefixes == ("a0/", "a1/", "a2/", "b0/")
    # All 16 under "a": one prefix of 16 in 7 pages, not 16 of 256 in one each.
    under_a = {f"a{i:x}": 1 for i in range(16)}
    chosen = split(under_a, 100_000)
    assert (chosen.prefixes, chosen.requests) == (("a",), 7)
    assert split(under_a, 1_000_000).parts == 256  # 16 x 4 against 63


def test_an_item_for_the_fleet_carries_a_bounded_number_of_checksums() -> None:
    many = {f"{i:02x}": 40_000 for i in range(256)}  # 10^7 checksums, about
    assert split(many, 200_000).parts == 16  # in this process: 625,000 an item is fine
    assert split(many, 200_000, most=250_000).parts == 256  # on the fleet: 40,000 an item
    assert split(many, 10_000, most=250_000).parts == 256
    assert split(ALL, 10_000, most=250_000).parts == 1  # few checksums: any split


def test_the_way_that_needs_fewer_requests_is_chosen() -> None:
    vault = Estimate(103_936, 1)
    listed = choose(100_000, ALL, vault, "HEAD requests")
    assert listed.way == "list" and listed.split is not None
    assert listed.why == (
        "planning by listing 16 prefixes: 113 LIST requests instead of 100,000 HEAD "
        "requests (a vault of about 103,936 objects)"
    )
    few = counts_of("000f1f2f3f4f5f6f7f8f")
    headed = choose(10, few, vault, "HEAD requests")
    assert headed.way == "head" and headed.split is None
    assert headed.why == (
        "planning by HEAD: 10 HEAD requests instead of 11 LIST requests (a vault of about "
        "103,936 objects)"
    )
    whole = choose(10, few, Estimate(1024, 1), "HEAD requests")
    assert whole.why == (
        "planning by listing the whole vault: 3 LIST requests instead of 10 HEAD requests "
        "(a vault of about 1,024 objects)"
    )
    empty = choose(3, counts_of("01f2"), Estimate(0, 1), "conditional PUT requests")
    assert empty.way == "list" and empty.split is not None and empty.split.parts == 1
    assert "(a vault of fewer than about 256 objects)" in empty.why
    assert choose(2, counts_of("0102"), None, "HEAD requests").why == (
        "planning by HEAD: 2 HEAD requests instead of at least 2 LIST requests"
    )
    big = choose(10**8, ALL, Estimate(100_007_936, 3), "HEAD requests")
    assert big.why.startswith("planning by listing 256 prefixes: 100,099 LIST requests")


def test_a_forced_listing_is_split_as_the_estimate_says() -> None:
    chosen = forced(300, ALL, Estimate(1024, 1), "HEAD requests")
    assert chosen.way == "list" and chosen.split is not None and chosen.split.parts == 1
    assert chosen.why == (
        "planning by listing the whole vault: DMP_VAULT_PLANNING=list, 3 LIST requests "
        "instead of 300 HEAD requests (a vault of about 1,024 objects)"
    )
    # Even where HEADs would cost less.
    assert forced(3, ALL, Estimate(10**6, 2), "HEAD requests").way == "list"
    unknown = forced(300, counts_of("0102"), None, "HEAD requests", unknown="refused")
    assert unknown.split is not None and unknown.split.prefixes == ("01/", "02/")
    assert unknown.why == (
        "planning by listing 2 prefixes: DMP_VAULT_PLANNING=list (instead of 300 HEAD "
        "requests; the vault's size unknown: refused)"
    )


class _Listed:
    """A vault whose listing counts the keys asked for: ``sizes`` by key prefix."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes = sizes
        self.taken: dict[str, int] = {}

    def listing(self, prefix: str) -> Any:
        self.taken[prefix] = 0
        for i in range(self.sizes.get(prefix, 0)):
            self.taken[prefix] += 1
            yield sha(i), 1


def test_a_small_vault_is_estimated_from_a_page_of_one_first_level_prefix() -> None:
    vault = _Listed({"00/": 406, "00/00/": 2})
    size = estimate(vault, lambda: 10**9)  # type: ignore[arg-type]
    assert (size.objects, size.requests, size.cut) == (406 * 256, 1, False)
    assert list(vault.taken) == ["00/"]
    assert estimate(_Listed({}), lambda: 1).objects == 0  # type: ignore[arg-type]


def test_a_big_vault_is_estimated_from_one_second_level_prefix() -> None:
    vault = _Listed({"00/": 3873, "00/00/": 22})
    size = estimate(vault)  # type: ignore[arg-type]
    assert vault.taken == {"00/": 1000, "00/00/": 22}  # a page of 00/, then 00/00/ whole
    assert (size.objects, size.requests, size.cut) == (22 * 65536, 2, False)
    # Few checksums: counting stops once listing is known to cost more.
    vault = _Listed({"00/": 3873, "00/00/": 22})
    size = estimate(vault, lambda: 5)  # type: ignore[arg-type]
    assert vault.taken["00/00/"] == 5 and size.cut
    assert str(size) == "about 327,680 or more"
    # A vault of 256,000 objects at least, though 00/00/ be empty.
    assert estimate(_Listed({"00/": 1000}), None).objects == 256_000  # type: ignore[arg-type]


@pytest.mark.parametrize("distinct", [300, 1000, 2000, 100_000, 10**7])
def test_the_estimate_stops_once_listing_cannot_pay(distinct: int) -> None:
    """Counting ``00/00/`` up to ``keys_enough`` keys is enough to choose HEADs, and one
    key fewer is not: the estimate stops exactly when the choice is clear."""
    enough = keys_enough(ALL, distinct)

    def way(keys: int) -> str:
        size = Estimate(max(keys * 65536, 256_000), 2, cut=True)
        return choose(distinct, ALL, size, "HEAD requests").way

    assert way(enough) == "head"
    assert enough == 1 or way(enough - 1) == "list"


# ------------------------------------------------------------------ checksums, answers


@pytest.mark.parametrize("spill_at", [10**6, 50])
def test_checksums_in_memory_and_spilled_agree(spill_at: int) -> None:
    digests = [sha(i) for i in range(400)] + [sha(i) for i in range(0, 400, 3)]  # copies
    checksums = Checksums(spill_at=spill_at)
    try:
        for digest in digests:
            checksums.add(digest)
        checksums.finish()
        assert (checksums.spilled is not None) == (spill_at == 50)
        assert checksums.distinct == 400
        expected: dict[str, list[bytes]] = {}
        for i in range(400):
            digest = sha(i)
            expected.setdefault(digest[:2], []).append(bytes.fromhex(digest))
        assert checksums.counts == {prefix: len(raw) for prefix, raw in expected.items()}
        for prefix, raws in expected.items():
            assert checksums.block(prefix) == b"".join(sorted(raws))
        spilled = checksums.spilled
    finally:
        checksums.close()
    assert spilled is None or not os.path.exists(spilled)  # gone with the plan


@pytest.mark.parametrize("on_disk", [False, True])
def test_answers_in_memory_and_in_sqlite_agree(on_disk: bool, tmp_path: Path) -> None:
    answers = Answers(str(tmp_path) if on_disk else None)
    try:
        answers.add((bytes.fromhex(sha(i)), i) for i in range(100))
        answers.add([(bytes.fromhex(sha(5)), 5)])  # seen twice: once
        assert answers.count == 100
        assert answers.get(bytes.fromhex(sha(7))) == 7
        assert answers.get(bytes.fromhex(sha(0))) == 0  # an empty object is present
        assert answers.get(bytes.fromhex(sha(100))) is None
    finally:
        answers.close()


def test_the_plan_marks_only_what_a_listing_answered() -> None:
    answers = Answers()
    answers.add([(bytes.fromhex(sha(1)), 10), (bytes.fromhex(sha(2)), 0)])
    items: list[Item] = [
        {"path": "a", "digest": sha(1)},
        {"path": "b", "digest": sha(2)},
        {"path": "c", "digest": sha(3)},
        {"path": "d", "digest": sha(1), "same": True},
        {"path": "e", "digest": sha(4)},
    ]
    failed = {sha(4)[:2]} - {sha(1)[:2], sha(2)[:2], sha(3)[:2]}
    vault = Plan("list", "", Command.VAULT, answers, failed=failed)
    marked = [item.get("listed") for item in vault.annotate([dict(i) for i in items])]  # type: ignore[misc]
    assert marked[:4] == [10, 0, -1, None]  # a copy is answered from its first entry
    assert marked[4] == (None if failed else -1)  # a prefix that failed: asked by HEAD
    archive = Plan("list", "", Command.ARCHIVE, answers)
    marked = [item.get("listed") for item in archive.annotate([dict(i) for i in items])]  # type: ignore[misc]
    assert marked == [10, 0, None, None, None]  # unseen: offered to a put-if-absent


# ------------------------------------------------------------------ the listing operation


def file_vault(tmp_path: Path, count: int) -> tuple[StoreSpec, list[str]]:
    root = tmp_path / "vault"
    digests = []
    for i in range(count):
        digest = sha(i)
        path = root / digest_key(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * i)
        digests.append(digest)
    (root / "ab").mkdir(exist_ok=True)
    (root / "ab" / "not-a-checksum").write_bytes(b"")
    return StoreSpec(vault=f"file://{root}"), digests


def test_a_file_vault_lists_its_checksums(tmp_path: Path) -> None:
    spec, digests = file_vault(tmp_path, 300)
    vault = Vault(FileStore(spec.vault[len("file://") :]))
    listed = {
        digest: size
        for prefix in {d[:2] for d in digests}
        for digest, size in vault.listing(f"{prefix}/")
    }
    assert listed == {digest: i for i, digest in enumerate(digests)}
    assert list(vault.listing("zz/")) == []  # no such prefix: nothing


@pytest.mark.parametrize("spilled", [False, True], ids=["inline", "spilled"])
@pytest.mark.parametrize("parts", [256, 16, 1])
def test_the_listing_operation_returns_what_it_saw(
    tmp_path: Path, spilled: bool, parts: int
) -> None:
    """A prefix of each split (``ab/``, ``a``, the whole vault) listed and matched: the
    present checksums of the manifest under it, and no others."""
    spec, digests = file_vault(tmp_path, 600)
    key = key_prefix(digests[0][:2], parts)
    under = [d for d in digests if d.startswith(key.rstrip("/"))]
    wanted = sorted(bytes.fromhex(d) for d in under)[::2]  # half of what is there
    absent = [bytes.fromhex(sha(i)) for i in range(600, 5000) if sha(i).startswith(key[:1])]
    raws = sorted(wanted + absent[:40])  # and checksums the vault lacks
    if spilled:
        spill = tmp_path / "spill"
        spill.mkdir()
        for first in {raw.hex()[:2] for raw in raws}:
            (spill / first).write_bytes(b"".join(r for r in raws if r.hex()[:2] == first))
        item = listing_item(key, spill=str(spill))
    else:
        item = listing_item(key, want=b"".join(raws))
    pool = StorePool()
    try:
        ctx = Context(Work.of("vault-list", spec, Options()), pool)
        row: dict[str, Any] = dict(vault_list_op(item, ctx))
    finally:
        pool.close()
    assert row["status"] == "ok" and row["path"] == key
    assert row["keys"] == len(under)
    if spilled:
        found = {
            raw: size for raw, size in ANSWER.iter_unpack(Path(row["found_file"]).read_bytes())
        }
    else:
        raw = bytes.fromhex(row["found"])
        found = {raw[i * 32 : i * 32 + 32]: size for i, size in enumerate(row["sizes"])}
    assert found == {raw: digests.index(raw.hex()) for raw in wanted}


def test_spilled_checksums_are_read_a_prefix_at_a_time(tmp_path: Path) -> None:
    raws = sorted(bytes.fromhex(sha(i)) for i in range(300))
    for first in {raw.hex()[:2] for raw in raws}:
        (tmp_path / first).write_bytes(b"".join(r for r in raws if r.hex()[:2] == first))
    spilled = Spilled(str(tmp_path))
    for raw in raws:  # in key order, as a store lists
        assert raw.hex() in spilled
        assert len(spilled._block) == len([r for r in raws if r[0] == raw[0]])
    assert sha(300) not in spilled and sha(301) not in spilled
    assert "ff" * 32 not in Spilled(str(tmp_path / "none"))  # no file: none there


def test_a_file_vault_lists_by_any_key_prefix(tmp_path: Path) -> None:
    spec, digests = file_vault(tmp_path, 300)
    vault = Vault(FileStore(spec.vault[len("file://") :]))
    assert {d for d, _ in vault.listing("")} == set(digests)
    first = digests[0][0]
    assert {d for d, _ in vault.listing(first)} == {d for d in digests if d[0] == first}
    two = digests[0][:2]
    assert {d for d, _ in vault.listing(f"{two}/")} == {d for d in digests if d[:2] == two}
    assert list(vault.listing("g")) == []


def test_a_sorted_block_is_searched() -> None:
    raws = sorted(bytes.fromhex(sha(i)) for i in range(1000))
    block = Sorted(b"".join(raws))
    assert len(block) == 1000
    assert all(raw in block for raw in raws)
    assert bytes.fromhex(sha(1000)) not in block
    assert b"" not in Sorted(b"")
    with pytest.raises(ValueError):
        Sorted(b"x" * 33)


# ------------------------------------------------------------------ S3 pages


class _Pages(KeyListing):
    """A store whose client answers from a list of pages."""

    def __init__(self, pages: list[dict[str, Any]], prefix: str = "object") -> None:
        self.pages, self.asked = pages, []
        self.client = self
        self.bucket, self.prefix, self.url = "b", prefix, f"s3://b/{prefix}"

    def key_url(self, key: str) -> str:
        return f"s3://b/{self.prefix}/{key}"

    def list_objects_v2(self, **args: Any) -> dict[str, Any]:
        self.asked.append(args)
        return self.pages[len(self.asked) - 1]


def _entry(digest: str, size: int = 1) -> dict[str, Any]:
    return {"Key": f"object/{digest_key(digest)}", "Size": size}


def test_s3_listing_pages_through_continuation_tokens() -> None:
    store = _Pages(
        [
            {
                "Contents": [_entry(sha(1))],
                "KeyCount": 1,
                "IsTruncated": True,
                "NextContinuationToken": "t",
            },
            {"Contents": [_entry(sha(2), 5)], "KeyCount": 1, "IsTruncated": False},
        ]
    )
    assert list(store.list_keys("ab/")) == [(digest_key(sha(1)), 1), (digest_key(sha(2)), 5)]
    assert store.asked[0] == {"Bucket": "b", "Prefix": "object/ab/", "MaxKeys": 1000}
    assert store.asked[1]["ContinuationToken"] == "t"


@pytest.mark.parametrize(
    ("root", "prefix", "asked"),
    [
        ("object", "", "object/"),  # the whole vault, and nothing beside it
        ("object", "a", "object/a"),
        ("object/", "ab/", "object/ab/"),
        ("", "", ""),  # a vault at the bucket's root: the whole bucket
        ("", "a", "a"),
    ],
)
def test_s3_listing_asks_for_the_key_prefix_under_the_vaults_root(
    root: str, prefix: str, asked: str
) -> None:
    store = _Pages([{"Contents": [], "KeyCount": 0, "IsTruncated": False}], prefix=root)
    assert list(store.list_keys(prefix)) == []
    assert store.asked[0]["Prefix"] == asked


@pytest.mark.parametrize(
    "page",
    [
        {"Contents": [_entry(sha(1))], "KeyCount": 2, "IsTruncated": False},  # keys cut off
        {"Contents": [_entry(sha(1))], "KeyCount": 1},  # no IsTruncated: cut short
        {"Contents": [], "KeyCount": 0, "IsTruncated": True},  # more, but no token
        {"Contents": [{"Key": "object/x"}], "KeyCount": 1, "IsTruncated": False},  # no size
    ],
)
def test_an_s3_page_that_came_incomplete_is_a_transient_error(page: dict[str, Any]) -> None:
    store = _Pages([page])
    with pytest.raises(StoreError) as caught:
        list(store.list_keys("ab/"))
    assert caught.value.transient
    assert "incomplete" in str(caught.value)


def test_a_vault_passes_over_keys_that_are_not_a_checksums() -> None:
    store = _Pages(
        [
            {
                "Contents": [_entry(sha(1)), {"Key": "object/ab/x", "Size": 1}],
                "KeyCount": 2,
                "IsTruncated": False,
            }
        ]
    )
    assert list(Vault(store).listing("ab/")) == [(sha(1), 1)]  # type: ignore[arg-type]


# ------------------------------------------------------------------ the answers used


def _row(op: Any, item: Item, spec: StoreSpec, options: Options) -> dict[str, Any]:
    pool = StorePool()
    try:
        return dict(op(item, Context(Work.of("head", spec, options), pool)))
    finally:
        pool.close()


def test_a_listed_entry_is_answered_without_a_request(tmp_path: Path) -> None:
    from dmp_cli.transfer import head_op, upload_op

    # The vault is empty: only the listing's word can make these present.
    (tmp_path / "vault").mkdir()
    spec = StoreSpec(vault=f"file://{tmp_path / 'vault'}")
    digest = sha(1)
    seen: Item = {"path": "f", "digest": digest, "line": 1, "listed": 7}
    unseen: Item = {"path": "f", "digest": digest, "line": 1, "listed": -1}
    assert _row(head_op, seen, spec, Options())["status"] == "present"
    assert _row(head_op, seen, spec, Options())["bytes"] == 7
    assert _row(head_op, unseen, spec, Options())["status"] == "missing"
    url = f"file://{tmp_path / 'vault'}/{digest_key(digest)}"
    for options in (Options(), Options(dry_run=True)):
        row = _row(upload_op, {**seen, "size": 1}, spec, options)  # type: ignore[typeddict-item]
        assert (row["status"], row["to"], row["bytes"]) == ("skipped", url, 0)


def test_an_entry_the_listing_did_not_see_is_offered_to_a_put_if_absent(tmp_path: Path) -> None:
    from dmp_cli.transfer import upload_op

    vault = tmp_path / "vault"
    vault.mkdir()
    spec = StoreSpec(vault=f"file://{vault}")
    source = tmp_path / "f"
    source.write_bytes(b"1")
    digest = sha(1)
    item: Item = {"path": str(source), "digest": digest, "line": 1, "size": 1}
    assert _row(upload_op, item, spec, Options())["status"] == "uploaded"
    # There now, though no listing said so: the put-if-absent finds it, and keeps it.
    assert _row(upload_op, dict(item), spec, Options())["status"] == "skipped"  # type: ignore[arg-type]
    assert (vault / digest_key(digest)).read_bytes() == b"1"


@pytest.mark.parametrize("spill_at", [10**6, 40])
def test_a_run_gives_the_same_rows_either_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spill_at: int
) -> None:
    """Through the embedded executor's threads, its checksums in memory or spilled (the
    listing's items then name files, and its answers come back in files and sqlite)."""
    from dmp_cli import runs
    from dmp_cli.executor import LocalExecutor
    from dmp_cli.runs import planning

    monkeypatch.setattr(planning, "SPILL_DISTINCT", spill_at)
    made: list[Checksums] = []

    class Recorded(Checksums):
        def finish(self) -> None:
            super().finish()
            made.append(self)
            self.was_spilled = self.spilled

    monkeypatch.setattr(planning, "Checksums", Recorded)
    spec, digests = file_vault(tmp_path, 300)
    lines = [f"{d}  f{i}\n" for i, d in enumerate(digests)]
    lines += [f"{sha(i)}  missing{i}\n" for i in range(1000, 1003)]
    lines += [f"{digests[i]}  copy{i}\n" for i in range(4)]
    manifest = tmp_path / "m.sha256"
    manifest.write_text("".join(lines))
    seen: dict[str, list[dict[str, Any]]] = {}
    notes: list[str] = []
    for way in ("list", "head"):
        rows: list[dict[str, Any]] = []
        with LocalExecutor(jobs=1, io_threads=4) as executor:
            report = runs.transfer(
                Command.VAULT,
                str(manifest),
                executor,
                spec,
                listener=runs.Listener(on_row=rows.append),  # type: ignore[arg-type]
                planning=way,
                on_note=notes.append,
            )
        assert report.planned == way
        seen[way] = rows
    assert seen["list"] == seen["head"]
    assert [row["status"] for row in seen["list"]].count("present") == 304
    assert [row["status"] for row in seen["list"]].count("missing") == 3
    assert notes[0].startswith("planning by listing")
    (checksums,) = made
    spilled = checksums.was_spilled  # type: ignore[attr-defined]
    assert (spilled is not None) == (spill_at == 40)
    assert spilled is None or not os.path.exists(spilled)  # gone with the run


def test_a_coarse_listing_that_failed_sends_all_its_checksums_to_head() -> None:
    from dmp_cli.runs import planning

    checksums = Checksums()
    digests = [sha(i) for i in range(200)]
    for digest in digests:
        checksums.add(digest)
    checksums.finish()
    answers = Answers()
    result = Plan("list", "", Command.VAULT, answers, checksums=checksums)
    first = digests[0][0]
    present = next(d for d in digests if d[0] != first)
    rows: list[Row] = [
        {"path": first, "status": "error", "bytes": 0, "error": "refused"},
        {"path": "", "status": "ok", "bytes": 0, "found": present, "sizes": [3]},
    ]
    notes: list[str] = []
    try:
        planning._gather(result, rows, notes.append)
        under = {d[:2] for d in digests if d[0] == first}
        assert result.failed == under
        assert notes == [
            f"listing {first} failed (refused): its "
            f"{sum(1 for d in digests if d[0] == first)} checksums are asked about one by one"
        ]
        assert answers.get(bytes.fromhex(present)) == 3
    finally:
        result.close()
