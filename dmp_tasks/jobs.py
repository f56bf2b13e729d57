"""Job state in Redis, so that any node can find a job: its progress, counts and errors.

Keys of a job ``ID`` (all expire ``JOB_TTL`` after their last write):

- ``dmp:job:ID``          hash: op, state, who and when, submitted and done counts
- ``dmp:job:ID:seen``     bitmap of the batches already counted (a redelivered batch
                          that runs twice is counted once)
- ``dmp:job:ID:rows``     stream of per-file rows, one entry a batch, for an attached CLI
                          that reads and deletes them as they come
- ``dmp:job:ID:errors``   capped stream of the rows that failed, for `dmp job status`
- ``dmp:job:ID:windows``  hash of each chord's summed counts (written by its callback)
- ``dmp:jobs``            sorted set of job ids by submission time, for `dmp job list`

Every update that must happen once is a Lua script: Redis runs it atomically, so a worker
killed halfway leaves either all of it or none.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import redis

from dmp_cli.errors import BrokerError
from dmp_cli.rows import Status
from dmp_cli.rules import Command, Reason, Verdict, judge
from dmp_cli.words import plural
from dmp_tasks.config import safe_url

JOB_TTL = 7 * 24 * 3600
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
        raise BrokerError(
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

    def ping(self) -> None:
        with broker_errors(self.url, "connecting"):
            self.client.ping()

    # submitting ----------------------------------------------------------
    def create(self, job: str, fields: dict[str, Any]) -> None:
        now = time.time()
        with broker_errors(self.url, "registering the job"):
            pipe = self.client.pipeline()
            pipe.hset(
                job_key(job),
                mapping={"state": "active", "created": now, "batches": 0, "items": 0, **fields},
            )
            pipe.expire(job_key(job), JOB_TTL)
            pipe.zadd(JOBS_KEY, {job: now})
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
    ) -> bool:
        """Count a finished batch once; False if it was counted before (a redelivery)."""
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
        return bool(self._record(keys=keys, args=args))

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
    def read_rows(
        self, job: str, after: bytes, block_ms: int, count: int = 64
    ) -> tuple[bytes, list[tuple[int, str]]]:
        """Batches of rows published since stream id ``after``; deleted once read."""
        key = job_key(job, "rows")
        with broker_errors(self.url, "reading results"):
            reply = self.client.xread({key: after}, count=count, block=block_ms)
            if not reply:
                return after, []
            entries = reply[0][1]
            self.client.xdel(key, *[entry_id for entry_id, _ in entries])
        batches = [(int(fields[b"b"]), fields[b"r"].decode()) for _, fields in entries]
        return entries[-1][0], batches

    def info(self, job: str) -> dict[str, str] | None:
        with broker_errors(self.url, "reading the job"):
            raw = self.client.hgetall(job_key(job))
        if not raw:
            return None
        return {k.decode(): v.decode("utf-8", "replace") for k, v in raw.items()}

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
    Until the job is done, only what cannot change: lines that --strict refuses."""
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
    if info.get("state") == "cancelled":
        return True
    verdict = _verdict(info, _counts(info))
    if info.get("state") != "done":  # so far: files failed, or lines --strict refuses
        return verdict.failed > 0 or verdict.reason is Reason.MISFORMATTED
    return verdict.status != 0
