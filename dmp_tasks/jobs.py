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
- ``dmp:jobs``            sorted set of job ids by submission time, for `dmp job list`
- ``dmp:coordinated``     set of the detached jobs still going, for the workers' watchdog

Every update that must happen once is a Lua script: Redis runs it atomically, so a worker
killed halfway leaves either all of it or none.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import redis

from dmp_cli.errors import BrokerError, BrokerUnreachable, DmpError
from dmp_cli.rows import Status
from dmp_cli.rules import Command, Reason, Verdict, judge
from dmp_cli.words import plural
from dmp_tasks.config import safe_url

log = logging.getLogger(__name__)

JOB_TTL = 7 * 24 * 3600
DEFAULT_LEASE_SECONDS = 30.0
ERRORS_KEPT = 1000
JOBS_KEY = "dmp:jobs"

# Finishing: when the submitter has said how many batches and chords there are, and
# either every batch has recorded itself or every chord's callback has run, the job is
# done (unless it was cancelled meanwhile). Every batch recorded means every count is in;
# a batch that could not record itself is counted as lost by its chord's callback.
_FINISH = """
local function finish(job, now)
  local function all(done, total)
    total = redis.call('HGET', job, total)
    return total and tonumber(total) == tonumber(redis.call('HGET', job, done) or '0')
  end
  if all('batches_done', 'batches_total') or all('windows_done', 'windows_total') then
    if redis.call('HGET', job, 'state') == 'active' then
      redis.call('HSET', job, 'state', 'done')
    end
    redis.call('HSETNX', job, 'finished', now)
  end
end
"""

# Checked first, marked last: if a write fails halfway (Redis out of memory), the batch
# is not marked, and its retry writes it again (the CLI drops a second copy of its rows).
_RECORD_BATCH = (
    _FINISH
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('GETBIT', KEYS[2], ARGV[1]) == 1 then return 0 end
local ttl = tonumber(ARGV[4])
if ARGV[2] ~= '' then
  redis.call('XADD', KEYS[3], '*', 'b', ARGV[1], 'r', ARGV[2])
  redis.call('EXPIRE', KEYS[3], ttl)
end
for i = 7, #ARGV do
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'r', ARGV[i])
end
if #ARGV >= 7 then redis.call('EXPIRE', KEYS[4], ttl) end
for field, n in pairs(cjson.decode(ARGV[3])) do redis.call('HINCRBY', KEYS[1], field, n) end
redis.call('HINCRBY', KEYS[1], 'batches_done', 1)
finish(KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('SETBIT', KEYS[2], ARGV[1], 1)
redis.call('EXPIRE', KEYS[2], ttl)
return 1
"""
)

_FINISH_WINDOW = (
    _FINISH
    + """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'windows_done', 1)
