"""Job state in Redis, so that any node can find a job: its progress, counts and errors.

Keys of a job ``ID`` (all expire ``JOB_TTL`` after their last write):

- ``dmp:job:ID``          hash: op, state, who and when, submitted and done counts
- ``dmp:job:ID:seen``     bitmap of the batches already counted (a redelivered batch
                          that runs twice is counted once)
- ``dmp:job:ID:rows``     stream of per-file rows, one entry a batch, for an attached CLI
                          that reads and deletes them as they come
- ``dmp:job:ID:errors``   capped stream of the rows that failed, for `dmp job status`
- ``dmp:job:ID:windows``  hash of each chord's summed counts (written by its callback)
- ``dmp:job:ID:lease``    the owner of a detached job's coordinator, expiring unless
                          its heartbeat renews it (at most one coordinates at a time)
- ``dmp:job:ID:flight``   hash: for each batch a coordinator sent and has not yet
                          checkpointed, its item count and a hash of its paths
- ``dmp:job:ID:waiting``  hash: a detached --fetch's files waiting for their objects'
                          restores, by manifest line: [object key, item] as JSON
- ``dmp:job:ID:cold``     hash: the objects whose restores it waits for, by key: the order
                          in which they were asked for
- ``dmp:job:ID:restore``  hash: its waiting's own state (the next free batch index, the
                          polling rounds made, where the next round's sample starts)
- ``dmp:jobs``            sorted set of job ids by submission time, for `dmp job list`
- ``dmp:coordinated``     set of the detached jobs still going, for the workers' watchdog
- ``dmp:parked``          sorted set of the detached jobs parked while restores are under
                          way, by when to look again (no coordinator runs them meanwhile)

Every update that must happen once is a Lua script (``dmp_tasks.scripts``). A job's lease
is renewed by ``dmp_tasks.lease``; whether a job failed is ``dmp_cli.job_verdicts``'s to say.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import redis

from dmp_cli.errors import BrokerError, DmpError
from dmp_cli.job_record import JobInfo, JobState
from dmp_tasks import scripts
from dmp_tasks.broker import broker_errors, connect
from dmp_tasks.config import safe_url

JOB_TTL = 7 * 24 * 3600
ERRORS_KEPT = 1000
JOBS_KEY = "dmp:jobs"
COORDINATED_KEY = "dmp:coordinated"
ATTACHED_KEY = "dmp:attached"
PARKED_KEY = "dmp:parked"
# The keys of a job's waiting for restores (``JobStore.park``), gone with the job's end.
WAITING_PARTS = ("waiting", "cold", "restore")
_ACTIVE = JobState.ACTIVE.encode()  # as Redis replies with it


class JobGone(BrokerError):
    """The job's record is not in Redis: it expired, or Redis lost its data."""


class JobCancelled(DmpError):
    """The job was cancelled (`dmp job cancel`, or its attached command ended)."""


class LeaseLost(DmpError):
    """Another coordinator has taken the job over; this one must stop at once."""


def job_key(job: str, part: str = "") -> str:
    return f"dmp:job:{job}" + (f":{part}" if part else "")


