"""The Celery executor: the same seam as the embedded one, with the work on a fleet.

Items go out as batches (bounded by count and bytes) in flat chords of a few batches each
(``dmp_tasks.submit``); each batch's rows come back on the job's Redis stream as soon as it
finishes, and are put back into item order (``dmp_tasks.gather``). Submission and
gathering share one bounded window of files in flight, so the CLI's memory, Redis's and
each chord callback's stay flat however many files a job has.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import chain, islice
from typing import TYPE_CHECKING

from dmp_cli.errors import BrokerError, DmpError
from dmp_cli.executor import batches
from dmp_cli.inputs import Inputs
from dmp_cli.job_record import DetachedJob, JobState
from dmp_cli.options import Work
from dmp_cli.rows import Item, Row
from dmp_cli.rules import Command
from dmp_cli.settings import whole_number
from dmp_cli.store import StorePool
from dmp_tasks import auth, wire
from dmp_tasks.app import client_app
from dmp_tasks.broker import broker_errors
from dmp_tasks.config import COORD_QUEUE, safe_url
from dmp_tasks.gather import Arrived, InOrder
from dmp_tasks.jobs import JOB_TTL, JobCancelled, JobGone, JobStore, LeaseLost, job_key
from dmp_tasks.lease import Heartbeat, lease_seconds
from dmp_tasks.presence import no_worker_message
from dmp_tasks.routing import BATCH_BYTES, batch_items, big_file_bytes, callback_queue
from dmp_tasks.submit import BatchSizes, Coordination, Submitter
from dmp_tasks.walk import FleetLister

if TYPE_CHECKING:
    from celery import Celery

# What the CLI keeps in flight: its memory holds the paths, and the rows that arrive out
# of order, of this many files at most (plus one chord's worth). Eight batches of small
# files (dmp_tasks.routing), so that a chord holds four of them.
FILES_IN_FLIGHT = 65536
BATCHES_IN_FLIGHT = 32
BATCHES_PER_CHORD = 16
READ_BLOCK_MS = 1000


def _setting(name: str, default: int) -> int:
    value = whole_number(os.environ, name)
    return default if value is None else value


def new_job_id() -> str:
    return uuid.uuid4().hex[:12]


class CeleryExecutor:
    """Runs operations on `dmp worker` processes through Redis; rows come back in order.

    It prints nothing: ``on_message`` hears what a person should know (no worker takes
    from the job's queue). It sends through an app of its own (``client_app``)."""

    def __init__(
        self,
        broker_url: str,
        on_message: Callable[[str], None] | None = None,
        *,
        in_flight: int | None = None,
        per_chord: int = BATCHES_PER_CHORD,
        files_in_flight: int | None = None,
        label: str | None = None,
        app: Celery | None = None,
        coordination: Coordination | None = None,
    ) -> None:
        self.broker_url = broker_url
        self.on_message = on_message
        # A coordinator sends with its worker's own app (``app``); anyone else with one
        # of its own.
        self.app = app or client_app(broker_url)
        self.coordination = coordination
        self._listers: list[FleetLister] = []
        # The object stores, for a run to ask whether they can be used before it sends
        # work (the workers make their own); and the jobs' records, in Redis.
        self.stores = StorePool()
        self.jobs = JobStore(broker_url)
        self.jobs.ping()  # an unreachable broker is an error now, not a hang later
        # The window: DMP_BATCHES_IN_FLIGHT and DMP_FILES_IN_FLIGHT, for a fleet with more
        # processes than the default keeps busy (see bench/README.md's estimate).
        in_flight = in_flight or _setting("DMP_BATCHES_IN_FLIGHT", BATCHES_IN_FLIGHT)
        self.in_flight = max(in_flight, per_chord)
        self.files_in_flight = files_in_flight or _setting("DMP_FILES_IN_FLIGHT", FILES_IN_FLIGHT)
        self.per_chord = per_chord
        self.label = label or " ".join(["dmp", *sys.argv[1:]])[:500]
        self._checked_workers = False

    # the Executor protocol -------------------------------------------------
    def map(
        self, work: Work, items: Iterable[Item], on_bytes: Callable[[int], None] | None = None
    ) -> Iterator[Row]:
        # Workers elsewhere tell of bytes in their rows only: ``on_bytes`` hears nothing.
        if self.coordination:
            yield from self._map_coordinated(work, items, self.coordination)
            return
        job = new_job_id()
        finished = False
        # The command holds the job's lease while it runs: if it vanishes (SIGKILL, a
        # node lost) the lease expires and the job ends as abandoned, not going for ever.
        owner, ttl = f"submitter:{socket.gethostname()}:{os.getpid()}", lease_seconds()
        try:  # from the start: an interrupt at any point cancels the job
            self._create(job, work.op, submitter=(owner, int(ttl * 1000)))
            with Heartbeat(self.jobs, job, owner, ttl):
                submitter = self._submitter(job, work, iter(items))
                yield from self._gather(job, submitter)
                submitter.wait()
            finished = True
        finally:
            if not finished:
                self._abandon(job)

    def lister(self, inputs: Inputs) -> FleetLister | None:
        """A detached job's coordinator has the workers list the directories of a --dir
        walk, ahead of it. An attached command walks in its own process, as it always
        has: on a local disk, listing on the fleet costs more CPU than it saves (about
        11 µs a file, measured; see bench/README.md)."""
        if not inputs.dirs or self.coordination is None:
            return None
        lister = FleetLister(
            self.app, os.getcwd(), list(inputs.dirs), inputs.recursive, self._listing_wait
        )
        self._listers.append(lister)
        return lister

    def _listing_wait(self) -> None:
        """While a listing is awaited: stop if the job can go no further."""
        coordination = self.coordination
        assert coordination is not None, "only a coordinator's walk is listed on the fleet"
        if coordination.lost.is_set():
            raise LeaseLost(f"job {coordination.job} is coordinated elsewhere now")
        self._check_cancelled(coordination.job)

    def close(self) -> None:
        for lister in self._listers:
            lister.close()
        self.stores.close()
        self.jobs.client.close()

    def __enter__(self) -> CeleryExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _map_coordinated(
        self, work: Work, items: Iterable[Item], coordination: Coordination
    ) -> Iterator[Row]:
        """A detached job's run on its coordinator: from its last checkpoint, the
        batches in flight then sent again as they were, a checkpoint every second."""
        job = coordination.job
        source = iter(items)
        skipped = sum(1 for _ in islice(source, coordination.items))
        if skipped < coordination.items:
            raise DmpError(
                f"job {job}: its input has {skipped} entries, fewer than the "
                f"{coordination.items} already done; it changed meanwhile"
            )
        submitter = self._submitter(job, work, source, coordination)
        yield from self._gather(job, submitter, coordination)
        submitter.wait()

    # detached jobs ---------------------------------------------------------
    def submit_job(self, detached: DetachedJob, rules: Mapping[str, bool]) -> str:
        """Submit a detached job: its record (with ``detached``: what its coordinator
        runs) and its coordinator, queued on a queue of its own. Returns the job's id at
        once, however big the job; ``rules`` (strict, ignore_missing) judge it at the end."""
        job = new_job_id()
        op = Command(detached.command).operation
        fields = {rule: 1 for rule, on in rules.items() if on}
        plan = json.dumps({**detached.to_json(), **wire.speaks()})
        # The job's credential (DMP_AUTH=munge): its coordinator runs it only as the user
        # this proves, and only this plan.
        credential = auth.sign(*auth.job_parts(job, plan))
        self._create(job, op, {**fields, "plan": plan}, coordinated=True)
        if credential:
            self.jobs.client.set(job_key(job, "credential"), credential, ex=JOB_TTL)
        try:
            # Coordinators first, then the workers its batches need: the first missing.
            if self.on_message is not None:
                for queue in (COORD_QUEUE, callback_queue(op)):
                    message = no_worker_message(self.app, self.broker_url, job, queue)
                    if message:
                        self.on_message(message)
                        break
            self.app.signature("dmp.coordinate", args=(job,)).set(queue=COORD_QUEUE).apply_async()
        except BaseException as exc:
            self._abandon(job)
            if isinstance(exc, Exception) and not isinstance(exc, DmpError):
                raise BrokerError(
                    f"cannot submit to the broker at {safe_url(self.broker_url)}: {exc}"
                ) from None
            raise
        return job

    # internals -------------------------------------------------------------
    def _create(
        self,
        job: str,
        op: str,
        fields: Mapping[str, int | str] | None = None,
        coordinated: bool = False,
        submitter: tuple[str, int] | None = None,
    ) -> None:
        self.jobs.create(
            job,
            {"op": op, "host": socket.gethostname(), "command": self.label, **(fields or {})},
            coordinated,
            submitter,
        )

    def _submitter(
        self,
        job: str,
        work: Work,
        items: Iterator[Item],
        coordination: Coordination | None = None,
    ) -> Submitter:
        """The job's batches, from ``items`` (after those a coordinator sends again), and
        what sends them."""
        most = batch_items(work.op)
        # A row's bytes are what was read or moved; asking the vault reads nothing (its
        # rows' bytes are the sizes of the objects), so its batches are bounded by count.
        sizes = BatchSizes(self.jobs, job, most, by_bytes=work.op != "head")
        groups = batches(items, max_bytes=BATCH_BYTES, sizes=sizes, alone_bytes=big_file_bytes())
        if coordination:
            groups = chain(coordination.resent(items), groups)
        # A chord goes out whole: at most half the files in flight, so that the window
        # overshoots its bound by no more than that.
        per_chord = max(1, min(self.per_chord, self.files_in_flight // (2 * most)))
        return Submitter(self.app, self.jobs, job, work, groups, True, per_chord, coordination)

    def _gather(
        self, job: str, submitter: Submitter, coordination: Coordination | None = None
    ) -> Iterator[Row]:
        """Keep the window full, read rows as batches finish, yield them in item order.
        A coordinator's rows stay in Redis until its checkpoint (every second), which
        records how far it got once the rows before it have been used."""
        rows = InOrder(self.jobs, job, submitter.batches, submitter.items, coordination is not None)
        checkpointed = time.monotonic()
        if coordination:  # the rows that batches in flight before a takeover left
            submitter.has_rows = rows.has
            rows.pick_up()
        while True:
            submitter.fill(rows.next_batch, rows.gathered, self.in_flight, self.files_in_flight)
            if coordination and (
                time.monotonic() - checkpointed >= coordination.every
                or len(rows.used) >= self.in_flight  # the rows kept for a takeover: bounded
                or submitter.done(rows.next_batch)
            ):
                coordination.checkpoint(self.jobs, rows.next_batch, rows.gathered, rows.used)
                checkpointed = time.monotonic()
            if submitter.done(rows.next_batch):
                return
            if coordination and coordination.lost.is_set():
                raise LeaseLost(f"job {job} is coordinated elsewhere now")
            if rows.awaited:
                rows.add(self._await(job, submitter, rows))
            submitter.reap(rows.next_batch)
            yield from rows.ready(submitter.paths)

    def _await(self, job: str, submitter: Submitter, rows: InOrder) -> Arrived:
        """The rows published while the next batch's are awaited. When none come for a
        while, why: no worker, a job cancelled or gone, or the batch's rows lost."""
        arrived = rows.read(READ_BLOCK_MS)
        if arrived:
            return arrived
        # Said only now, as the question costs a round trip to the workers.
        self._warn_if_no_worker(job, submitter.op)
        self._check_cancelled(job)
        return self._check_lost(job, submitter, rows)

    def _check_lost(self, job: str, submitter: Submitter, rows: InOrder) -> Arrived:
        """A chord's callback runs after every batch of it has recorded its rows; if it ran
        and the rows of the batch awaited are not here, a worker could not record them."""
        if not submitter.finished(submitter.window_of(rows.next_batch)):
            return []
        arrived = rows.read(10, count=2 * self.in_flight)
        if not any(index == rows.next_batch for _, index, _ in arrived):
            refused = self.jobs.refused(job)
            if refused:  # not the broker's doing: a coordinator must not try again
                raise DmpError(f"job {job}: {refused}")
            raise BrokerError(
                f"the results of batch {rows.next_batch} of job {job} were lost "
                "(see the workers' logs); run the command again"
            )
        return arrived

    def _check_cancelled(self, job: str) -> None:
        with broker_errors(self.broker_url, "reading the job"):
            state = self.jobs.state(job)
        if state in (JobState.CANCELLED, JobState.ABANDONED):
            raise JobCancelled(f"job {job} was {state}")
        if state is None:
            raise JobGone(
                f"job {job} is gone from the broker at {safe_url(self.broker_url)} "
                "(expired, deleted, or Redis lost its data); run the command again"
            )

    def _warn_if_no_worker(self, job: str, op: str) -> None:
        """Say so if no live worker takes from the queue the job's batches go to (asked
        once: see ``no_worker_message``)."""
        if self._checked_workers or self.on_message is None:
            return
        self._checked_workers = True
        message = no_worker_message(self.app, self.broker_url, job, op)
        if message:
            self.on_message(message)

    def _abandon(self, job: str) -> None:
        """The CLI stopped before the end (an error, Ctrl-C): workers skip the rest."""
        with contextlib.suppress(Exception):  # the broker may be what failed
            self.jobs.cancel(job)


__all__ = ["CeleryExecutor", "new_job_id"]
