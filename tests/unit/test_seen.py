"""A run's checksums met and first rows kept on disk past a bound: the same items, rows
and counts as in memory, and the table freed when done with."""

from __future__ import annotations

import gc
import hashlib
import os
import random
from collections.abc import Iterator

import pytest

from dmp_cli.manifest import Entry, Line
from dmp_cli.rows import Item, Row
from dmp_cli.runs.entries import FAILED, EntryReader, Tally, retry_items
from dmp_cli.runs.seen import SPILL_DISTINCT, Seen, spill_at


def digest(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def manifest(rng: random.Random, entries: int, distinct: int) -> list[Line]:
    lines = []
    for number in range(1, entries + 1):
        if rng.random() < 0.03:
            lines.append(Line(number, None))
        else:
            lines.append(Line(number, Entry(digest(rng.randrange(distinct)), f"f{number}")))
    return lines


class Model:
    """The in-memory bookkeeping as it was: a set of the checksums met, a dict of the
    first rows' outcomes."""

    def __init__(self, archive: bool, dedupe: bool) -> None:
        self.archive, self.dedupe = archive, dedupe
        self.seen: set[str] = set()
        self.first: dict[str, tuple[str, str | None]] = {}
        self.counts: dict[str, int] = {}
        self.distinct = 0

    def items(self, lines: list[Line]) -> Iterator[Item]:
        for line in lines:
            if line.entry is None:
                continue
            item: Item = {"line": line.number, "path": line.entry.path}
            item["digest"] = line.entry.digest
            if self.dedupe and line.entry.digest in self.seen:
                item["same"] = True
            self.seen.add(line.entry.digest)
            yield item

    def needs_retry(self, row: Row) -> bool:
        if not (self.archive and row["status"] == "same"):
            return False
        return self.first.get(row["digest"], ("missing", None))[0] in FAILED

    def add(self, row: Row) -> Row:
        if row["status"] == "same":
            status, error = self.first.get(row["digest"], ("missing", None))
            if self.archive and status not in FAILED:
                status = "skipped"
            row = {**row, "status": status, "error": error, "same": True}
        else:
            if row["digest"] not in self.first:
                self.distinct += 1
            if self.dedupe:
                self.first[row["digest"]] = (row["status"], row.get("error"))
        self.counts[row["status"]] = self.counts.get(row["status"], 0) + 1
        return row


def outcome(item: Item, tries: dict[str, int], archive: bool, seed: int) -> Row:
    """A made-up operation: each file's outcome depends on its path and how often it was
    tried, so every run of the bookkeeping sees the same ones."""
    if item.get("same"):
        return {**item, "status": "same"}
    tries[item["path"]] = tries.get(item["path"], 0) + 1
    rng = random.Random(f"{seed}:{item['path']}:{tries[item['path']]}")
    choices = ["uploaded", "skipped", "failed", "unreadable"] if archive else ["present", "missing"]
    status = rng.choice(choices)
    error = f"no {item['path']}" if status in ("failed", "unreadable", "missing") else None
    return {**item, "status": status, "error": error, "bytes": 1}


def run(book: Tally | Model, items: Iterator[Item], archive: bool, seed: int) -> list[Row]:
    """The rounds of a run, as the transfer run makes them."""
    tries: dict[str, int] = {}
    shown = []
    while True:
        retries = []
        for item in items:
            raw = outcome(item, tries, archive, seed)
            if book.needs_retry(raw):
                retries.append(raw)
                continue
            shown.append(book.add(raw))
        if not retries:
            return shown
        items = retry_items(retries, with_size=False)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("archive", [False, True])
@pytest.mark.parametrize("dedupe", [True, False])
def test_spilled_bookkeeping_gives_the_rows_kept_in_memory(
    seed: int, archive: bool, dedupe: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    lines = manifest(rng, entries=rng.randrange(50, 400), distinct=rng.randrange(20, 120))
    model = Model(archive, dedupe)
    expected = run(model, model.items(lines), archive, seed)
    assert any(row.get("same") for row in expected) == dedupe
    for bound in (None, 1, 3, 17):
        if bound is None:
            monkeypatch.delenv("DMP_DEDUPE_SPILL", raising=False)
        else:
            monkeypatch.setenv("DMP_DEDUPE_SPILL", str(bound))
        reader = EntryReader(dedupe=dedupe)
        tally = Tally(archive=archive, dedupe=dedupe)
        rows = run(tally, reader.items(lines), archive, seed)
        assert rows == expected, bound
        assert (tally.counts, tally.distinct) == (model.counts, model.distinct)
        assert (reader.entries, reader.misformatted) == (
            sum(1 for line in lines if line.entry),
            sum(1 for line in lines if not line.entry),
        )
        spills = dedupe and bound is not None and model.distinct > bound
        assert tally._first.spilled == spills
        tally.close()


def tables() -> int:
    """This process's open sqlite temporary files (unlinked as soon as opened)."""
    fds = "/proc/self/fd"
    names = []
    for fd in os.listdir(fds):
        try:
            names.append(os.readlink(os.path.join(fds, fd)))
        except OSError:
            pass
    return sum(1 for name in names if "etilqs_" in name and name.endswith("(deleted)"))


def test_a_spilled_table_answers_as_the_dict_did(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DMP_DEDUPE_CACHE_KIB", "16")  # a file soon
    rng = random.Random(7)
    keys = [rng.randbytes(32) for _ in range(2000)]
    memory, disk = Seen(limit=10**9), Seen(limit=5)
    for key in keys[:1500]:
        assert memory.first(key) == disk.first(key)
    assert disk.spilled and tables() == 1
    for step in range(6000):
        key = rng.choice(keys)
        if step % 3 == 0:
            assert memory.first(key) == disk.first(key)
        elif step % 3 == 1:
            status = rng.choice(["ok", "failed", "present", "an unforeseen one"])
            error = rng.choice([None, None, "why", ""])
            assert memory.put(key, status, error) == disk.put(key, status, error)
        assert memory.get(key) == disk.get(key)
    assert len(memory) == len(disk) > 1500
    disk.close()
    assert tables() == 0
    assert not disk.spilled and len(disk) == 0 and disk.first(keys[0])


def test_the_bound_is_a_setting_for_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DMP_DEDUPE_SPILL", "12")
    assert spill_at() == Seen().limit == 12
    for wrong in ("0", "-3", "x", ""):
        monkeypatch.setenv("DMP_DEDUPE_SPILL", wrong)
        assert spill_at() == SPILL_DISTINCT


def test_the_reader_frees_its_table_when_read_or_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DMP_DEDUPE_SPILL", "2")
    monkeypatch.setenv("DMP_DEDUPE_CACHE_KIB", "16")
    lines = [Line(n, Entry(digest(n % 1000), f"f{n}")) for n in range(1, 3000)]
    reader = EntryReader()
    items = reader.items(lines)
    assert sum(1 for _ in zip(range(1500), items, strict=False)) == 1500
    assert reader._seen.spilled and tables() == 1
    items.close()  # ^C in the run: the generator is closed as it unwinds
    assert tables() == 0

    reader = EntryReader()
    assert sum(1 for item in reader.items(lines) if item.get("same")) == 2999 - 1000
    assert not reader._seen.spilled and tables() == 0


def test_the_tally_frees_its_table_when_closed_or_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DMP_DEDUPE_SPILL", "2")
    monkeypatch.setenv("DMP_DEDUPE_CACHE_KIB", "16")
    tally = Tally()
    for n in range(1000):
        tally.add({"digest": digest(n), "status": "present"})
    assert tables() == 1
    tally.close()
    assert tables() == 0
    assert (tally["present"], tally.distinct) == (1000, 1000)

    tally = Tally()
    for n in range(1000):
        tally.add({"digest": digest(n), "status": "present"})
    assert tables() == 1
    del tally
    gc.collect()
    assert tables() == 0
