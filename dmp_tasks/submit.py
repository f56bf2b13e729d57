"""Sending a job's batches to the fleet: how big each is, and a flat chord of them at a time.

A job starts small: its first batches, of a few hundred files and doubling, go out in a
chord each, and chords double from there. The workers start as soon as the first files are
found, rather than after the submitter has walked a whole window of them.

A detached job's coordinator records each batch before it sends it (``Coordination``), so
that a coordinator taking the job over sends the same batches again, and checkpoints how
far it got.
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

from celery import chord
from celery.result import AsyncResult

from dmp_cli.errors import BrokerError, DmpError
from dmp_cli.options import Work
from dmp_cli.rows import Item
from dmp_tasks import auth, wire
from dmp_tasks.config import safe_url
from dmp_tasks.jobs import JobStore
from dmp_tasks.routing import BLIND_BATCH_ITEMS, FIRST_BATCH_ITEMS, callback_queue, queue_for
from dmp_tasks.tasks import batch_signature, window_parts

if TYPE_CHECKING:
    from celery import Celery

RAMP_CHORDS = 3  # chords of one batch each, while batches grow


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

    def checkpoint(self, jobs: JobStore, next_batch: int, items: int, used: list[bytes]) -> None:
        """Save how far the job got: every row before ``next_batch`` has been used (the
        rows' stream entries ``used`` go, and so do the batches' flight records)."""
        state = {"next_batch": next_batch, "items": items, "run": dict(self.save())}
        done = list(range(self.next_batch, next_batch))
        jobs.checkpoint(self.job, self.owner, state, used, done)
        self.next_batch, self.items = next_batch, items
        used.clear()


class BatchSizes:
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


class Submitter:
    """Sends a job's batches, a flat chord at a time, numbering batches and chords."""

    def __init__(
        self,
        app: Celery,
        jobs: JobStore,
        job: str,
        work: Work,
        groups: Iterator[list[Item]],
        stream: bool,
        per_chord: int,
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
        self.starts: list[int] = []  # the first batch of each chord
        self.callbacks: dict[int, AsyncResult] = {}  # by window, until consumed
        self._reaped = 0.0
        # The paths of the batches in flight, to put back in their rows (wire.pack_rows).
        self.paths: dict[int, list[str | None]] = {}

    def fill(self, gathered_batches: int, gathered_items: int, batches: int, files: int) -> None:
        """Send chords while fewer than ``batches`` batches and ``files`` files are in
        flight (sent and not yet gathered)."""
        while not self.exhausted and (
            self.batches - gathered_batches < batches and self.items - gathered_items < files
        ):
            self.submit_window()

    def done(self, gathered_batches: int) -> bool:
        """Every batch is sent, and gathered."""
        return self.exhausted and gathered_batches >= self.batches

    def submit_window(self) -> None:
        # One batch a chord while batches grow (each goes out as soon as it is full),
        # then chords double.
        size = min(self.per_chord, 1 << max(0, self.windows - RAMP_CHORDS))
        window = list(islice(self.groups, size))
        if not window:
            self.exhausted = True
            if self.coordination:
                self.jobs.set_items_total(self.job, self.items, self._bytes_total())
                return
            self.jobs.set_total(
                self.job, self.windows, self.batches, self.items, self._bytes_total()
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
        credential = auth.sign(*window_parts(self.job, self.windows, record))
        callback = self.app.signature(
            "dmp.window_done",
            args=(self.job, self.windows, record),
            kwargs={"credential": credential} if credential else {},
        ).set(queue=callback_queue(self.op))
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
        # follow_parents=False: by default, waiting on a chord's result polls every one
        # of its header tasks as well, which grows quadratically with the chord.
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
