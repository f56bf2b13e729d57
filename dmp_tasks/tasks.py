"""The fleet's tasks: thin wrappers of ``dmp_cli.ops.run_batch``, and the chord callback.

A task never raises: a header task that raises fails the whole chord (Celery runs no
callback for it), and the counts of its other batches are lost with it. A file's failure
is a row; the batch runner retries the transient ones, with backoff, before they become
rows. Stores are made from the job's spec once per worker process (after the fork:
clients are not fork-safe), kept for the batches that follow, and closed when the process
ends.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from celery import Celery, Signature
from celery.signals import worker_process_shutdown, worker_ready

from dmp_cli.job_record import JobState
from dmp_cli.ops import Context, operation_named
from dmp_cli.ops import run_batch as run_local
from dmp_cli.options import Work
from dmp_cli.rows import Item, Row, Status
from dmp_cli.rules import Command, failing
from dmp_cli.store import StorePool
from dmp_tasks import asuser, auth, walk, wire
from dmp_tasks.app import app
from dmp_tasks.credentials import MungeUnreachable
from dmp_tasks.jobs import ERRORS_KEPT, JOB_TTL, JobStore, job_key

log = logging.getLogger(__name__)
T = TypeVar("T")

# Pauses between attempts to write a batch's record while Redis is away.
PERSIST_DELAYS = (0.5, 2.0, 8.0)


class _Process:
    """What a worker process makes once, after the fork, and keeps: its Redis client and
    its stores."""

    pid = 0
    jobs: JobStore | None = None
    stores: StorePool | None = None

    @classmethod
    def current(cls) -> type[_Process]:
        if cls.pid != os.getpid():
            cls.pid, cls.jobs, cls.stores = os.getpid(), None, None
        return cls


def job_store() -> JobStore:
    """This process's job store (Redis clients are not fork-safe)."""
    process = _Process.current()
    if process.jobs is None:
        process.jobs = JobStore(app.conf.broker_url)
    return process.jobs


def store_pool() -> StorePool:
    process = _Process.current()
    if process.stores is None:
        process.stores = StorePool()
    return process.stores


@worker_ready.connect
def _say_policy(**_: Any) -> None:
    """A worker says at start how it admits work (``dmp_tasks.auth``)."""
    try:
        log.warning("dmp worker: %s", auth.policy().describe())
    except Exception as exc:  # a setting it cannot use: every batch will say so too
        log.error("dmp worker: %s", exc)


@worker_process_shutdown.connect
def _close_stores(**_: Any) -> None:
    if _Process.pid == os.getpid() and _Process.stores is not None:
        _Process.stores.close()


def _sleep(delay: float) -> None:
    time.sleep(delay * random.uniform(0.75, 1.25))  # jitter: retries of a fleet spread out


def count_rows(rows: list[Row]) -> dict[str, int]:
    counts = {f"s:{status}": n for status, n in Counter([row["status"] for row in rows]).items()}
    counts["files"] = len(rows)
    counts["bytes"] = sum([row.get("bytes", 0) for row in rows])
    return counts


def failures(op: str, rows: list[Row]) -> list[Row]:
    command = Command.of_operation(op)
    return [row for row in rows if row["status"] != Status.OK and failing(command, row["status"])]


def _cancelled(work: Work, items: list[Item]) -> list[Row]:
    op, ctx = operation_named(work.op), Context(work)
    return [
        {**op.base(item, ctx), "status": Status.CANCELLED, "error": "job cancelled"}
        for item in items
    ]


def _persist(action: Callable[[], T]) -> T:
    """Redis calls from a task, and munged's: ride out a short outage (a restart) rather
    than lose a batch's rows or refuse its work."""
    for delay in PERSIST_DELAYS:
        try:
            return action()
        except redis.RedisError as exc:
            log.warning("job state not written yet (%s); retrying", exc)
        except MungeUnreachable as exc:
            log.warning("%s; retrying", exc)
        _sleep(delay)
    return action()


_GONE = (
    "job %s is gone from Redis (expired, deleted, or Redis lost its data): batch %d "
    "not recorded; run the command again to finish the work"
)


