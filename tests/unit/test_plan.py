"""Planning a vault run from manifest lines, and counting its rows."""

from __future__ import annotations

import hashlib

from dmp_cli.manifest import Entry, Line
from dmp_cli.runs.entries import EntryReader, Tally, retry_items

A = hashlib.sha256(b"a").hexdigest()
B = hashlib.sha256(b"b").hexdigest()


def lines() -> list[Line]:
    return [Line(1, Entry(A, "x")), Line(2, None), Line(3, Entry(B, "y")), Line(4, Entry(A, "z"))]


def test_plan_asks_each_checksum_once() -> None:
    plan = EntryReader()
    items = list(plan.items(lines()))
    assert [(i["path"], i.get("same", False)) for i in items] == [
        ("x", False),
        ("y", False),
        ("z", True),
    ]
    assert (plan.entries, plan.misformatted) == (3, 1)


def test_plan_without_dedupe_and_with_sizes(tmp_path: object) -> None:
    plan = EntryReader(dedupe=False, with_size=True)
    items = list(plan.items(lines()))
    assert not any(i.get("same") for i in items)
    assert all(i["size"] == 0 for i in items)  # no such files: the upload says why


def test_tally_resolves_same_rows() -> None:
    tally = Tally()
    tally.add({"digest": A, "status": "missing"})
    tally.add({"digest": B, "status": "present", "bytes": 5})
    row = tally.add({"digest": A, "status": "same"})
    assert row["status"] == "missing"
    assert (tally["missing"], tally["present"], tally.distinct, tally.nbytes) == (2, 1, 2, 5)
    assert tally.failed == 2  # the caller decides that, for --vault, missing is a warning


def test_tally_archive_counts_copies_as_skipped_unless_failed() -> None:
    tally = Tally(archive=True)
    tally.add({"digest": A, "status": "uploaded", "bytes": 3})
    tally.add({"digest": B, "status": "failed", "error": "boom"})
    assert tally.add({"digest": A, "status": "same"})["status"] == "skipped"
    row = tally.add({"digest": B, "status": "same"})
    assert (row["status"], row["error"]) == ("failed", "boom")
    assert (tally["uploaded"], tally["skipped"], tally.failed, tally.nbytes) == (1, 1, 2, 3)


def test_archive_retries_copies_of_a_failed_first_file() -> None:
    tally = Tally(archive=True)
    tally.add({"digest": A, "status": "failed", "error": "changed"})
    copies = [{"digest": A, "status": "same", "path": p} for p in ("z", "w")]
    assert all(tally.needs_retry(row) for row in copies)
    items = list(retry_items(copies, with_size=False))
    assert [(i["path"], i.get("same", False)) for i in items] == [("z", False), ("w", True)]
    tally.add({"digest": A, "status": "uploaded", "bytes": 1})
    assert tally.add({"digest": A, "status": "same"})["status"] == "skipped"
    assert (tally.distinct, tally["failed"], tally["uploaded"]) == (1, 1, 1)
