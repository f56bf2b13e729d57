"""The fleet's tasks: thin wrappers of ``dmp_cli.ops.run_batch``, and the chord callback.

A task never raises: a header task that raises fails the whole chord and loses its
summary (DESIGN.md, section 5). A file's failure is a row; transient ones are retried here,
with backoff, before they become rows.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from celery import Signature

from dmp_cli.ops import Config, Item, Row
from dmp_cli.ops import run_batch as run_local
from dmp_tasks.app import app
from dmp_tasks.jobs import ERRORS_KEPT, JobStore, is_failure

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_DELAYS = (0.5, 2.0, 8.0)
TRANSIENT_ERRNOS = frozenset(
    {
        errno.EAGAIN,
        errno.EINTR,
        errno.ESTALE,
        errno.ETIMEDOUT,
        errno.EIO,
        errno.ENOTCONN,
        errno.ECONNRESET,
    }
)
TRANSIENT_ERRORS = (
    "ConnectionError",
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectionClosedError",
    "SlowDown",
    "Throttling",
)

_stores: dict[int, JobStore] = {}
_cwd_lock = threading.Lock()


def job_store() -> JobStore:
    """This process's store: made after the worker forks, as Redis clients are not fork-safe."""
    pid = os.getpid()
    if pid not in _stores:
        _stores.clear()
        _stores[pid] = JobStore(app.conf.broker_url)
    return _stores[pid]


def is_transient(row: Row) -> bool:
    if row["status"] == "ok":
        return False
    if row.get("transient"):
        return True
    if row.get("errno") in TRANSIENT_ERRNOS:
        return True
    return row["status"] == "error" and str(row.get("error", "")).startswith(TRANSIENT_ERRORS)


def _sleep(delay: float) -> None:
    time.sleep(delay * random.uniform(0.75, 1.25))  # jitter: retries of a fleet spread out


def run_with_retries(op: str, items: list[Item], config: Config) -> list[Row]:
    """Run a batch; rerun the items whose failure looks transient, backing off between."""
    rows = run_local(op, items, config)
    for delay in RETRY_DELAYS:
        again = [i for i, row in enumerate(rows) if row["status"] != "ok" and is_transient(row)]
        if not again:
            break
        _sleep(delay)
        for i, row in zip(again, run_local(op, [items[i] for i in again], config), strict=True):
            rows[i] = row
    return rows


def count_rows(rows: list[Row]) -> dict[str, int]:
    counts = {f"s:{status}": n for status, n in Counter([row["status"] for row in rows]).items()}
    counts["files"] = len(rows)
    counts["bytes"] = sum([row.get("bytes", 0) for row in rows])
    return counts


def failures(op: str, rows: list[Row]) -> list[Row]:
    return [row for row in rows if row["status"] != "ok" and is_failure(op, row["status"])]


def elide_paths(rows: list[Row], items: list[Item]) -> list[Row]:
    """Rows for the stream, in place: each path the submitter sent replaced by 0, as the
    submitter has them and paths are most of a row's bytes (a path is a str, so 0 is
    unambiguous)."""
    for row, item in zip(rows, items, strict=True):
        if row.get("path") == item.get("path") is not None:
            row["path"] = 0
    return rows


def _cancelled(items: list[Item]) -> list[Row]:
    rows = []
    for item in items:
        row = {
            "path": item.get("path"),
            "status": "cancelled",
            "bytes": 0,
            "error": "job cancelled",
        }
        if "line" in item:
            row["line"] = item["line"]
        rows.append(row)
    return rows


def _persist(action: Callable[[], T]) -> T:
    """Redis calls from a task: ride out a short outage rather than lose a batch's rows."""
    for delay in RETRY_DELAYS:
        try:
            return action()
        except redis.RedisError as exc:
            log.warning("job state not written yet (%s); retrying", exc)
            _sleep(delay)
    return action()