class JobStore:
    """Reads and writes job state; made once per process (clients are not fork-safe)."""

    def __init__(self, url: str, client: redis.Redis | None = None) -> None:
        self.url = url
        # Any: redis-py's reply types are a union of everything a command can return.
        self.client: Any = client or connect(url)
        register = self.client.register_script
        self._record = register(scripts.RECORD_BATCH)
        self._finish_window = register(scripts.FINISH_WINDOW)
        self._set_total = register(scripts.SET_TOTAL)
        self._checkpoint = register(scripts.CHECKPOINT.replace("{JOB_TTL}", str(JOB_TTL)))
        self._renew = register(scripts.RENEW)
        self._release = register(scripts.RELEASE)
        self._end_job = register(scripts.END_JOB)
        self._abandon = register(scripts.ABANDON)
        self._refuse = register(scripts.REFUSE)
        self._drop_rows = register(scripts.DROP_ROWS)
        self._park = register(scripts.PARK)
        self._unpark = register(scripts.UNPARK)

    def ping(self) -> None:
        with broker_errors(self.url, "connecting"):
            self.client.ping()

    # submitting ----------------------------------------------------------
    def create(
        self,
        job: str,
        fields: dict[str, Any],
        coordinated: bool = False,
        submitter: tuple[str, int] | None = None,
    ) -> None:
        """Register a job; a ``coordinated`` one (detached: a coordinator on the fleet runs
        it) is also watched by the workers, which take it over if its coordinator dies.
        An attached one is created with its ``submitter``'s lease (owner, milliseconds),
        which the submitter's heartbeat renews: when it expires, the job is abandoned."""
        now = time.time()
        with broker_errors(self.url, "registering the job"):
            pipe = self.client.pipeline()
            pipe.hset(
                job_key(job),
                mapping={
                    "state": JobState.ACTIVE,
                    "created": now,
                    "batches": 0,
                    "items": 0,
                    **fields,
                },
            )
            pipe.expire(job_key(job), JOB_TTL)
            pipe.zadd(JOBS_KEY, {job: now})
            if coordinated:
                pipe.sadd(COORDINATED_KEY, job)
            if submitter:
                pipe.set(job_key(job, "lease"), submitter[0], px=submitter[1])
                pipe.hset(job_key(job), "attached", 1)
                pipe.sadd(ATTACHED_KEY, job)
            pipe.execute()

    def submitted(self, job: str, batches: int, items: int) -> None:
        with broker_errors(self.url, "submitting"):
            pipe = self.client.pipeline()
            pipe.hincrby(job_key(job), "batches", batches)
            pipe.hincrby(job_key(job), "items", items)
            pipe.execute()

    def set_total(
        self,
        job: str,
        windows: int,
        batches: int,
        items: int,
        extra: Mapping[str, int] | None = None,
    ) -> None:
        """The job's size, known once it is all submitted (with ``extra`` fields that
        the submitter counted on the way, written before the job can be done)."""
        args: list[str | int | float] = [windows, batches, items, time.time()]
        for field, value in (extra or {}).items():
            args += [field, value]
        with broker_errors(self.url, "submitting"):
            self._set_total(keys=[job_key(job)], args=args)

    def add_flight(self, job: str, batches: Mapping[int, str]) -> None:
        """Record the batches about to be sent (count and paths' hash of each), so that a
        coordinator taking the job over sends the same ones again."""
        with broker_errors(self.url, "submitting"):
            pipe = self.client.pipeline()
            pipe.hset(job_key(job, "flight"), mapping=dict(batches))
            pipe.expire(job_key(job, "flight"), JOB_TTL)
            pipe.execute()

    def flight(self, job: str) -> dict[int, str]:
        with broker_errors(self.url, "reading the job"):
            raw = self.client.hgetall(job_key(job, "flight"))
        return {int(k): v.decode() for k, v in raw.items()}

    # coordinators --------------------------------------------------------
    def take_lease(self, job: str, owner: str, ttl_ms: int) -> bool:
        """Become the job's coordinator, unless a live one is (its lease not expired)."""
        with broker_errors(self.url, "taking the job"):
            if not self.client.set(job_key(job, "lease"), owner, nx=True, px=ttl_ms):
                return False
            pipe = self.client.pipeline()
            pipe.hset(job_key(job), "coordinator", owner)
            pipe.hincrby(job_key(job), "coordinations", 1)
            pipe.delete(job_key(job, "restart"))  # taken: the next death sends another
            pipe.execute()
            return True

    def renew_lease(self, job: str, owner: str, ttl_ms: int) -> bool:
        return bool(self._renew(keys=[job_key(job, "lease")], args=[owner, ttl_ms]))

    def release_lease(self, job: str, owner: str) -> None:
        self._release(keys=[job_key(job, "lease")], args=[owner])

    def checkpoint(
        self, job: str, owner: str, state: Mapping[str, Any], ids: list[bytes], batches: list[int]
    ) -> None:
        """Save how far the coordinator got; the rows and flight records of the batches
        gathered (stream ``ids``, batch indices ``batches``) go with it."""
        keys = [job_key(job), job_key(job, "lease"), job_key(job, "rows"), job_key(job, "flight")]
        # A --fetch's run says so in its state: its cold rows are uncounted as they go.
        cold = "1" if dict(state.get("run") or {}).get("restore") else ""
        args: list[Any] = [owner, json.dumps(state), cold, len(ids), *ids, *batches]
        with broker_errors(self.url, "saving the job's progress"):
            done = self._checkpoint(keys=keys, args=args)
        _check_held(self.url, job, done)

    def end_job(self, job: str, owner: str, fields: Mapping[str, Any]) -> None:
        """The job is over: its totals, its state (done, unless cancelled) and the end of
        its coordination."""
        keys = [
            job_key(job),
            job_key(job, "lease"),
            job_key(job, "flight"),
            job_key(job, "rows"),
            COORDINATED_KEY,
            job,
            PARKED_KEY,
            *[job_key(job, part) for part in WAITING_PARTS],
        ]
        args: list[Any] = [owner, time.time()]
        for field, value in fields.items():
            args += [field, value]
        with broker_errors(self.url, "ending the job"):
            done = self._end_job(keys=keys, args=args)
        _check_held(self.url, job, done)

    def coordinated(self) -> list[str]:
        """The detached jobs still going whose coordinator is gone (for the watchdog: no
        lease, and not parked); those whose record is gone or over are dropped from the
        set."""
        with broker_errors(self.url, "listing jobs"):
            jobs = [j.decode() for j in self.client.smembers(COORDINATED_KEY)]
            going = []
            for job in jobs:
                state, started = self.client.hmget(job_key(job), "state", "coordinator")
                if state != _ACTIVE:
                    self.client.srem(COORDINATED_KEY, job)
                    self.client.zrem(PARKED_KEY, job)
                elif (
                    started is not None
                    and not self.client.exists(job_key(job, "lease"))
                    and self.client.zscore(PARKED_KEY, job) is None
                ):
                    going.append(job)
            return going

    # waiting for restores ------------------------------------------------
    def keep_waiting(self, job: str, line: int, key: str, item: Mapping[str, Any]) -> None:
        """A file of a detached --fetch whose object is in cold storage: kept, by its
        manifest line, until a batch fetches it (``drop_waiting``)."""
        with broker_errors(self.url, "saving the job's progress"):
            pipe = self.client.pipeline()
            pipe.hset(job_key(job, "waiting"), str(line), json.dumps([key, item]))
            pipe.expire(job_key(job, "waiting"), JOB_TTL)
            pipe.execute()

    def waiting_files(self, job: str) -> int:
        """How many files wait for their objects' restores."""
        with broker_errors(self.url, "reading the job"):
            return int(self.client.hlen(job_key(job, "waiting")))

    def begin_waiting(self, job: str, next_batch: int, sizes: Mapping[str, int]) -> None:
        """A job's first pass is over and files wait: the batch indices it used, and its
        size (``items_total``, ``bytes_total``), which its later passes set again once
        each is done, kept (once)."""
        key = job_key(job, "restore")
        with broker_errors(self.url, "saving the job's progress"):
            pipe = self.client.pipeline()
            for field, value in {"batches": next_batch, **sizes}.items():
                pipe.hsetnx(key, field, value)
            pipe.expire(key, JOB_TTL)
            pipe.execute()

    def drop_waiting(self, job: str, lines: list[int]) -> None:
        """Files waiting no more: fetched, or failed for good."""
        if lines:
            with broker_errors(self.url, "saving the job's progress"):
                self.client.hdel(job_key(job, "waiting"), *[str(line) for line in lines])

    def waiting(self, job: str) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """The files still waiting, as (line, object key, item), a few at a time."""
        with broker_errors(self.url, "reading the job"):
            for line, value in self.client.hscan_iter(job_key(job, "waiting"), count=1000):
                key, item = json.loads(value)
                yield int(line), key, item

    def asked_objects(self, job: str) -> dict[str, int]:
        """The objects whose restores were asked for, with the order they were asked in."""
        with broker_errors(self.url, "reading the job"):
            return {
                key.decode(): int(order)
                for key, order in self.client.hscan_iter(job_key(job, "cold"), count=1000)
            }

    def restore_state(self, job: str) -> dict[str, int]:
        with broker_errors(self.url, "reading the job"):
            raw = self.client.hgetall(job_key(job, "restore"))
        return {key.decode(): int(value) for key, value in raw.items()}

    def reserve_batches(self, job: str, count: int, first: int = 0) -> int:
        """``count`` batch indices of a job's own, none used before (a batch's index is
        counted once: ``record_batch``), at or after ``first``; the first of them."""
        key = job_key(job, "restore")
        with broker_errors(self.url, "saving the job's progress"):
            pipe = self.client.pipeline()
            pipe.hsetnx(key, "batches", first)
            pipe.hincrby(key, "batches", count)
            pipe.expire(key, JOB_TTL)
            reserved = pipe.execute()[1]
        return int(reserved) - count

    def stale_rows(self, job: str) -> Iterator[tuple[bytes, list[dict[str, Any]]]]:
        """The rows left on the job's stream by batches whose coordinator died before it
        used them, as (stream id, rows): a few entries at a time."""
        after = b"-"
        while True:
            with broker_errors(self.url, "reading results"):
                entries = self.client.xrange(job_key(job, "rows"), after, "+", count=64)
            if not entries:
                return
            for entry, fields in entries:
                rows = json.loads(fields[b"r"])
                yield entry, rows if isinstance(rows, list) else []
            after = b"(" + entries[-1][0]

    def drop_rows(self, job: str, owner: str, ids: list[bytes]) -> None:
        """Stale rows settled: gone from the stream, their cold rows uncounted."""
        if not ids:
            return
        keys = [job_key(job), job_key(job, "rows"), job_key(job, "lease")]
        with broker_errors(self.url, "saving the job's progress"):
            done = self._drop_rows(keys=keys, args=[owner, *ids])
        _check_held(self.url, job, done)

    def park(
        self,
        job: str,
        owner: str,
        due: float,
        objects: Mapping[str, int],
        restore: Mapping[str, int],
        fields: Mapping[str, Any],
    ) -> None:
        """Park a job waiting for restores until ``due`` (seconds since the epoch): the
        objects it waits for (key: order) and its waiting's state saved, ``fields`` on its
        record, every key of it kept another JOB_TTL, and its lease let go (a watchdog
        sends it a coordinator once due: ``due_parked``)."""
        cold = job_key(job, "cold")
        with broker_errors(self.url, "parking the job"):
            pipe = self.client.pipeline()
            pipe.delete(cold)
            chunk: dict[str, int] = {}
            for key, order in objects.items():
                chunk[key] = order
                if len(chunk) >= 1000:
                    pipe.hset(cold, mapping=chunk)
                    chunk = {}
            if chunk:
                pipe.hset(cold, mapping=chunk)
            if restore:
                pipe.hset(job_key(job, "restore"), mapping=dict(restore))
            pipe.execute()
            keys = [
                job_key(job),
                job_key(job, "lease"),
                PARKED_KEY,
                *[job_key(job, part) for part in (*WAITING_PARTS, "seen", "errors", "flight")],
            ]
            args: list[Any] = [owner, due, job, JOB_TTL]
            for field, value in fields.items():
                args += [field, value]
            done = self._park(keys=keys, args=args)
        _check_held(self.url, job, done)

    def due_parked(self, now: float, restart_ms: int, limit: int = 100) -> list[str]:
        """The parked jobs due by ``now``, taken out of the set: for this caller alone
        to send each a coordinator."""
        with broker_errors(self.url, "listing jobs"):
            due = self._unpark(keys=[PARKED_KEY], args=[now, limit, restart_ms, job_key("")])
        return [job.decode() for job in due]

    def abandon_orphans(self) -> list[str]:
        """Attached jobs whose submitter's lease has expired: marked abandoned (their
        batches not yet run are skipped); returns them."""
        with broker_errors(self.url, "listing jobs"):
            jobs = [j.decode() for j in self.client.smembers(ATTACHED_KEY)]
            now = time.time()
            return [
                job
                for job in jobs
                if self._abandon(
                    keys=[job_key(job), job_key(job, "lease"), ATTACHED_KEY], args=[now, job]
                )
            ]

    def claim_restart(self, job: str, ttl_ms: int) -> bool:
        """True for one caller in ``ttl_ms``: it sends the job a new coordinator."""
        with broker_errors(self.url, "taking the job"):
            return bool(self.client.set(job_key(job, "restart"), 1, nx=True, px=ttl_ms))

    def cancel(self, job: str) -> bool:
        """Mark a job cancelled; False if it had already ended."""
        with broker_errors(self.url, "cancelling"):
            state = self.client.hget(job_key(job), "state")
            if state != _ACTIVE:
                return False
            cancelled = {"state": JobState.CANCELLED, "finished": time.time()}
            pipe = self.client.pipeline()
            pipe.hset(job_key(job), mapping=cancelled)
            pipe.hdel(job_key(job), "parked")
            pipe.zrem(PARKED_KEY, job)  # a parked job ends now; its keys expire
            pipe.execute()
            return True

    # workers -------------------------------------------------------------
    def record_batch(
        self, job: str, index: int, counts: dict[str, int], rows_json: str | None, errors: list[str]
    ) -> int:
        """Count a finished batch once: 1 if counted now, 0 if it was before (a
        redelivery), -1 if the job is gone (its record is never made again here)."""
        keys = [job_key(job), job_key(job, "seen"), job_key(job, "rows"), job_key(job, "errors")]
        args: list[str | int | float] = [
            index,
            rows_json or "",
            json.dumps(counts),
            JOB_TTL,
            ERRORS_KEPT,
            time.time(),
            *errors,
        ]
        return int(self._record(keys=keys, args=args))

    def refuse(self, job: str, why: str) -> None:
        """A worker could not take the job's work: its record says why (the first reason
        given), if the job is still there."""
        self._refuse(keys=[job_key(job)], args=[why])

    def refused(self, job: str) -> str | None:
        """Why a worker refused the job's work, if one did."""
        with broker_errors(self.url, "reading the job"):
            value = self.client.hget(job_key(job), "refused")
        return value.decode() if value is not None else None

    def finish_window(self, job: str, window: int, counts: dict[str, int]) -> bool:
        keys = [job_key(job), job_key(job, "windows")]
        args: list[str | int | float] = [window, json.dumps(counts), time.time(), JOB_TTL]
        return bool(self._finish_window(keys=keys, args=args))

    def mean_file_size(self, job: str) -> int | None:
        """The mean size of the files done so far (None before any is done)."""
        with broker_errors(self.url, "reading the job"):
            files, nbytes = self.client.hmget(job_key(job), "files", "bytes")
        return int(nbytes or 0) // int(files) if files and int(files) else None

    def state(self, job: str) -> str | None:
        value = self.client.hget(job_key(job), "state")
        return value.decode() if value is not None else None

    # reading -------------------------------------------------------------
    def set_items_total(self, job: str, items: int, extra: Mapping[str, int]) -> None:
        """A detached job's size, once its coordinator has read all its input."""
        with broker_errors(self.url, "submitting"):
            self.client.hset(job_key(job), mapping={"items_total": items, **extra})

    def read_rows(
        self,
        job: str,
        after: bytes,
        block_ms: int,
        count: int = 64,
        keep: bool = False,
        block: bool = True,
    ) -> tuple[bytes, list[tuple[bytes, int, str]]]:
        """Batches of rows published since stream id ``after``, as (stream id, batch,
        rows), waiting up to ``block_ms`` for some if ``block``; deleted once read, unless
        ``keep`` (a coordinator keeps them for a takeover until its checkpoint)."""
        key = job_key(job, "rows")
        with broker_errors(self.url, "reading results"):
            reply = self.client.xread({key: after}, count=count, block=block_ms if block else None)
            if not reply:
                return after, []
            entries = reply[0][1]
            if not keep:
                self.client.xdel(key, *[entry_id for entry_id, _ in entries])
        found = [(i, int(fields[b"b"]), fields[b"r"].decode()) for i, fields in entries]
        return entries[-1][0], found

    def info(self, job: str) -> JobInfo | None:
        """A job's record; an attached job whose submitter's lease has expired shows as
        abandoned, whether or not a worker's watchdog has marked it yet."""
        with broker_errors(self.url, "reading the job"):
            raw = self.client.hgetall(job_key(job))
            if not raw:
                return None
            try:
                info = JobInfo.from_record(
                    {k.decode(): v.decode("utf-8", "replace") for k, v in raw.items()}
                )
            except ValueError as exc:
                raise DmpError(
                    f"job {job}: its record is not one this dmp can read ({exc}); was it "
                    "submitted by another version of dmp?"
                ) from None
            if (
                info.state == JobState.ACTIVE
                and info.attached
                and not self.client.exists(job_key(job, "lease"))
            ):
                info = replace(info, state=JobState.ABANDONED)
        return info

    def errors(self, job: str, limit: int = ERRORS_KEPT) -> list[dict[str, Any]]:
        with broker_errors(self.url, "reading the job"):
            entries = self.client.xrange(job_key(job, "errors"), count=limit)
        return [json.loads(fields[b"r"]) for _, fields in entries]

    def newest(self, limit: int = 50) -> list[tuple[str, JobInfo]]:
        """The newest jobs first; ids whose state expired are dropped from the index."""
        with broker_errors(self.url, "listing jobs"):
            ids = [i.decode() for i in self.client.zrevrange(JOBS_KEY, 0, limit - 1)]
            found = []
            for job in ids:
                info = self.info(job)
                if info is None:
                    self.client.zrem(JOBS_KEY, job)
                else:
                    found.append((job, info))
        return found


def _check_held(url: str, job: str, answer: int) -> None:
    if answer == -1:
        raise JobGone(
            f"job {job} is gone from the broker at {safe_url(url)} (expired, deleted, or "
            "Redis lost its data); run the command again to finish the work"
        )
    if answer == -2:
        raise JobCancelled(f"job {job} was cancelled")
    if answer == 0:
        raise LeaseLost(f"job {job} is coordinated elsewhere now")