-- Files of batches that could not record themselves are counted here, so the job fails.
local lost = cjson.decode(ARGV[2])['s:lost']
if lost then redis.call('HINCRBY', KEYS[1], 's:lost', lost) end
finish(KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
return 1
"""
)

_SET_TOTAL = (
    _FINISH
    + """
redis.call('HSET', KEYS[1], 'windows_total', ARGV[1], 'batches_total', ARGV[2],
           'items_total', ARGV[3])
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
finish(KEYS[1], ARGV[4])
return 1
"""
)


# A coordinator's checkpoint: only while it holds the lease, and the job is still there
# and going. The batches it has gathered leave the flight record and the row stream.
_CHECKPOINT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'active' then return -2 end
redis.call('HSET', KEYS[1], 'checkpoint', ARGV[2])
local ids = tonumber(ARGV[3])
for i = 4, 3 + ids do redis.call('XDEL', KEYS[3], ARGV[i]) end
for i = 4 + ids, #ARGV do redis.call('HDEL', KEYS[4], ARGV[i]) end
redis.call('EXPIRE', KEYS[1], {JOB_TTL})
return 1
""".replace("{JOB_TTL}", str(JOB_TTL))

_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

# The end of a detached job, written by its coordinator while it holds the lease: its
# totals and how it ended (a cancelled job stays cancelled).
_END_JOB = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if redis.call('HGET', KEYS[1], 'state') == 'active' then
  redis.call('HSET', KEYS[1], 'state', 'done')
end
redis.call('HSETNX', KEYS[1], 'finished', ARGV[2])
redis.call('DEL', KEYS[3], KEYS[4], KEYS[2])
redis.call('SREM', KEYS[5], KEYS[6])
return 1
"""

COORDINATED_KEY = "dmp:coordinated"
ATTACHED_KEY = "dmp:attached"

# A refusal of a job's work, kept with a job that is still there (never made again).
_REFUSE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSETNX', KEYS[1], 'refused', ARGV[1])
end
"""

# An attached job whose submitter's lease has expired is abandoned: nobody reads its rows.
_ABANDON = """
if redis.call('HGET', KEYS[1], 'state') ~= 'active' then
  redis.call('SREM', KEYS[3], ARGV[2])
  return 0
end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'abandoned', 'finished', ARGV[1])
redis.call('SREM', KEYS[3], ARGV[2])
return 1
"""


class JobGone(BrokerError):
    """The job's record is not in Redis: it expired, or Redis lost its data."""


class JobCancelled(DmpError):
    """The job was cancelled (`dmp job cancel`, or its attached command ended)."""


class LeaseLost(DmpError):
    """Another coordinator has taken the job over; this one must stop at once."""


def job_key(job: str, part: str = "") -> str:
    return f"dmp:job:{job}" + (f":{part}" if part else "")


def connect(url: str, **options: Any) -> redis.Redis:
    """A Redis client for ``url`` that fails in seconds, not minutes, when Redis is away."""
    options.setdefault("socket_connect_timeout", 5)
    options.setdefault("socket_timeout", 30)
    options.setdefault("health_check_interval", 30)
    return redis.Redis.from_url(url, **options)


def _auth_error(url: str) -> BrokerError:
    if urlsplit(url).password is None:
        return BrokerError(
            f"the broker at {safe_url(url)} needs a password (redis://:PASSWORD@host:port/db)"
        )
    return BrokerError(
        f"the broker at {safe_url(url)} refused the password (check the password in DMP_BROKER_URL)"
    )


@contextmanager
def broker_errors(url: str, doing: str) -> Iterator[None]:
    """Turn redis-py's exceptions into one line that names the broker, never its password."""
    try:
        yield
    except redis.AuthenticationError:
        raise _auth_error(url) from None
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            raise _auth_error(url) from None
        raise BrokerError(f"the broker at {safe_url(url)} failed {doing}: {exc}") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        reason = str(exc).split("\n")[0] or type(exc).__name__
        raise BrokerUnreachable(
            f"cannot reach the broker at {safe_url(url)} ({doing}): {reason}"
        ) from None


class JobStore:
    """Reads and writes job state; made once per process (clients are not fork-safe)."""

    def __init__(self, url: str, client: redis.Redis | None = None) -> None:
        self.url = url
        # Any: redis-py's reply types are a union of everything a command can return.
        self.client: Any = client or connect(url)
        self._record = self.client.register_script(_RECORD_BATCH)
        self._finish_window = self.client.register_script(_FINISH_WINDOW)
        self._set_total = self.client.register_script(_SET_TOTAL)
        self._checkpoint = self.client.register_script(_CHECKPOINT)
        self._renew = self.client.register_script(_RENEW)
        self._release = self.client.register_script(_RELEASE)
        self._end_job = self.client.register_script(_END_JOB)
        self._abandon = self.client.register_script(_ABANDON)
        self._refuse = self.client.register_script(_REFUSE)

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
                mapping={"state": "active", "created": now, "batches": 0, "items": 0, **fields},
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
        args: list[Any] = [owner, json.dumps(state), len(ids), *ids, *batches]
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
        ]
        args: list[Any] = [owner, time.time()]
        for field, value in fields.items():
            args += [field, value]
        with broker_errors(self.url, "ending the job"):
            done = self._end_job(keys=keys, args=args)
        _check_held(self.url, job, done)

    def coordinated(self) -> list[str]:
        """The detached jobs still going (for the watchdog); those whose record is gone or
        over are dropped from the set."""
        with broker_errors(self.url, "listing jobs"):
            jobs = [j.decode() for j in self.client.smembers(COORDINATED_KEY)]
            going = []
            for job in jobs:
                state, started = self.client.hmget(job_key(job), "state", "coordinator")
                if state != b"active":
                    self.client.srem(COORDINATED_KEY, job)
                elif started is not None and not self.client.exists(job_key(job, "lease")):
                    going.append(job)
            return going

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
            if state != b"active":
                return False
            self.client.hset(job_key(job), mapping={"state": "cancelled", "finished": time.time()})
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

    def info(self, job: str) -> dict[str, str] | None:
        """A job's record; an attached job whose submitter's lease has expired shows as
        abandoned, whether or not a worker's watchdog has marked it yet."""
        with broker_errors(self.url, "reading the job"):
            raw = self.client.hgetall(job_key(job))
            if not raw:
                return None
            info = {k.decode(): v.decode("utf-8", "replace") for k, v in raw.items()}
            if (
                info.get("state") == "active"
                and info.get("attached")
                and not self.client.exists(job_key(job, "lease"))
            ):
                info["state"] = "abandoned"
        return info

    def errors(self, job: str, limit: int = ERRORS_KEPT) -> list[dict[str, Any]]:
        with broker_errors(self.url, "reading the job"):
            entries = self.client.xrange(job_key(job, "errors"), count=limit)
        return [json.loads(fields[b"r"]) for _, fields in entries]

    def jobs(self, limit: int = 50) -> list[tuple[str, dict[str, str]]]:
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


