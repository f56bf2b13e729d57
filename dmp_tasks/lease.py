"""A job's lease: who runs it now, renewed by a heartbeat while they do.

A detached job's coordinator holds its job's lease, so that at most one coordinates it at
a time; an attached command holds its job's, so that a job whose submitter vanished ends
as abandoned. A lease not renewed expires after ``DMP_LEASE_SECONDS`` (30 by default).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time

import redis

from dmp_tasks.jobs import JobStore

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 30.0


class Heartbeat:
    """Renews a job's lease every third of its life, on a thread of its own; sets
    ``lost`` if it cannot (another holds it, or Redis has been away for a lease's life).
    A detached job's coordinator holds the lease; so does an attached command, so that
    a job whose submitter vanished ends as abandoned."""

    def __init__(self, jobs: JobStore, job: str, owner: str, ttl_s: float) -> None:
        self.jobs, self.job, self.owner, self.ttl_s = jobs, job, owner, ttl_s
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
            self.jobs.release_lease(self.job, self.owner)

    def _run(self) -> None:
        # Logged at info only: whoever holds the lease says what happened, in one line
        # (a command's stderr must not get a second one from this thread).
        renewed = time.monotonic()
        while not self._stop.wait(self.ttl_s / 3):
            try:
                if not self.jobs.renew_lease(self.job, self.owner, int(self.ttl_s * 1000)):
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
