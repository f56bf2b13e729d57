"""A detached job's coordinator: the job's whole run, on a worker, able to die.

Submitting a detached job writes its record (command, options, working directory, the
manifest's path or the walk's inputs) and queues ``dmp.coordinate`` on its own queue
(``dmp.coord``). The coordinator runs an attached command's core run (``dmp_cli.runs``)
with a Celery executor that keeps a bounded window of batches in flight: Redis holds the
window, never the job. Each second it checkpoints how far it got: the batches gathered,
the items in them, the run's own state (--create: the manifest's bytes, its counts).

At most one coordinator runs a job: it holds a lease in Redis that its heartbeat renews
(every third of ``DMP_LEASE_SECONDS``, 30 by default). If its worker dies, the lease
expires, and the watchdog of any live worker (every few seconds) queues the job a new
coordinator, which goes on from the checkpoint: it reads the input again up to that
point, sends again the batches that were in flight (each batch is counted once however
often it runs), and carries on. A redelivered ``dmp.coordinate`` finds the lease held and
ends at once. A coordinator that loses its lease stops before it writes anything more.

A --fetch that meets objects in cold storage waits for their restores without holding a
worker: its coordinator fetches everything readable, keeps each file whose object is
cold in Redis (by manifest line, with the object's key), requests the restores (once
an object: ``dmp_cli.runs.restoring``), then *parks* the job (``JobStore.park``): the
objects it waits for saved, the job put in the sorted set ``dmp:parked`` by when to look
again (DMP_RESTORE_POLL's pauses, the last repeated), its lease let go, and the task
ends. The watchdog sends a due job a coordinator again (one watchdog takes it out of the
set), which polls a sample of the objects (1 % of them), fetches the files of those
restored, and parks the job again or ends it. Parked, a job is in Redis alone, so that
neither a worker's death nor a restart of Redis (with its AOF) loses it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict
from typing import Any

import redis
from celery import bootsteps

from dmp_cli import runs
from dmp_cli.errors import BrokerError, DmpError, RunStopped
from dmp_cli.fsutil import AtomicFile
from dmp_cli.inputs import Inputs
from dmp_cli.job_record import DetachedJob, JobState
from dmp_cli.meta import Recorder
from dmp_cli.options import Options, StoreSpec, Work
from dmp_cli.rows import Item, Row
from dmp_cli.rules import Command
from dmp_cli.runs.restoring import Restoring
from dmp_cli.settings import restore_poll
from dmp_cli.words import plural
from dmp_tasks import asuser, auth, wire
from dmp_tasks.app import app
from dmp_tasks.config import COORD_QUEUE
from dmp_tasks.credentials import MungeUnreachable
from dmp_tasks.executor import CeleryExecutor, Coordination
from dmp_tasks.jobs import ERRORS_KEPT, JobCancelled, JobGone, JobStore, LeaseLost, job_key
from dmp_tasks.lease import Heartbeat, lease_seconds
from dmp_tasks.tasks import admitted_record, job_store

log = logging.getLogger(__name__)

# How long a coordinator rides out a broker that is away (restarting) before it leaves
# the job to the watchdogs.
BROKER_PATIENCE_S = 600.0


class JobFile(AtomicFile):
    """The manifest a detached --create writes: the temporary file made at submission,
    cut back to the last checkpoint and written on from there. ``abort`` only closes it:
    the coordinator that ends the job removes it (``_discard_output``), a coordinator
    that stops early leaves it to the next."""

    def __init__(self, target: str, temp: str, offset: int) -> None:
        self.target, self.temp = target, temp
        try:
            fd = os.open(temp, os.O_WRONLY)
        except FileNotFoundError:
            if os.path.lexists(target):
                raise _Committed from None  # linked into place by a coordinator that died
            raise DmpError(f"{temp}: the manifest being written is gone") from None
        os.ftruncate(fd, offset)
        os.lseek(fd, offset, os.SEEK_SET)
        self.stream = os.fdopen(fd, "wb", buffering=1 << 20)

    @classmethod
    def companion(cls, detached: DetachedJob, saved: Mapping[str, Any]) -> JobFile:
        """The companion of metadata of a --create --meta job, from its checkpoint."""
        target, temp = _given(detached.meta_output), _given(detached.meta_temp)
        try:
            return cls(target, temp, int(saved.get("meta_offset", 0)))
        except _Committed:
            raise DmpError(
                f"{target}: the metadata file is in place but its manifest is not"
            ) from None

    def mark(self) -> int:
        """Everything written so far, on disk; its length."""
        self.stream.flush()
        os.fsync(self.stream.fileno())
        return self.stream.tell()

    def abort(self) -> None:
        if not self.stream.closed:
            self.stream.close()


class _Committed(Exception):
    """The manifest was linked into place before the last coordinator died."""


@contextlib.contextmanager
def _in_directory(cwd: str) -> Iterator[None]:
    """Run in the job's directory, where its relative paths mean what they meant to the
    submitter (this process runs nothing else meanwhile)."""
    before = os.getcwd()
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(before)


def _given(value: str | None) -> str:
    """A field of a detached job that its command always has (its submitter wrote it)."""
    assert value is not None, "a detached job without a field its command needs"
    return value


def _discard_output(detached: DetachedJob | None) -> None:
    """The end of a --create job with no manifest: its temporary files go too."""
    for temp in (detached.temp, detached.meta_temp) if detached else ():
        if temp:
            with contextlib.suppress(OSError):
                os.unlink(temp)


@app.task(name="dmp.coordinate", bind=True, acks_late=True)
def coordinate(self: Any, job: str) -> str:
    """Run detached job ``job`` to its end, from its last checkpoint; returns how it ended."""
    jobs = job_store()
    try:
        info = jobs.info(job)
    except BrokerError as exc:
        log.warning("job %s: %s; trying again in 5 s", job, exc)
        raise self.retry(countdown=5, max_retries=None) from None
    if info is None:
        log.error("job %s is gone from Redis (expired, deleted, or Redis lost its data)", job)
        return "gone"
    if info.state != JobState.ACTIVE:
        return str(info.state)
    owner = f"{self.request.hostname}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    ttl = lease_seconds()
    if not jobs.take_lease(job, owner, int(ttl * 1000)):
        log.info("job %s is coordinated by another worker", job)
        return "elsewhere"
    log.info("job %s: coordinating (%s) as %s", job, info.op, owner)
    try:
        who = _submitter(jobs, job, info.plan or "")
    except (MungeUnreachable, BrokerError, redis.RedisError) as exc:  # away for a moment
        log.warning("job %s: %s; trying again in 5 s", job, exc)
        with contextlib.suppress(DmpError, redis.RedisError):
            jobs.release_lease(job, owner)
        raise self.retry(countdown=5, max_retries=None) from None
    if isinstance(who, str):
        log.error("job %s: %s", job, who)
        with contextlib.suppress(DmpError, redis.RedisError):
            jobs.end_job(job, owner, {"error": who})
        return "refused"
    if who.is_self:
        return _coordinate_here(job, owner, ttl)
    # A shared fleet: the whole coordination as the job's submitter, in a process that
    # has become that user for good, so that what it reads and writes (the manifest, the
    # walk) is the user's to read and write, and the batches it sends are signed as the
    # user's.
    return asuser.run_as(who.uid, who.gid, _coordinate_here, job, owner, ttl, True)


def _submitter(jobs: JobStore, job: str, plan: str) -> auth.Submitter | str:
    """Who submitted detached job ``job``, as its credential proves (DMP_AUTH=munge); or
    why it is refused (MungeUnreachable and Redis's errors: ask again later). A
    coordinator taking the job over, or coming back to a parked one, meets the
    credential again: it is admitted for this job while the job goes on
    (``dmp_tasks.auth``)."""
    try:
        raw = jobs.client.get(job_key(job, "credential"))
        credential = raw.decode() if raw else None
        return auth.admit(credential, auth.job_parts(job, plan), admitted_record(job, "job"))
    except (MungeUnreachable, BrokerError, redis.RedisError):
        raise  # munged or Redis away: the coordinator tries again later
    except Exception as exc:  # a setting it cannot use, say: the job is not run unadmitted
        return f"not admitted: {exc}"


def _coordinate_here(job: str, owner: str, ttl: float, forked: bool = False) -> str:
    """Coordinate ``job`` in this process; ``forked``: one of the submitter's own, which
    makes its own connections (those it was forked with are its parent's)."""
    if forked:
        app._after_fork()  # the producer pool: Celery resets it so for its own forks
        os.chdir("/")  # the worker's own directory may be one the user cannot enter
    jobs = job_store()  # one of this process's own
    with Heartbeat(jobs, job, owner, ttl) as heartbeat:
        return _coordinate(jobs, job, owner, heartbeat.lost)


def _coordinate(jobs: JobStore, job: str, owner: str, lost: threading.Event) -> str:
    patience = time.monotonic() + BROKER_PATIENCE_S
    detached: DetachedJob | None = None
    while True:
        try:
            info = jobs.info(job)
            if info is None:
                raise JobGone(f"job {job} is gone from Redis (expired, deleted, or lost)")
            sent = json.loads(info.plan or "{}")
            if refused := wire.mismatch(sent, "the job's submitter"):
                raise DmpError(refused)
            detached = DetachedJob.from_json(wire.unwrapped(sent))
            if outside := _outside_roots(detached):
                raise DmpError(f"refused: {outside}")
            checkpoint = json.loads(info.checkpoint or "{}")
            fields = _run(jobs, job, owner, detached, checkpoint, lost)
            if fields is None:
                log.info("job %s: parked until its objects' restores are done", job)
                return "parked"
            if "error" in fields:
                _discard_output(detached)
            jobs.end_job(job, owner, fields)
            log.info("job %s: ended", job)
            return "done"
        except LeaseLost as exc:
            log.error("%s; this coordinator stops", exc)
            return "lost"
        except JobGone as exc:
            log.error("%s", exc)
            _discard_output(detached)
            return "gone"
        except JobCancelled:
            _discard_output(detached)
            with contextlib.suppress(DmpError, redis.RedisError):
                jobs.end_job(job, owner, {})
            log.info("job %s: cancelled", job)
            return "cancelled"
        except (BrokerError, redis.RedisError) as exc:
            if time.monotonic() > patience or lost.is_set():
                log.error("job %s: %s; left to another coordinator", job, exc)
                return "broker"
            log.warning("job %s: %s; going on from its last checkpoint in 5 s", job, exc)
            time.sleep(5)
        except Exception as exc:  # the job cannot go on: it ends, failed, saying why
            if isinstance(exc, DmpError):
                error = str(exc)
                log.error("job %s failed: %s", job, error)
            else:  # not foreseen: a new coordinator would meet it again
                error = f"the job's coordinator failed: {type(exc).__name__}: {exc}"
                log.exception("job %s failed", job)
            _discard_output(detached)
            with contextlib.suppress(DmpError, redis.RedisError):
                jobs.end_job(job, owner, {"error": error})
            return "failed"


def _outside_roots(detached: DetachedJob) -> str | None:
    """Why the job's paths are not ones that jobs may touch (DMP_ALLOWED_ROOTS): its
    working directory, its manifest and companion, what it writes, the walk's roots."""
    roots = auth.policy().roots
    if roots is None:
        return None
    cwd = detached.cwd
    why = roots.check(cwd, "/")
    reads = [detached.manifest, detached.meta]
    writes = [detached.output, detached.temp, detached.meta_output, detached.meta_temp]
    inputs = detached.inputs or {}
    reads += [*inputs.get("dirs", []), inputs.get("files_from"), inputs.get("update")]
    for path in reads:
        why = why or (roots.check(path, cwd) if path and path != "-" else None)
    for path in writes:  # replaced by a rename, never written through a link
        why = why or (roots.check(path, cwd, follow_final=False) if path and path != "-" else None)
    return why


def _run(
    jobs: JobStore,
    job: str,
    owner: str,
    detached: DetachedJob,
    checkpoint: Mapping[str, Any],
    lost: threading.Event,
) -> dict[str, Any] | None:
    """The job's core run, from ``checkpoint``; the fields that end its record, or None
    for a job parked while restores are under way."""
    command = Command(detached.command)
    coordination = Coordination(
        job,
        owner,
        next_batch=int(checkpoint.get("next_batch", 0)),
        items=int(checkpoint.get("items", 0)),
        flight=jobs.flight(job),
        lost=lost,
    )
    saved = checkpoint.get("run", {})
    if coordination.items and saved.get("phase") != "restoring":
        log.info(
            "job %s: going on from its checkpoint: item %d (batch %d); %d batches that "
            "were in flight are sent again",
            job,
            coordination.items,
            coordination.next_batch,
            len(coordination.flight),
        )
    executor = CeleryExecutor(jobs.url, app=app, coordination=coordination)
    with executor, _in_directory(detached.cwd):
        if command is Command.CREATE:
            return _create(executor, coordination, detached, saved)
        if command is Command.CHECK:
            return _check(executor, detached)
        if command is not Command.FETCH:
            return _transfer(executor, job, detached, command)
        restoring = saved.get("phase") == "restoring"
        if not restoring:
            coordination.save = lambda: {"restore": 1}  # its cold rows are uncounted
            fields = _transfer(
                executor, job, detached, command, lambda row: _keep_cold(jobs, job, row)
            )
            if not jobs.waiting_files(job):
                return fields
            # Files wait for restores: from now on, a coordinator that takes over waits.
            info = jobs.info(job)
            sizes = {
                name: value
                for name, value in (
                    ("items_total", info.items_total if info else None),
                    ("bytes_total", info.bytes_total if info else None),
                )
                if value is not None
            }
            jobs.begin_waiting(job, coordination.next_batch, sizes)
            jobs.checkpoint(job, owner, _waiting_state(fields), [], [])
        else:
            fields = dict(saved.get("fields") or {})
        return Waiting(jobs, job, owner, executor, detached, fields, lost).go_on()


def _transfer(
    executor: CeleryExecutor,
    job: str,
    detached: DetachedJob,
    command: Command,
    on_cold: Callable[[Row], bool] | None = None,
) -> dict[str, Any]:
    """A detached --vault, --archive or --fetch's run (a --fetch's files whose objects
    are cold handed to ``on_cold``); the fields that end its record."""
    problems: list[str] = []
    report = runs.transfer(
        command,
        _given(detached.manifest),
        executor,
        StoreSpec.from_json(detached.stores or {}),
        Options.from_json(detached.options or {}),
        detached=True,
        meta=detached.meta,
        planning=detached.planning,
        on_note=lambda text: log.info("job %s: %s", job, text),
        listener=runs.Listener(
            on_problem=lambda path, why: problems.append(f"{runs.shown_name(path)}: {why}")
        ),
        on_cold=on_cold,
    )
    fields: dict[str, Any] = {"misformatted": report.manifest.misformatted}
    if problems:  # links and directories, restored at the end: not counted as rows
        fields["error"] = (
            f"{len(problems)} links or directories could not be restored (the first: {problems[0]})"
        )
    return fields


# ---------------------------------------------------------------- waiting for restores


def _keep_cold(jobs: JobStore, job: str, row: Row) -> bool:
    """A file whose object is in cold storage: kept in Redis until it is fetched."""
    item = row.get("item") or {}
    jobs.keep_waiting(job, int(item["line"]), str(row["cold"]), item)
    return True


def _waiting_state(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A waiting job's checkpoint: the fields its first pass ended with, kept for its end."""
    return {"run": {"restore": 1, "phase": "restoring", "fields": dict(fields)}}


class Waiting:
    """A detached --fetch whose files wait for restores, looked at once by this
    coordinator: the cold objects met since the last look asked about (a restore
    requested for each that has none), or else one polling round (1 % of the objects
    waiting, from where the last round stopped); the files of the objects readable
    fetched on the fleet; then the job parked again, or its end."""

    def __init__(
        self,
        jobs: JobStore,
        job: str,
        owner: str,
        executor: CeleryExecutor,
        detached: DetachedJob,
        fields: dict[str, Any],
        lost: threading.Event,
    ) -> None:
        self.jobs, self.job, self.owner, self.executor = jobs, job, owner, executor
        self.fields, self.lost = fields, lost
        self.spec = StoreSpec.from_json(detached.stores or {})
        self.options = Options.from_json(detached.options or {})
        self.delays = restore_poll(os.environ.get("DMP_RESTORE_POLL"))
        self.work = Work.of(Command.FETCH.operation, self.spec, self.options)
        self.state = jobs.restore_state(job)  # the waiting's own, as the last look left it
        self.sizes = {k: v for k, v in self.state.items() if k in ("items_total", "bytes_total")}

    def go_on(self) -> dict[str, Any] | None:
        """The job's fields at its end, or None once it is parked again."""
        jobs, job = self.jobs, self.job
        self._settle_stale()
        restoring = Restoring(
            self.executor.stores.vault(self.spec).store,
            self.options.restore_days,
            self.options.restore_tier,
            True,
            self.delays,
            lambda text: log.info("job %s: %s", job, text),
        )
        asked = jobs.asked_objects(job)
        met: set[str] = set()
        for _, key, item in jobs.waiting(job):
            restoring.resume(key, item, asked.get(key))  # type: ignore[arg-type]
            if key not in asked:
                met.add(key)
        state = self.state
        rounds, turn = state.get("rounds", 0), state.get("turn", 0)
        if restoring.to_ask:
            restoring.ask(self._run(restoring))
        else:
            turn = restoring.poll_once(self._run(restoring), turn)
            rounds += 1
        waiting = restoring.waiting_objects()
        objects = state.get("objects", 0) + len(met)
        if not waiting:
            return {**self.fields, "restore_waiting": 0, "restore_objects": objects}
        files = sum(len(cold.items) for cold in waiting)
        log.info(
            "job %s: waiting for restore: %d of %d objects (%d files)",
            job,
            len(waiting),
            objects,
            files,
        )
        if not self.options.wait:  # --no-wait: a later fetch gets the rest
            return {
                **self.fields,
                "restore_waiting": len(waiting),
                "restore_objects": objects,
                "error": (
                    f"{plural(len(waiting), 'object is', 'objects are')} being restored "
                    f"from cold storage ({self.options.restore_tier} tier), "
                    f"{plural(files, 'file', 'files')} not fetched yet: run the same "
                    "command again later to fetch them"
                ),
            }
        delay = self.delays[min(rounds, len(self.delays) - 1)]
        jobs.park(
            job,
            self.owner,
            time.time() + delay,
            {cold.key: cold.order for cold in waiting},
            {"rounds": rounds, "turn": turn, "objects": objects},
            {"restore_waiting": len(waiting), "restore_objects": objects},
        )
        return None

    def _run(self, restoring: Restoring) -> Callable[[Iterable[Item]], None]:
        """What fetches the files of objects found readable: a pass of its own on the
        fleet, with batch indices never used before, and checkpoints that say the job
        waits (a coordinator that takes over looks at the restores again)."""

        def run(items: Iterable[Item]) -> None:
            batch = list(items)
            if not batch:
                return
            jobs, job = self.jobs, self.job
            state = _waiting_state(self.fields)["run"]
            self.executor.coordination = Coordination(
                job,
                self.owner,
                next_batch=jobs.reserve_batches(job, len(batch)),
                flight={},
                save=lambda: state,
                lost=self.lost,
            )
            try:
                for row in self.executor.map(self.work, batch):
                    if row.get("fatal"):
                        raise RunStopped(str(row.get("error")))
                    if row.get("cold") and restoring.took_back(row):
                        continue  # read too soon: it waits on, kept as it was
                    if "line" in row:
                        jobs.drop_waiting(job, [int(row["line"])])
            finally:
                # A pass sets the job's size to its own: the job's is put back.
                if "items_total" in self.sizes:
                    extra: dict[str, int] = {
                        k: v for k, v in self.sizes.items() if k != "items_total"
                    }
                    jobs.set_items_total(job, self.sizes["items_total"], extra)

        return run

    def _settle_stale(self) -> None:
        """Rows that a coordinator which died left on the stream: a file fetched waits
        no more, a cold one waits on; then they go, their cold rows uncounted."""
        ids: list[bytes] = []
        done: list[int] = []
        for entry, rows in self.jobs.stale_rows(self.job):
            for row in rows:
                item = row.get("item")
                if row.get("cold") and isinstance(item, dict) and "line" in item:
                    self.jobs.keep_waiting(self.job, int(item["line"]), str(row["cold"]), item)
                elif "line" in row:
                    done.append(int(row["line"]))
            ids.append(entry)
        self.jobs.drop_waiting(self.job, done)
        self.jobs.drop_rows(self.job, self.owner, ids)


def _check(executor: CeleryExecutor, detached: DetachedJob) -> dict[str, Any]:
    """A detached check; with a companion, the entries whose metadata differs end its
    record (the first ERRORS_KEPT of them, as its failed files are kept), and fail it."""
    differ: list[tuple[str, list[str]]] = []

    def on_meta(path: str, found: list[str]) -> None:
        if len(differ) < ERRORS_KEPT:
            differ.append((path, found))

    report = runs.check(
        _given(detached.manifest),
        executor,
        strict=bool(detached.strict),
        ignore_missing=bool(detached.ignore_missing),
        stdin=False,
        meta=detached.meta,
        listener=runs.Listener(on_meta=on_meta),
    )
    if not report.metadata:
        return {}
    entries = plural(report.metadata, "entry's metadata", "entries' metadata")
    return {"metadata": json.dumps(differ), "error": f"{entries} did NOT match"}


def _create(
    executor: CeleryExecutor,
    coordination: Coordination,
    detached: DetachedJob,
    saved: Mapping[str, Any],
) -> dict[str, Any]:
    counts = runs.CreateCounts(
        **{
            key: int(saved[key])
            for key in ("files", "bytes", "problems", "reused", "reused_bytes")
            if key in saved
        }
    )
    offset = int(saved.get("offset", 0))
    try:
        target = JobFile(_given(detached.output), _given(detached.temp), offset)
    except _Committed:
        return {}
    meta, meta_file = None, None
    if detached.meta_temp:
        meta_file = JobFile.companion(detached, saved)
        meta = _meta_target(meta_file, target.temp, saved, coordination.items, offset)

    def save() -> dict[str, Any]:
        state = {"offset": target.mark(), **asdict(counts)}
        if meta is not None and meta_file is not None:
            state.update(meta_offset=meta_file.mark(), meta=meta.recorder.state())
        return state

    coordination.save = save
    warnings: list[str] = []

    def on_problem(path: str, reason: str) -> None:
        if reason.startswith("warning: "):
            warnings.append(f"{runs.shown_name(path)}: {reason}")

    report = runs.create(
        Inputs(**(detached.inputs or {})),
        executor,
        target=target,
        fmt=detached.fmt or "dmp",
        counts=counts,
        listener=runs.Listener(on_problem=on_problem),
        meta=meta,
    )
    fields: dict[str, Any] = {"files_written": report.files}
    if warnings:
        fields["warnings"] = "\n".join(warnings)
    if report.error:
        fields["error"] = report.error
    return fields


def _meta_target(
    file: JobFile, manifest: str, saved: Mapping[str, Any], files: int, offset: int
) -> runs.MetaTarget:
    """The companion of metadata a --create --meta job writes, from its checkpoint: the
    records of the ``files`` already used are in it, and so is the hash of the first
    ``offset`` bytes of ``manifest`` (the manifest being written, read again)."""
    if not saved.get("meta"):
        return runs.MetaTarget(file, Recorder(file.stream))
    with open(manifest, "rb") as stream:
        written = stream.read(offset)
    state = {**saved["meta"], "files": files, "manifest": written}
    return runs.MetaTarget(file, Recorder(file.stream, state))


# ---------------------------------------------------------------- the watchdog


class Watchdog(bootsteps.StartStopStep):
    """In every worker that coordinates: every third of the lease's life, a detached
    job whose coordinator's lease has expired gets a new coordinator (one worker sends
    it), and an attached job whose command's lease has expired is marked abandoned (its
    batches not yet run are skipped)."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.tref: Any = None
        self.jobs: JobStore | None = None

    def start(self, worker: Any) -> None:
        consumed = worker.app.amqp.queues.consume_from or {}
        if COORD_QUEUE not in consumed:
            return  # only the workers that coordinate watch the coordinators
        self.tref = worker.timer.call_repeatedly(
            max(1.0, lease_seconds() / 3), self.scan, priority=10
        )

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()

    def scan(self) -> None:
        try:
            if self.jobs is None:
                self.jobs = JobStore(app.conf.broker_url)
            ttl_ms = int(lease_seconds() * 1000)
            for job in self.jobs.coordinated():
                # One new coordinator in ten leases: it may wait in the queue a while.
                if self.jobs.claim_restart(job, 10 * ttl_ms):
                    log.warning("job %s: its coordinator is gone; sending another", job)
                    coordinate.apply_async((job,), queue=COORD_QUEUE)
            for job in self.jobs.abandon_orphans():
                log.warning("job %s: its command is gone; the job is abandoned", job)
            for job in self.jobs.due_parked(time.time(), 10 * ttl_ms):
                log.info("job %s: looking at its objects' restores again", job)
                coordinate.apply_async((job,), queue=COORD_QUEUE)
        except Exception as exc:  # the worker goes on; the next scan tries again
            log.warning("watchdog: %s", str(exc).split("\n")[0])


app.steps["worker"].add(Watchdog)


__all__ = ["JobFile", "coordinate", "lease_seconds"]