def _run(op: str, items: list[Item], config: Config, cwd: str) -> list[Row]:
    """Run in the submitter's working directory, so that relative paths mean the same
    files here as there and in the rows (workers share the filesystem).

    The working directory belongs to the process: the lock keeps a worker started with a
    thread pool (`-P threads`) correct, if serial; a prefork process runs one task at a
    time and never waits on it.
    """
    with _cwd_lock:
        try:
            os.chdir(cwd)
        except OSError as exc:
            reason = f"working directory {cwd} not usable on this worker: {exc.strerror}"
            return [
                {
                    "path": item.get("path"),
                    "status": "error",
                    "bytes": 0,
                    "error": reason,
                    **({"line": item["line"]} if "line" in item else {}),
                }
                for item in items
            ]
        return run_with_retries(op, items, config)


def run_batch(
    job: str, index: int, op: str, items: list[Item], config: dict[str, Any], stream: bool, cwd: str
) -> dict[str, int]:
    """Run one batch of ``op``, publish its rows once, and return its counts for the
    chord. The tasks below, one for each kind of work, are this with their operation."""
    try:
        store = job_store()
        if _persist(lambda: store.state(job)) == "cancelled":
            rows = _cancelled(items)
        else:
            rows = _run(op, items, config, cwd)
        counts = count_rows(rows)
        failed = [json.dumps(row) for row in failures(op, rows)[:ERRORS_KEPT]]
        rows_json = json.dumps(elide_paths(rows, items)) if stream else None  # last: in place
        _persist(lambda: store.record_batch(job, index, counts, rows_json, failed))
        return counts
    except Exception:  # never fail the chord; the job's record shows the loss
        log.exception("job %s batch %d could not be recorded", job, index)
        return {"files": len(items), "s:lost": len(items), "bytes": 0}


# The four kinds of task, by name: a site can route, rate-limit or watch each on its own
# (`celery -A dmp_tasks control rate_limit dmp.upload_batch 100/m`). Their names
# end in _batch, apart from the queues (dmp.hash, dmp.transfer, dmp.big) they go to.


@app.task(name="dmp.hash_batch")
def hash_batch(
    job: str,
    index: int,
    items: list[Item],
    config: dict[str, Any],
    stream: bool,
    cwd: str,
    verify: bool = False,
) -> dict[str, int]:
    """Hash a batch of files (--create), or hash them and compare (--check, ``verify``)."""
    return run_batch(job, index, "check" if verify else "hash", items, config, stream, cwd)


@app.task(name="dmp.head_batch")
def head_batch(
    job: str, index: int, items: list[Item], config: dict[str, Any], stream: bool, cwd: str
) -> dict[str, int]:
    """Ask the vault whether it holds each checksum of a batch (--vault)."""
    return run_batch(job, index, "head", items, config, stream, cwd)


@app.task(name="dmp.upload_batch")
def upload_batch(
    job: str, index: int, items: list[Item], config: dict[str, Any], stream: bool, cwd: str
) -> dict[str, int]:
    """Archive a batch of files to the vault (--archive)."""
    return run_batch(job, index, "upload", items, config, stream, cwd)


@app.task(name="dmp.download_batch")
def download_batch(
    job: str, index: int, items: list[Item], config: dict[str, Any], stream: bool, cwd: str
) -> dict[str, int]:
    """Fetch a batch of files from the vault, verified (--fetch)."""
    return run_batch(job, index, "download", items, config, stream, cwd)


def batch_signature(
    op: str, job: str, index: int, items: list[Item], config: dict[str, Any], stream: bool, cwd: str
) -> Signature:
    """The task that runs a batch of ``op``, with its arguments."""
    if op in ("hash", "check"):
        return hash_batch.si(job, index, items, config, stream, cwd, op == "check")
    task = {"head": head_batch, "upload": upload_batch, "download": download_batch}[op]
    return task.si(job, index, items, config, stream, cwd)


@app.task(name="dmp.window_done")
def window_done(results: list[Any], job: str, window: int) -> dict[str, int]:
    """The chord callback: sum the counts of its batches, record them once for the job."""
    total: Counter[str] = Counter()
    for counts in results:
        if isinstance(counts, dict):
            total.update(counts)
    summed = dict(total)
    try:
        _persist(lambda: job_store().finish_window(job, window, summed))
    except Exception:
        log.exception("job %s window %d could not be recorded", job, window)
    return summed
