"""Job state in a real Redis: what must happen once happens once, whatever the order."""

from __future__ import annotations

import json
import uuid

import pytest

from dmp_cli.job_verdicts import job_failed, rule_failure, status_counts
from dmp_tasks.jobs import ERRORS_KEPT, JobStore, job_key
from tests.servers import Service

pytestmark = pytest.mark.integration


@pytest.fixture
def store(redis: Service) -> JobStore:
    return JobStore(redis.url.rsplit("/", 1)[0] + "/9")


def new_job(store: JobStore, op: str = "check") -> str:
    job = uuid.uuid4().hex[:12]
    store.create(job, {"op": op, "host": "here", "command": "dmp test"})
    return job


def test_a_batch_recorded_twice_counts_once(store: JobStore) -> None:
    job = new_job(store)
    rows = json.dumps([{"path": "a", "status": "ok", "bytes": 3}])
    counts = {"files": 1, "bytes": 3, "s:ok": 1}
    assert store.record_batch(job, 0, counts, rows, []) == 1
    assert store.record_batch(job, 0, counts, rows, []) == 0  # a redelivered batch
    info = store.info(job)
    assert info is not None
    assert (info.files, info.bytes, info.batches_done) == (1, 3, 1)
    _, batches = store.read_rows(job, b"0-0", block_ms=10)
    assert [(index, read) for _, index, read in batches] == [(0, rows)]
    assert store.read_rows(job, b"0-0", block_ms=10)[1] == []  # read rows are deleted


@pytest.mark.parametrize("total_first", [True, False], ids=["total-first", "windows-first"])
def test_done_when_every_window_is_in_whatever_the_order(
    store: JobStore, total_first: bool
) -> None:
    job = new_job(store)
    if total_first:
        store.set_total(job, windows=2, batches=3, items=5)
    assert store.finish_window(job, 0, {"files": 4})
    assert not store.finish_window(job, 0, {"files": 4})  # a callback run twice
    assert store.state(job) == "active"
    assert store.finish_window(job, 1, {"files": 1})
    if not total_first:
        assert store.state(job) == "active"
        store.set_total(job, windows=2, batches=3, items=5)
    assert store.state(job) == "done"


@pytest.mark.parametrize("total_first", [True, False], ids=["total-first", "batches-first"])
def test_done_when_every_batch_is_in_without_a_chord_callback(
    store: JobStore, total_first: bool
) -> None:
    """Every count is in once every batch has recorded itself: a chord callback that
    never comes (its worker died; it runs again only after the redelivery timeout) does
    not hold the job open."""
    job = new_job(store)
    if total_first:
        store.set_total(job, windows=1, batches=2, items=2)
    assert store.record_batch(job, 0, {"files": 1, "s:ok": 1}, None, [])
    assert store.state(job) == "active"
    assert store.record_batch(job, 1, {"files": 1, "s:ok": 1}, None, [])
    if not total_first:
        assert store.state(job) == "active"
        store.set_total(job, windows=1, batches=2, items=2)
    info = store.info(job)
    assert info is not None and info.state == "done" and info.finished is not None
    assert not job_failed(info)
    assert store.finish_window(job, 0, {"files": 2})  # the callback, late: no harm
    assert store.state(job) == "done"


def test_empty_job_is_done_at_once(store: JobStore) -> None:
    job = new_job(store)
    store.set_total(job, windows=0, batches=0, items=0)
    assert store.state(job) == "done"


def test_cancel_wins_over_done(store: JobStore) -> None:
    job = new_job(store)
    assert store.cancel(job) is True
    assert store.cancel(job) is False
    store.set_total(job, windows=0, batches=0, items=0)
    assert store.state(job) == "cancelled"
    info = store.info(job)
    assert info is not None and job_failed(info)


def test_errors_are_capped(store: JobStore) -> None:
    job = new_job(store)
    errors = [
        json.dumps({"path": f"f{i}", "status": "missing", "error": "gone"})
        for i in range(ERRORS_KEPT + 300)
    ]
    store.record_batch(job, 0, {"files": len(errors), "s:missing": len(errors)}, None, errors)
    kept = store.errors(job, limit=10 * ERRORS_KEPT)
    assert ERRORS_KEPT <= len(kept) < ERRORS_KEPT + 300
    info = store.info(job)
    assert info is not None
    assert status_counts(info) == {"missing": ERRORS_KEPT + 300}
    assert job_failed(info)


