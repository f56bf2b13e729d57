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
from dmp_cli.listing import ANSWER, Sorted, listing_item, vault_list_op
from dmp_cli.ops import Context
from dmp_cli.options import Options, StoreSpec, Work
from dmp_cli.rows import Item
from dmp_cli.rules import Command
from dmp_cli.runs.planning import (
    Answers,
    Checksums,
    Plan,
    choose,
    keys_enough,
    list_requests,
)
from dmp_cli.store import StorePool, Vault
from dmp_cli.store.local import FileStore
from dmp_cli.store.s3.listing import KeyListing


def sha(i: int) -> str:
    return hashlib.sha256(b"%d" % i).hexdigest()


# ------------------------------------------------------------------ the choice


def test_list_requests_are_a_page_per_prefix_at_least() -> None:
    assert list_requests(256, 0) == 256
    assert list_requests(256, 100_000) == 256  # 391 keys a prefix: one page each
    assert list_requests(256, 1_000_000) == 256 * 4
    assert list_requests(10, 1_000_000) == 40


@pytest.mark.parametrize(
    ("distinct", "prefixes", "sampled", "way"),
    [
        (100_000, 256, 1, "list"),  # a vault of about 65,536 objects
        (100_000, 256, 2, "list"),
        (1_000_000, 256, 12, "list"),  # 786,432 objects: 4 pages a prefix
        (10, 10, None, "head"),  # listing costs at least 11 requests
        (300, 256, 5, "head"),  # 327,680 objects: 512 pages, more than 300 HEADs
        (300, 256, 0, "list"),  # an empty sample: 257 requests against 300
        (10**8, 256, 1_525, "list"),  # 10^8 objects: 100,000 requests, not 10^8
    ],
)
def test_the_way_that_needs_fewer_requests_is_chosen(
    distinct: int, prefixes: int, sampled: int | None, way: str
) -> None:
    assert choose(distinct, prefixes, sampled, "HEAD requests").way == way


def test_the_note_says_which_way_and_why() -> None:
    listed = choose(1_000_000, 256, 12, "HEAD requests")
    assert listed.why == (
        "planning by listing 256 prefixes: 1,025 LIST requests instead of 1,000,000 HEAD "
        "requests (a vault of about 786,432 objects)"
    )
    headed = choose(300, 256, 5, "HEAD requests")
    assert headed.why == (
        "planning by HEAD: 300 HEAD requests instead of 513 LIST requests (a vault of "
        "about 327,680 objects or more)"
    )


@pytest.mark.parametrize("distinct", [258, 300, 1000, 100_000, 10**7])
def test_the_estimate_stops_once_listing_cannot_pay(distinct: int) -> None:
    """Counting the sample up to ``keys_enough`` is enough to choose HEADs, and one key
    fewer is not: the estimate stops exactly when the choice is clear."""
    enough = keys_enough(256, distinct)
    assert choose(distinct, 256, enough, "HEAD requests").way == "head"
    assert choose(distinct, 256, enough - 1, "HEAD requests").way == "list"


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


@pytest.mark.parametrize("spilled", [False, True])
def test_the_listing_operation_returns_what_it_saw(tmp_path: Path, spilled: bool) -> None:
    spec, digests = file_vault(tmp_path, 600)
    prefix = digests[0][:2]
    wanted = sorted(bytes.fromhex(d) for d in digests if d[:2] == prefix)
    absent = [bytes.fromhex(sha(i)) for i in range(600, 5000) if sha(i)[:2] == prefix][:3]
    block = b"".join(sorted(wanted[::2] + absent))  # half of what is there, and absent ones
    if spilled:
        spill = tmp_path / prefix
        spill.write_bytes(block)
        item = listing_item(prefix, spill=str(spill))
    else:
        item = listing_item(prefix, want=block)
    pool = StorePool()
    try:
        ctx = Context(Work.of("vault-list", spec, Options()), pool)
        row: dict[str, Any] = dict(vault_list_op(item, ctx))
    finally:
        pool.close()
    assert row["status"] == "ok" and row["path"] == f"{prefix}/"
    assert row["keys"] == len(wanted)
    if spilled:
        found = {
            raw: size for raw, size in ANSWER.iter_unpack(Path(row["found_file"]).read_bytes())
        }
    else:
        raw = bytes.fromhex(row["found"])
        found = {raw[i * 32 : i * 32 + 32]: size for i, size in enumerate(row["sizes"])}
    assert found == {raw: digests.index(raw.hex()) for raw in wanted[::2]}


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