class Heartbeat:
    """Renews a job's lease every third of its life, on a thread of its own; sets
    ``lost`` if it cannot (another holds it, or Redis has been away for a lease's life).
    A detached job's coordinator holds the lease; so does an attached command, so that
    a job whose submitter vanished ends as abandoned."""

    def __init__(self, store: JobStore, job: str, owner: str, ttl_s: float) -> None:
        self.store, self.job, self.owner, self.ttl_s = store, job, owner, ttl_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"dmp-lease-{job}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(redis.RedisError):
            self.store.release_lease(self.job, self.owner)

    def _run(self) -> None:
        # Logged at info only: whoever holds the lease says what happened, in one line
        # (a command's stderr must not get a second one from this thread).
        renewed = time.monotonic()
        while not self._stop.wait(self.ttl_s / 3):
            try:
                if not self.store.renew_lease(self.job, self.owner, int(self.ttl_s * 1000)):
                    log.info("job %s: lease lost; stopping", self.job)
                    self.lost.set()
                    return
                renewed = time.monotonic()
            except redis.RedisError as exc:
                if time.monotonic() - renewed > self.ttl_s:
                    log.info("job %s: lease not renewed in %.0f s (%s)", self.job, self.ttl_s, exc)
                    self.lost.set()
                    return


def lease_seconds() -> float:
    raw = os.environ.get("DMP_LEASE_SECONDS")
    return max(1.0, float(raw)) if raw else DEFAULT_LEASE_SECONDS


def status_counts(info: dict[str, str]) -> dict[str, int]:
    """The per-status file counts of a job hash (fields ``s:STATUS``)."""
    return {k[2:]: int(v) for k, v in info.items() if k.startswith("s:")}


def _counts(info: dict[str, str]) -> dict[str, int]:
    """A job's counts as ``dmp_cli.rules`` judges them: by status, with the lines skipped
    while submitting among the improperly formatted, and the files of batches that never
    recorded themselves, once the job is done, counted as lost."""
    counts = status_counts(info)
    counts[Status.MISFORMATTED] = counts.get(Status.MISFORMATTED, 0) + int(
        info.get("misformatted", 0)
    )
    if info.get("state") == "done":
        unrecorded = int(info.get("items_total", 0)) - int(info.get("files", 0))
        if unrecorded > 0:
            counts[Status.LOST] = counts.get(Status.LOST, 0) + unrecorded
    return counts


def _verdict(info: dict[str, str], counts: dict[str, int]) -> Verdict:
    """A job judged as the command that submitted it judges a run."""
    return judge(
        Command.of_operation(info.get("op", "hash")),
        counts,
        strict=bool(info.get("strict")),
        ignore_missing=bool(info.get("ignore_missing")),
    )


def rule_failure(info: dict[str, str]) -> str | None:
    """Why a job fails by the rules of the command that submitted it (--strict,
    --ignore-missing, sha256sum's rules for a check), though no file failed; else None.
    Until the job is done, only what cannot change: lines that --strict refuses. A job
    that failed as a whole (its coordinator could not go on) says why."""
    if info.get("error"):
        return info["error"]
    if info.get("state") == "abandoned":
        return (
            "its command stopped before the job was complete (killed, or it lost the "
            "broker); run the command again to finish the work"
        )
    counts = _counts(info)
    reason = _verdict(info, counts).reason
    if reason is Reason.MISFORMATTED:
        lines = counts[Status.MISFORMATTED]
        why = "--strict" if info.get("strict") else "skipped"
        return f"{plural(lines, 'line is', 'lines are')} improperly formatted ({why})"
    if info.get("state") != "done":
        return None
    if reason is Reason.NO_LINES:
        return "no properly formatted checksum lines found"
    if reason is Reason.NOTHING_VERIFIED:
        return "no file was verified (--ignore-missing)"
    return None


def job_failed(info: dict[str, str]) -> bool:
    if info.get("state") in ("cancelled", "abandoned") or info.get("error"):
        return True
    verdict = _verdict(info, _counts(info))
    if info.get("state") != "done":  # so far: files failed, or lines --strict refuses
        return verdict.failed > 0 or verdict.reason is Reason.MISFORMATTED
    return verdict.status != 0
