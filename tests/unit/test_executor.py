"""The embedded executor: rows in the items' order, batches bounded by count and bytes."""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from dmp_cli.executor import LocalExecutor, batches, default_jobs
from dmp_cli.ops import OPERATIONS, Context, Operation, run_batch
from dmp_cli.options import Work


def items(sizes: list[int | None]) -> list[dict[str, object]]:
    return [{"path": f"f{i}", "size": size} for i, size in enumerate(sizes)]


def test_batches_keep_order_and_bound_the_count() -> None:
    given = items([1] * 10)
    groups = list(batches(given, max_items=4, max_bytes=1 << 30))
    assert [len(g) for g in groups] == [4, 4, 2]
    assert list(itertools.chain.from_iterable(groups)) == given


def test_a_plan_sets_each_batch_s_count_and_the_size_of_unsized_items() -> None:
    given = [{"path": f"f{i}"} for i in range(12)] + items([50, 50])
    plans = iter([(2, 0), (4, 0), (100, 40), (100, 40), (100, 40), (100, 40), (100, 40)])
    groups = list(batches(given, max_items=1000, max_bytes=100, sizes=lambda: next(plans)))
    # 2 then 4 by count; then 40 bytes assumed a file: 2 a batch under 100 bytes
    assert [len(g) for g in groups] == [2, 4, 2, 2, 2, 2]
    assert groups[-1] == items([50, 50])  # known sizes count as they are
    assert list(itertools.chain.from_iterable(groups)) == given


def test_batches_bound_the_bytes() -> None:
    groups = list(batches(items([40, 40, 30, 10, 60, 50]), max_items=100, max_bytes=100))
    assert [[item["size"] for item in g] for g in groups] == [[40, 40], [30, 10, 60], [50]]
    for group in groups:
        assert sum(int(str(item["size"])) for item in group) <= 100


def test_a_huge_file_goes_alone() -> None:
    groups = list(batches(items([1, 2, 500, 3, 4, 900]), max_items=100, max_bytes=100))
    assert [[item["size"] for item in g] for g in groups] == [[1, 2], [500], [3, 4], [900]]


def test_batches_of_items_without_size_are_bounded_by_count() -> None:
    groups = list(batches(items([None, 0, None]), max_items=2, max_bytes=1))
    assert [len(g) for g in groups] == [2, 1]


def test_no_items_no_batches() -> None:
    assert list(batches(iter([]))) == []


def test_batches_are_lazy() -> None:
    endless = ({"path": str(i), "size": 1} for i in itertools.count())
    first = next(batches(endless, max_items=3, max_bytes=100))
    assert [item["path"] for item in first] == ["0", "1", "2"]


@pytest.fixture
def files(tmp_path: Path) -> list[tuple[str, str, int]]:
    """Many files of mixed sizes: (path, sha256, size)."""
    rng = random.Random(5)
    made = []
    for i in range(700):
        size = rng.choice([0, 1, 100, 5000, 70_000, 400_000])
        data = rng.randbytes(size)
        path = tmp_path / f"file{i:04d}"
        path.write_bytes(data)
        made.append((str(path), hashlib.sha256(data).hexdigest(), size))
    rng.shuffle(made)
    return made


@pytest.mark.parametrize("jobs", [1, 2], ids=["serial", "two-processes"])
def test_hash_rows_come_back_in_input_order(
    files: list[tuple[str, str, int]], jobs: int, tmp_path: Path
) -> None:
    given = [{"path": path, "size": size} for path, _, size in files]
    missing = str(tmp_path / "missing")
    given.insert(350, {"path": missing, "size": 0})
    with LocalExecutor(jobs) as executor:
        rows = list(executor.map(Work("hash"), iter(given)))
    assert [row["path"] for row in rows] == [item["path"] for item in given]
    by_path = {row["path"]: row for row in rows}
    for path, digest, size in files:
        assert by_path[path]["status"] == "ok"
        assert (by_path[path]["digest"], by_path[path]["bytes"]) == (digest, size)
    assert by_path[missing]["status"] == "missing"
    assert by_path[missing]["error"] == "No such file or directory"


def test_map_streams_without_reading_all_items(tmp_path: Path) -> None:
    consumed = 0

    def endless() -> Iterator[dict[str, object]]:
        nonlocal consumed
        for i in itertools.count():
            consumed += 1
            yield {"path": str(tmp_path / f"none{i}"), "size": 0}

    with LocalExecutor(2) as executor:
        rows = executor.map(Work("hash"), endless())
        first = list(itertools.islice(rows, 10))
        rows.close()  # type: ignore[attr-defined]  # a generator, whatever the Protocol says
    assert [row["status"] for row in first] == ["missing"] * 10
    assert consumed < 100_000


def test_map_reuses_the_pool_across_calls(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"a")
    with LocalExecutor(2) as executor:
        for _ in range(3):
            rows = list(executor.map(Work("hash"), [{"path": str(tmp_path / "a"), "size": 1}]))
            assert rows[0]["digest"] == hashlib.sha256(b"a").hexdigest()


def test_run_batch_turns_an_exception_into_a_row_and_keeps_the_line() -> None:
    def explode(item: dict[str, object], ctx: Context) -> dict[str, object]:
        if item["path"] == "bad":
            raise ValueError("boom")
        return {"path": item["path"], "status": "ok"}

    OPERATIONS["test-explode"] = Operation("test-explode", explode, "cpu")
    try:
        rows = run_batch(
            Work("test-explode"), [{"path": "good", "line": 3}, {"path": "bad", "line": 4}]
        )
    finally:
        del OPERATIONS["test-explode"]
    assert rows == [
        {"path": "good", "status": "ok", "line": 3},
        {"path": "bad", "status": "error", "bytes": 0, "error": "ValueError: boom", "line": 4},
    ]


def test_default_jobs_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DMP_JOBS", "3")
    assert default_jobs() == 3
    monkeypatch.setenv("DMP_JOBS", "0")
    assert default_jobs() == 1
    monkeypatch.delenv("DMP_JOBS")
    assert default_jobs() >= 1


@pytest.mark.parametrize(("op", "per_batch"), [("vault-list", 1), ("head", 8)])
def test_each_listing_goes_to_a_thread_of_its_own(
    monkeypatch: pytest.MonkeyPatch, op: str, per_batch: int
) -> None:
    """A listing is long work: embedded, each prefix is a batch of its own, so that the
    prefixes are listed in parallel; a HEAD is short: a few go together."""
    import dmp_cli.executor as executor_module

    sizes: list[int] = []

    def recorded(work: Work, batch: list, *args: object, **kwargs: object) -> list:
        sizes.append(len(batch))
        return [{"path": item["path"], "status": "ok"} for item in batch]

    monkeypatch.setattr(executor_module, "run_batch", recorded)
    items = [{"path": f"{i:02x}/", "digest": "0" * 64} for i in range(16)]
    with LocalExecutor(jobs=2) as executor:
        rows = list(executor.map(Work(op), iter(items)))
    assert [row["path"] for row in rows] == [item["path"] for item in items]
    assert sizes == [per_batch] * (16 // per_batch)