def run_batch(
    job: str,
    index: int,
    op: str,
    batch: list[Item] | str,
    config: dict[str, Any],
    stream: bool,
    cwd: str,
    credential: str | None = None,
) -> dict[str, int]:
    """Run one batch of ``op``, publish its rows once, and return its counts for the
    chord. The tasks below, one for each kind of work, are this with their operation.
    ``batch`` is the items, as JSON (see ``batch_signature``); ``config`` holds the
    job's stores and options as JSON (see ``Work``); relative paths mean what they mean
    in ``cwd``, the submitter's directory (workers share the filesystem; the process's
    own directory is never changed). ``credential``: the submitter's, for this very
    batch (``dmp_tasks.auth``); the work is done as that user."""
    refused = wire.mismatch(config)
    if refused:  # its items may not even read as items here
        return _refuse(job, index, refused)
    text = batch if isinstance(batch, str) else wire.pack(batch)
    try:
        parts = batch_parts(op, job, index, text, config, stream, cwd)
        record = admitted_record(job, f"batch:{index}", index)
        who = _persist(lambda: auth.admit(credential, parts, record))
        if isinstance(who, str):
            return _refuse(job, index, who)
        outside = _outside(cwd, who)
        if outside:
            return _refuse(job, index, f"refused: its working directory {outside}")
    except Exception as exc:  # munged away, Redis away: the batch is not done, and says why
        log.exception("job %s batch %d could not be admitted", job, index)
        return _refuse(job, index, f"not admitted: {exc}")
    items = wire.unpack_items(batch) if isinstance(batch, str) else batch
    try:
        jobs = job_store()
        work = Work(op, cwd, config.get("stores"), config.get("options"))
        state = _persist(lambda: jobs.state(job))
        if state is None:
            log.error(_GONE, job, index)
            return {"files": len(items), "s:lost": len(items), "bytes": 0}
        if state == JobState.DONE:  # a late copy of a batch (redelivered): already counted
            return {"files": len(items), "bytes": 0}
        if state in (JobState.CANCELLED, JobState.ABANDONED):
            rows = _cancelled(work, items)
        else:
            rows = _run_as(who, work, items)
        counts = count_rows(rows)
        failed = [json.dumps(row) for row in failures(op, rows)[:ERRORS_KEPT]]
        rows_json = wire.pack_rows(rows, items) if stream else None  # last: in place
        if _persist(lambda: jobs.record_batch(job, index, counts, rows_json, failed)) < 0:
            log.error(_GONE, job, index)
        return counts
    except Exception:  # never fail the chord; the job's record shows the loss
        log.exception("job %s batch %d could not be recorded", job, index)
        return {"files": len(items), "s:lost": len(items), "bytes": 0}


def batch_parts(
    op: str, job: str, index: int, items: str, config: dict[str, Any], stream: bool, cwd: str
) -> tuple[Any, ...]:
    """What a batch's credential covers: all that says what the batch does."""
    return ("batch", op, job, index, items, config, stream, cwd)


def admitted_record(
    job: str, slot: str, batch: int | None = None, late: bool = False
) -> Callable[[str, str | None], bool]:
    """The fleet's record of the credentials it admitted for job ``job``'s work ``slot``
    (``dmp_tasks.auth``): one admitted fresh is recorded; one met again (``stale``:
    replayed or expired) is that work's, redelivered, only while the work is not done
    (batch ``batch`` not yet counted; the job still going). ``late``: a credential first
    met expired is admitted once, as a chord's callback is sent with its window and runs
    when the window's last batch ends, maybe hours later."""
    key = job_key(job, "admitted")

    def admitted(fingerprint: str, stale: str | None) -> bool:
        client = job_store().client
        if stale is None or (late and stale == "expired"):
            pipe = client.pipeline()
            if stale is None:
                pipe.hset(key, slot, fingerprint)
            else:
                pipe.hsetnx(key, slot, fingerprint)
            pipe.expire(key, JOB_TTL)
            if pipe.execute()[0] or stale is None:
                return True
        if client.hget(key, slot) != fingerprint.encode():
            return False
        if batch is not None and client.getbit(job_key(job, "seen"), batch):
            return False
        return job_store().state(job) == JobState.ACTIVE

    return admitted


def _outside(path: str, who: auth.Submitter, cwd: str = "/") -> str | None:
    """Why ``path`` is not one that jobs may touch (DMP_ALLOWED_ROOTS), or None."""
    roots = auth.policy().roots
    if roots is None:
        return None
    if who.is_self:
        return roots.check(path, cwd)
    return asuser.run_as(who.uid, who.gid, roots.check, path, cwd)


# The operations that touch the files a batch names (the others only ask the vault).
FILE_OPS = frozenset({"hash", "check", "upload", "pack", "download"})


