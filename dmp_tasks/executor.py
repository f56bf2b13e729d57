"""The Celery executor: the same seam as the embedded one, with the work on a fleet.

Items go out as batches (bounded by count and bytes) in flat chords of a few batches each;
each batch's rows come back on the job's Redis stream as soon as it finishes, and are put
back into item order here. Submission and gathering share one bounded window of files in
flight, so the CLI's memory, Redis's and each chord callback's stay flat however many
files a job has.

A job starts small: its first batches, of a few hundred files and doubling, go out in a
chord each, and chords double from there. The workers start as soon as the first files are
found, rather than after the submitter has walked a whole window of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
import uuid
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import TYPE_CHECKING, Any

from celery import chord
from celery.result import AsyncResult

from dmp_cli.errors import BrokerError, DmpError
from dmp_cli.executor import batches
from dmp_cli.inputs import Inputs
from dmp_cli.options import Work
from dmp_cli.rows import Item, Row
from dmp_cli.settings import whole_number
from dmp_cli.store import StorePool
from dmp_tasks import wire
from dmp_tasks.app import client_app
from dmp_tasks.config import COORD_QUEUE, QUEUES, safe_url
from dmp_tasks.jobs import JobCancelled, JobGone, JobStore, LeaseLost, broker_errors
from dmp_tasks.lease import Heartbeat, lease_seconds
from dmp_tasks.routing import (
    BATCH_BYTES,
    BLIND_BATCH_ITEMS,
    FIRST_BATCH_ITEMS,
    batch_items,
    big_file_bytes,
    callback_queue,
    queue_for,
)
from dmp_tasks.tasks import batch_signature
from dmp_tasks.walk import FleetLister

if TYPE_CHECKING:
    from celery import Celery

# What the CLI keeps in flight: its memory holds the paths, and the rows that arrive out
# of order, of this many files at most (plus one chord's worth). Eight batches of small
# files (dmp_tasks.routing), so that a chord holds four of them.
FILES_IN_FLIGHT = 65536
BATCHES_IN_FLIGHT = 32
BATCHES_PER_CHORD = 16
RAMP_CHORDS = 3
READ_BLOCK_MS = 1000


def _setting(name: str, default: int) -> int:
    value = whole_number(os.environ, name)
    return default if value is None else value


class _Answered(Exception):
    """A worker for the queue asked about has answered."""


def new_job_id() -> str:
    return uuid.uuid4().hex[:12]


def flight_entry(batch: list[Item]) -> str:
    """What the flight record keeps of a batch: its count, and a hash of its paths that
    tells whether a coordinator taking over made the same batch."""
    paths = "\0".join(str(item.get("path")) for item in batch)
    return f"{len(batch)}:{zlib.crc32(paths.encode('utf-8', 'surrogateescape')):08x}"


@dataclass
class Coordination:
    """A detached job as its coordinator runs it: where the last checkpoint left it,
    and how to save more.

    ``next_batch`` and ``items``: the batches, and the items in them, gathered before
    the checkpoint; ``flight``: the batches sent after it (index: flight entry), sent
    again as they were; ``save``: the run's own state, saved with each checkpoint;
    ``lost``: set when the lease is lost (the heartbeat could not renew it)."""

    job: str
    owner: str
    next_batch: int = 0
    items: int = 0
    flight: dict[int, str] = field(default_factory=dict)
    save: Callable[[], Mapping[str, Any]] = dict
    lost: threading.Event = field(default_factory=threading.Event)
    every: float = 1.0  # seconds between checkpoints at most

    def resent(self, items: Iterator[Item]) -> Iterator[list[Item]]:
        """The batches in flight at the checkpoint, made again from ``items`` (which
        follow the checkpoint), exactly as they were; then nothing."""
        index = self.next_batch
        while index in self.flight:
            entry = self.flight[index]
            batch = list(islice(items, int(entry.partition(":")[0])))
            if not batch or flight_entry(batch) != entry:
                raise DmpError(
                    f"job {self.job}: its input changed while the job was taken over "
                    f"(batch {index} is not what it was); run the command again"
                )
            yield batch
            index += 1


class _BatchPlan:
    """How big the job's next batch is: FIRST_BATCH_ITEMS files, then twice the one
    before, up to BLIND_BATCH_ITEMS while no file's size is known, then up to ``most``,
    with the job's mean file size so far assumed for each file (so that the bound by
    bytes holds huge files to a batch each). Work that does not read the files
    (``by_bytes`` false: asking the vault) is bounded by the count alone."""

    def __init__(
        self, jobs: JobStore, job: str, most: int, reread_s: float = 0.01, by_bytes: bool = True
    ) -> None:
        self.jobs, self.job, self.most = jobs, job, most
        self.reread_s = reread_s  # how often to ask Redis for the mean (batches can be many)
        self.by_bytes = by_bytes
        self.limit = 0
        self.mean: int | None = None if by_bytes else 0
        self._read: float | None = None  # when the mean was last read

    def __call__(self) -> tuple[int, int]:
        now = time.monotonic()
        if self.by_bytes and (self._read is None or now - self._read >= self.reread_s):
            self.mean, self._read = self.jobs.mean_file_size(self.job), now
        mean = self.mean
        cap = min(self.most, BLIND_BATCH_ITEMS) if mean is None else self.most
        self.limit = min(cap, 2 * self.limit if self.limit else FIRST_BATCH_ITEMS)
        return self.limit, mean or 0


class _Submitter:
    """Sends a job's batches, a flat chord at a time, numbering batches and chords."""

    def __init__(
        self,
        app: Celery,
        jobs: JobStore,
        job: str,
        work: Work,
        groups: Iterator[list[Item]],
        stream: bool,
        per_chord: int = BATCHES_PER_CHORD,
        tally: Callable[[], Mapping[str, int]] | None = None,
        coordination: Coordination | None = None,
    ) -> None:
        self.app, self.jobs, self.job, self.op = app, jobs, job, work.op
        # A detached job's coordinator records each batch before sending it (so that a
        # coordinator taking over sends the same ones), and ends the job itself.
        self.coordination = coordination
        # Batches whose rows are in already (a coordinator taking over finds those of
        # the batches in flight that finished): not sent again.
        self.has_rows: Callable[[int], bool] = lambda index: False
        self.groups = groups
        self.config = {"stores": work.stores, "options": work.options, **wire.speaks()}
        self.stream = stream
        self.cwd = work.cwd or os.getcwd()
        self.batches = self.items = self.windows = 0
        if coordination:
            self.batches, self.items = coordination.next_batch, coordination.items
        self.nbytes, self.sized = 0, True  # the files' sizes, while every item has one
        self.exhausted = False
        self.per_chord = per_chord
        self.tally = tally
        self.starts: list[int] = []  # the first batch of each chord
        self.callbacks: dict[int, AsyncResult] = {}  # by window, until consumed
        self._reaped = 0.0
        # The paths of the batches in flight, to put back in their rows (wire.pack_rows).
        self.paths: dict[int, list[str | None]] = {}

    def submit_window(self) -> None:
        # One batch a chord while batches grow (each goes out as soon as it is full),
        # then chords double.
        size = min(self.per_chord, 1 << max(0, self.windows - RAMP_CHORDS))
        window = list(islice(self.groups, size))
        if not window:
            self.exhausted = True
            if self.coordination:
                extra = {**(self.tally() if self.tally else {}), **self._bytes_total()}
                self.jobs.set_items_total(self.job, self.items, extra)
                return
            self.jobs.set_total(
                self.job,
                self.windows,
                self.batches,
                self.items,
                {**(self.tally() if self.tally else {}), **self._bytes_total()},
            )
            return
        header = [
            batch_signature(
                self.op, self.job, index, batch, self.config, self.stream, self.cwd, self.app
            )
            # A short argsrepr: Celery would otherwise repr every batch for the logs,
            # which costs the submitter more than encoding it.
            .set(
                queue=queue_for(self.op, batch),
                argsrepr=f"(job={self.job}, batch={index}, {len(batch)} items)",
            )
            for index, batch in enumerate(window, start=self.batches)
            if not self.has_rows(index)
        ]
        # A coordinator's chords are not counted by their callbacks: it ends the job.
        record = self.coordination is None
        callback = self.app.signature("dmp.window_done", args=(self.job, self.windows, record)).set(
            queue=callback_queue(self.op)
        )
        if self.coordination:
            self.jobs.add_flight(
                self.job,
                {i: flight_entry(batch) for i, batch in enumerate(window, start=self.batches)},
            )
        try:
            if header:
                self.callbacks[self.windows] = chord(header, callback, app=self.app).apply_async()
        except Exception as exc:  # kombu's OperationalError and redis-py's errors
            raise BrokerError(
                f"cannot submit to the broker at {safe_url(self.jobs.url)}: {exc}"
            ) from None
        self.starts.append(self.batches)
        if self.stream:
            for index, batch in enumerate(window, start=self.batches):
                self.paths[index] = [item.get("path") for item in batch]
        items = sum(len(batch) for batch in window)
        for batch in window:
            for item in batch:
                known = item.get("size")
                self.sized = self.sized and known is not None
                self.nbytes += known or 0
        if not self.coordination:
            self.jobs.submitted(self.job, len(window), items)
        self.batches += len(window)
        self.items += items
        self.windows += 1

    def _bytes_total(self) -> dict[str, int]:
        """The job's bytes, for an ETA by bytes, if every file's size was known."""
        return {"bytes_total": self.nbytes} if self.sized and self.items else {}

    def window_of(self, batch: int) -> int:
        return bisect_right(self.starts, batch) - 1

    def reap(self, next_batch: int) -> None:
        """Forget the results of chords whose rows are all in, so none pile up in Redis
        (at most once a second: each look is a round trip)."""
        now = time.monotonic()
        if now - self._reaped < 1.0:
            return
        self._reaped = now
        for window in [w for w in self.callbacks if w < self.window_of(next_batch)]:
            if self.callbacks[window].ready():
                self.callbacks.pop(window).forget()  # and its batches' results

    def finished(self, window: int) -> bool:
        result = self.callbacks.get(window)
        return result is not None and result.ready()

    def wait(self, timeout: float = 60.0) -> None:
        # follow_parents=False: the default re-polls every header task and grows
        # quadratically with the chord (DESIGN.md, section 5).
        deadline = time.monotonic() + timeout
        for window in sorted(self.callbacks):
            result = self.callbacks.pop(window)
            remaining = max(0.1, deadline - time.monotonic())
            try:
                result.get(
                    timeout=remaining,
                    follow_parents=False,
                    propagate=False,
                    disable_sync_subtasks=False,  # a coordinator waits on its chords
                )
            except Exception:  # the rows are all in; a late callback only delays the record
                return
            result.forget()


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
        # processes than the default keeps busy (see the README's estimate).
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
                submitter = self._submitter(job, work, items, stream=True)
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
        11 µs a file, measured; see the README)."""
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
        plan = _BatchPlan(self.jobs, job, batch_items(work.op), by_bytes=work.op != "head")
        groups = chain(
            coordination.resent(source),
            batches(source, max_bytes=BATCH_BYTES, plan=plan, alone_bytes=big_file_bytes()),
        )
        per_chord = max(1, min(self.per_chord, self.files_in_flight // (2 * plan.most)))
        submitter = _Submitter(
            self.app, self.jobs, job, work, groups, True, per_chord, coordination=coordination
        )
        yield from self._gather(job, submitter, coordination)
        submitter.wait()

    # detached jobs ---------------------------------------------------------
    def submit_job(self, op: str, plan: Mapping[str, Any], rules: Mapping[str, bool]) -> str:
        """Submit a detached job: its record (``plan``: what its coordinator runs) and its
        coordinator, queued on a queue of its own. Returns the job's id at once, however
        big the job; ``rules`` (strict, ignore_missing) judge it at the end."""
        job = new_job_id()
        fields = {rule: 1 for rule, on in rules.items() if on}
        self._create(
            job, op, {**fields, "plan": json.dumps({**plan, **wire.speaks()})}, coordinated=True
        )
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
        items: Iterable[Item],
        stream: bool,
        tally: Callable[[], Mapping[str, int]] | None = None,
    ) -> _Submitter:
        op = work.op
        most = batch_items(op)
        # A row's bytes are what was read or moved; asking the vault reads nothing (its
        # rows' bytes are the sizes of the objects), so its batches are bounded by count.
        plan = _BatchPlan(self.jobs, job, most, by_bytes=op != "head")
        groups = batches(items, max_bytes=BATCH_BYTES, plan=plan, alone_bytes=big_file_bytes())
        # A chord goes out whole: at most half the files in flight, so that the window
        # overshoots its bound by no more than that.
        per_chord = max(1, min(self.per_chord, self.files_in_flight // (2 * most)))
        return _Submitter(self.app, self.jobs, job, work, groups, stream, per_chord, tally)

    def _gather(
        self, job: str, submitter: _Submitter, coordination: Coordination | None = None
    ) -> Iterator[Row]:
        """Keep the window full, read rows as batches finish, yield them in item order.
        A coordinator's rows stay in Redis until its checkpoint (every second), which
        records how far it got once the rows before it have been used."""
        pending: dict[int, tuple[bytes, str]] = {}  # rows as they came, by batch
        next_batch, gathered = submitter.batches, submitter.items
        used_ids: list[bytes] = []
        checkpointed = time.monotonic()
        cursor = b"0-0"
        if coordination:  # the rows that batches in flight before a takeover left
            submitter.has_rows = pending.__contains__
            while True:
                cursor, arrived = self.jobs.read_rows(
                    job, cursor, 0, count=1024, keep=True, block=False
                )
                if not arrived:
                    break
                self._arrived(arrived, next_batch, pending, used_ids)
        while True:
            while not submitter.exhausted and (
                submitter.batches - next_batch < self.in_flight
                and submitter.items - gathered < self.files_in_flight
            ):
                submitter.submit_window()
            if coordination and (
                time.monotonic() - checkpointed >= coordination.every
                or len(used_ids) >= self.in_flight  # the rows kept for a takeover: bounded
                or (submitter.exhausted and next_batch >= submitter.batches)
            ):
                self._checkpoint(coordination, next_batch, gathered, used_ids)
                checkpointed = time.monotonic()
            if submitter.exhausted and next_batch >= submitter.batches:
                return
            if coordination and coordination.lost.is_set():
                raise LeaseLost(f"job {job} is coordinated elsewhere now")
            if next_batch not in pending:
                cursor, arrived = self.jobs.read_rows(
                    job, cursor, READ_BLOCK_MS, keep=coordination is not None
                )
                if not arrived:
                    # Nothing for a while: say so if it is because no worker is there
                    # (asked only now, as the question costs a round trip to the workers).
                    self._warn_if_no_worker(job, submitter.op)
                    self._check_cancelled(job)
                    cursor, arrived = self._check_lost(job, submitter, next_batch, cursor)
                self._arrived(arrived, next_batch, pending, used_ids if coordination else None)
            submitter.reap(next_batch)
            # In order; a batch's paths are known once it is submitted (rows that came
            # before, from a coordinator that died, wait for that).
            while next_batch in pending and next_batch in submitter.paths:
                entry, encoded = pending.pop(next_batch)
                rows = wire.unpack_rows(encoded, submitter.paths.pop(next_batch))
                gathered += len(rows)
                yield from rows
                used_ids.append(entry)
                next_batch += 1

    @staticmethod
    def _arrived(
        arrived: list[tuple[bytes, int, str]],
        next_batch: int,
        pending: dict[int, tuple[bytes, str]],
        stale: list[bytes] | None,
    ) -> None:
        for entry, index, encoded in arrived:
            # A batch run twice is published once (the store dedupes), but be safe.
            if index >= next_batch and index not in pending:
                pending[index] = (entry, encoded)
            elif stale is not None:  # from a batch gathered before: not needed any more
                stale.append(entry)

    def _checkpoint(
        self, coordination: Coordination, next_batch: int, items: int, used_ids: list[bytes]
    ) -> None:
        """Save how far the job got: every row before ``next_batch`` has been used."""
        state = {"next_batch": next_batch, "items": items, "run": dict(coordination.save())}
        done = list(range(coordination.next_batch, next_batch))
        self.jobs.checkpoint(coordination.job, coordination.owner, state, used_ids, done)
        coordination.next_batch, coordination.items = next_batch, items
        used_ids.clear()

    def _check_lost(
        self, job: str, submitter: _Submitter, next_batch: int, cursor: bytes
    ) -> tuple[bytes, list[tuple[bytes, int, str]]]:
        """A chord's callback runs after every batch of it has recorded its rows; if it ran
        and the rows of the batch awaited are not here, a worker could not record them."""
        if not submitter.finished(submitter.window_of(next_batch)):
            return cursor, []
        cursor, arrived = self.jobs.read_rows(
            job, cursor, 10, count=2 * self.in_flight, keep=self.coordination is not None
        )
        if not any(index == next_batch for _, index, _ in arrived):
            refused = self.jobs.refused(job)
            if refused:  # not the broker's doing: a coordinator must not try again
                raise DmpError(f"job {job}: {refused}")
            raise BrokerError(
                f"the results of batch {next_batch} of job {job} were lost "
                "(see the workers' logs); run the command again"
            )
        return cursor, arrived

    def _check_cancelled(self, job: str) -> None:
        with broker_errors(self.broker_url, "reading the job"):
            state = self.jobs.state(job)
        if state in ("cancelled", "abandoned"):
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


def no_worker_message(app: Celery, broker_url: str, job: str, op: str) -> str | None:
    """What to tell the user if no live worker takes from the queue of ``op``'s batches
    (or from queue ``op`` itself, for a queue's name), else None. Asking costs a round
    trip to the workers, and a second if none of them takes from that queue."""
    queue = op if op in QUEUES else callback_queue(op)
    queues = _worker_queues(app, queue)
    if queues is None or queue in queues:
        return None
    where = safe_url(broker_url)
    if not queues:
        return f"no worker answers at {where}; job {job} waits in Redis until a `dmp worker` starts"
    return (
        f"no worker at {where} takes from {queue} (the live ones take from "
        f"{', '.join(sorted(queues))}); job {job} waits in Redis until a `dmp worker` "
        f"for {queue} starts"
    )


def _worker_queues(app: Celery, wanted: str) -> set[str] | None:
    """The queues the live workers take from, as far as needed to find ``wanted``
    (empty if no worker answers); None if the question could not be asked, and then
    nothing is said rather than something wrong."""
    found: set[str] = set()

    def on_reply(reply: dict[str, list[dict[str, Any]]]) -> None:
        for queues in reply.values():
            found.update(str(queue.get("name")) for queue in queues or [])
        if wanted in found:
            raise _Answered  # no need to wait out the others

    try:
        app.control.broadcast("active_queues", reply=True, timeout=1.0, callback=on_reply)
    except _Answered:
        pass
    except Exception:
        return None
    return found


__all__ = ["CeleryExecutor", "new_job_id", "no_worker_message"]