def test_missing_objects_do_not_fail_a_vault_query(store: JobStore) -> None:
    job = new_job(store, op="head")
    store.record_batch(job, 0, {"files": 2, "s:ok": 1, "s:missing": 1}, None, [])
    info = store.info(job)
    assert info is not None and not job_failed(info)


def test_jobs_listed_newest_first(store: JobStore) -> None:
    first, second = new_job(store), new_job(store)
    listed = [job for job, _ in store.newest(limit=1000)]
    assert listed.index(second) < listed.index(first)


def test_a_lost_batch_fails_the_job(store: JobStore) -> None:
    job = new_job(store)
    store.record_batch(job, 0, {"files": 2, "s:ok": 2}, None, [])
    store.finish_window(job, 0, {"files": 5, "s:ok": 2, "s:lost": 3})
    store.set_total(job, windows=1, batches=2, items=5)
    info = store.info(job)
    assert info is not None and info.state == "done"
    assert status_counts(info) == {"ok": 2, "lost": 3}
    assert job_failed(info)


@pytest.mark.parametrize(
    ("op", "status", "fails"),
    [
        ("check", "ok", False),
        ("check", "misformatted", True),
        ("check", "failed", True),
        ("check", "missing", True),
        ("head", "missing", False),
        ("upload", "refused", True),
        ("upload", "skipped", False),
        ("download", "fetched", False),
        ("check", "lost", True),
    ],
    ids=lambda value: str(value),
)
def test_which_statuses_fail_a_job(store: JobStore, op: str, status: str, fails: bool) -> None:
    job = new_job(store, op=op)
    store.record_batch(job, 0, {"files": 1, f"s:{status}": 1}, None, [])
    store.set_total(job, windows=0, batches=1, items=1)
    info = store.info(job)
    assert info is not None and job_failed(info) is fails


@pytest.mark.parametrize(
    ("op", "rules", "counts", "extra", "reason"),
    [
        ("check", {}, {"ok": 1, "misformatted": 1}, {}, None),
        (
            "check",
            {"strict": 1},
            {"ok": 1, "misformatted": 1},
            {},
            "1 line is improperly formatted (--strict)",
        ),
        ("check", {}, {"misformatted": 2}, {}, "no properly formatted checksum lines found"),
        ("check", {"ignore_missing": 1}, {"ok": 1, "missing": 1}, {}, None),
        (
            "check",
            {"ignore_missing": 1},
            {"missing": 2},
            {},
            "no file was verified (--ignore-missing)",
        ),
        (
            "head",
            {"strict": 1},
            {"present": 1},
            {"misformatted": 2},
            "2 lines are improperly formatted (--strict)",
        ),
        ("head", {}, {"present": 1}, {"misformatted": 2}, None),
    ],
    ids=[
        "misformatted",
        "strict",
        "no-lines",
        "ignore-missing",
        "none-verified",
        "vault-strict",
        "vault-lenient",
    ],
)
def test_the_submitting_commands_rules_decide_a_job(
    store: JobStore,
    op: str,
    rules: dict[str, int],
    counts: dict[str, int],
    extra: dict[str, int],
    reason: str | None,
) -> None:
    job = uuid.uuid4().hex[:12]
    store.create(job, {"op": op, "host": "here", "command": "dmp test", **rules})
    files = sum(counts.values())
    store.record_batch(
        job, 0, {"files": files, **{f"s:{k}": n for k, n in counts.items()}}, None, []
    )
    assert store.finish_window(job, 0, {"files": files})
    store.set_total(job, windows=1, batches=1, items=files, extra=extra)
    info = store.info(job)
    assert info is not None and info.state == "done"
    assert rule_failure(info) == reason
    assert job_failed(info) is (reason is not None)


def test_a_refusal_is_kept_once_and_never_makes_a_gone_job_again(store: JobStore) -> None:
    job = new_job(store)
    assert store.refused(job) is None
    store.refuse(job, "the first reason")
    store.refuse(job, "another")
    assert store.refused(job) == "the first reason"
    gone = uuid.uuid4().hex[:12]
    store.refuse(gone, "too late")
    assert not store.client.exists(job_key(gone))
    assert store.refused(gone) is None