def _run_as(who: auth.Submitter, work: Work, items: list[Item]) -> list[Row]:
    """The batch's rows, its files touched as ``who``: in this process if that is its
    own user, else in one that has become ``who`` for good (``dmp_tasks.asuser``)."""
    if who.is_self:
        return _batch_rows(work, items, store_pool())
    return asuser.run_as(who.uid, who.gid, _batch_rows, work, items, None)


def _batch_rows(work: Work, items: list[Item], stores: StorePool | None) -> list[Row]:
    """The batch run here: each file outside the allowed roots refused alone, the rest
    run. Without ``stores`` (a process of the submitter's own), stores made for it."""
    needs_stores = operation_named(work.op).kind == "io"
    own = None
    if needs_stores and stores is None:
        stores = own = StorePool()
    try:
        roots = auth.policy().roots
        if roots is None or work.op not in FILE_OPS:
            return run_local(work, items, stores if needs_stores else None)
        return _within_roots(work, items, stores if needs_stores else None, roots)
    finally:
        if own is not None:
            own.close()


def _within_roots(work: Work, items: list[Item], stores: StorePool | None, roots: Any) -> list[Row]:
    """Run the items whose files are beneath the allowed roots; refuse the others."""
    cwd = work.cwd or os.getcwd()
    op, ctx = operation_named(work.op), Context(work)
    why: list[str | None] = []
    for item in items:
        if "pack" in item:  # a pack's members, each checked: any outside refuses the pack
            found = [roots.check(member[2], cwd) for member in item["pack"]]
            why.append(next((reason for reason in found if reason), None))
        elif "path" in item and not item.get("bad"):
            # A fetch replaces a link at its target, never writes through it.
            reason = roots.check(item["path"], cwd, follow_final=work.op != "download")
            # The row names its path already: its error is the reason alone.
            why.append(reason and reason.removeprefix(f"{item['path']}: "))
        else:
            why.append(None)
    run = [item for item, reason in zip(items, why, strict=True) if reason is None]
    done = iter(run_local(work, run, stores) if run else [])
    return [
        next(done)
        if reason is None
        else {**op.base(item, ctx), "status": Status.REFUSED, "error": reason}
        for item, reason in zip(items, why, strict=True)
    ]


def window_parts(job: str, window: int, record: bool) -> tuple[Any, ...]:
    """What the credential of a chord's callback covers."""
    return ("window_done", job, window, record)


def _refuse(job: str, index: int, why: str) -> dict[str, int]:
    """Work this worker will not do (sent in a form it does not speak, or refused by
    ``dmp_tasks.auth``): not done, and the job's record says why, for the command to
    tell (its rows never come)."""
    log.error("job %s batch %d refused: %s", job, index, why)
    try:
        _persist(lambda: job_store().refuse(job, why))
    except Exception:  # the log says it still
        log.exception("job %s: the refusal could not be recorded", job)
    return {"files": 0, "bytes": 0}


# The kinds of task, by name: a site can route, rate-limit or watch each on its own
# (`celery -A dmp_tasks control rate_limit dmp.upload_batch 100/m`). Their names
# end in _batch, apart from the queues (dmp.hash, dmp.transfer, dmp.big) they go to.


@app.task(name="dmp.hash_batch")
def hash_batch(
    job: str,
    index: int,
    items: list[Item] | str,
    config: dict[str, Any],
    stream: bool,
    cwd: str,
    verify: bool = False,
    credential: str | None = None,
) -> dict[str, int]:
    """Hash a batch of files (--create), or hash them and compare (--check, ``verify``)."""
    op = "check" if verify else "hash"
    return run_batch(job, index, op, items, config, stream, cwd, credential)


def _transfer_task(name: str, op: str, doc: str) -> Any:
    """The task that runs a batch of the transfer operation ``op``: one of a kind, so
    that a site can route and watch each kind on its own."""

    def task(
        job: str,
        index: int,
        items: list[Item] | str,
        config: dict[str, Any],
        stream: bool,
        cwd: str,
        credential: str | None = None,
    ) -> dict[str, int]:
        return run_batch(job, index, op, items, config, stream, cwd, credential)

    task.__name__ = task.__qualname__ = name.removeprefix("dmp.")
    task.__doc__ = doc
    return app.task(name=name)(task)


head_batch = _transfer_task(
    "dmp.head_batch", "head", "Ask the vault whether it holds each checksum of a batch (--vault)."
)
upload_batch = _transfer_task(
    "dmp.upload_batch", "upload", "Archive a batch of files to the vault (--archive)."
)
download_batch = _transfer_task(
    "dmp.download_batch", "download", "Fetch a batch of files from the vault, verified (--fetch)."
)
list_batch = _transfer_task(
    "dmp.list_batch",
    "vault-list",
    "List prefixes of the vault, matched against a manifest's checksums (planning for "
    "--vault and --archive: ``dmp_cli.listing``).",
)

pack_batch = _transfer_task(
    "dmp.pack_batch",
    "pack",
    "Store a batch of small files as one pack and its index objects (--archive into a "
    "packing vault: ``dmp_cli.packing``).",
)


TASKS = {
    "hash": "dmp.hash_batch",
    "check": "dmp.hash_batch",
    "head": "dmp.head_batch",
    "upload": "dmp.upload_batch",
    "download": "dmp.download_batch",
    "vault-list": "dmp.list_batch",
    "pack": "dmp.pack_batch",
}


def batch_signature(
    op: str,
    job: str,
    index: int,
    items: list[Item],
    config: dict[str, Any],
    stream: bool,
    cwd: str,
    sender: Celery | None = None,
) -> Signature:
    """The task that runs a batch of ``op``, with its arguments, to be sent by ``sender``
    (an app of the submitter's own; by default the fleet's)."""
    # The items go as a JSON string: kombu's decoder calls a hook for every object it
    # meets, which costs the workers more than hashing a small file; a string is one.
    text = wire.pack_items(items)
    args: tuple[Any, ...] = (job, index, text, config, stream, cwd)
    if op in ("hash", "check"):
        args += (op == "check",)
    credential = auth.sign(*batch_parts(op, job, index, text, config, stream, cwd))
    kwargs = {"credential": credential} if credential else {}
    return (sender or app).signature(TASKS[op], args=args, kwargs=kwargs, immutable=True)


@app.task(name="dmp.list_dirs")
def list_dirs(
    directories: list[str], cwd: str, budget: int, credential: str | None = None
) -> list[Any]:
    """List directories of a --create walk, with their files' sizes, and (within
    ``budget`` entries) the directories below them: the walk itself stays with its
    coordinator, which merges the listings in order (``dmp_tasks.walk``). Done as the
    user whose ``credential`` covers the listing; refused, each directory says why."""
    try:
        who = auth.admit(credential, walk.listing_parts(directories, cwd, budget), _never_again)
        outside = None
        if not isinstance(who, str):
            outside = _outside(cwd, who) or next(
                filter(None, (_outside(directory, who, cwd) for directory in directories)), None
            )
    except Exception as exc:
        who, outside = f"not admitted: {exc}", None
    if isinstance(who, str) or outside:
        why = who if isinstance(who, str) else f"refused: {outside}"
        log.error("listing of %d directories refused: %s", len(directories), why)
        return [[directory, [], why, errno.EACCES] for directory in directories]
    if who.is_self:
        return walk.list_dirs(directories, cwd, budget)
    return asuser.run_as(who.uid, who.gid, walk.list_dirs, directories, cwd, budget)


def _never_again(fingerprint: str, stale: str | None) -> bool:
    """A listing is asked for by a coordinator that waits on its answer: one met again
    (its worker died) is not waited for, and is refused."""
    return stale is None


@app.task(name="dmp.window_done")
def window_done(
    results: list[Any], job: str, window: int, record: bool = True, credential: str | None = None
) -> dict[str, int]:
    """The chord callback: sum the counts of its batches, record them once for the job
    (unless the job's coordinator ends it: ``record`` false). Refused without the
    submitter's credential for it (``window_parts``), as a batch is."""
    try:
        parts = window_parts(job, window, record)
        who = auth.admit(credential, parts, admitted_record(job, f"w{window}", late=True))
    except Exception as exc:
        who = f"not admitted: {exc}"
    if isinstance(who, str):
        log.error("job %s window %d: %s", job, window, who)
        return {}
    total: Counter[str] = Counter()
    for counts in results:
        if isinstance(counts, dict):
            total.update(counts)
    summed = dict(total)
    if not record:
        return summed
    try:
        _persist(lambda: job_store().finish_window(job, window, summed))
    except Exception:
        log.exception("job %s window %d could not be recorded", job, window)
    return summed
