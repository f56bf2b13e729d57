"""A job's rows as its batches publish them, given back in the items' order.

Batches finish in any order; each publishes its rows once, as one entry of the job's
Redis stream. The rows of a batch wait here until those of every batch before it have
been given back, so the window of batches in flight bounds what waits.
"""

from __future__ import annotations

from collections.abc import Iterator

from dmp_cli.rows import Row
from dmp_tasks import wire
from dmp_tasks.jobs import JobStore

Arrived = list[tuple[bytes, int, str]]  # (stream id, batch, rows as wire.pack_rows made them)


class InOrder:
    """The rows of job ``job``'s batches from ``next_batch`` on, in order; ``gathered``
    counts the items given back. An attached command deletes rows from the stream as it
    reads them; a coordinator ``keep``s them until its checkpoint, so that a coordinator
    taking the job over finds them: ``used`` holds the stream ids of those it has used
    (or will never need) since."""

    def __init__(self, jobs: JobStore, job: str, next_batch: int, gathered: int, keep: bool):
        self.jobs, self.job, self.keep = jobs, job, keep
        self.next_batch, self.gathered = next_batch, gathered
        self.pending: dict[int, tuple[bytes, str]] = {}  # rows as they came, by batch
        self.used: list[bytes] = []
        self.cursor = b"0-0"

    def has(self, index: int) -> bool:
        """Whether the rows of batch ``index`` are in, and not yet given back."""
        return index in self.pending

    @property
    def awaited(self) -> bool:
        """The next batch's rows are not in yet."""
        return self.next_batch not in self.pending

    def pick_up(self) -> None:
        """The rows that batches in flight before a takeover left on the stream."""
        while True:
            self.cursor, arrived = self.jobs.read_rows(
                self.job, self.cursor, 0, count=1024, keep=True, block=False
            )
            if not arrived:
                return
            self.add(arrived)

    def read(self, block_ms: int, count: int = 64) -> Arrived:
        """The batches' rows published since the last read, waiting up to ``block_ms``."""
        self.cursor, arrived = self.jobs.read_rows(
            self.job, self.cursor, block_ms, count=count, keep=self.keep
        )
        return arrived

    def add(self, arrived: Arrived) -> None:
        for entry, index, encoded in arrived:
            # A batch run twice is published once (the store dedupes), but be safe.
            if index >= self.next_batch and index not in self.pending:
                self.pending[index] = (entry, encoded)
            elif self.keep:  # from a batch gathered before: not needed any more
                self.used.append(entry)

    def ready(self, paths: dict[int, list[str | None]]) -> Iterator[Row]:
        """The rows whose turn it is; a batch's ``paths`` are known once it is submitted
        (rows that came before, from a coordinator that died, wait for that)."""
        while self.next_batch in self.pending and self.next_batch in paths:
            entry, encoded = self.pending.pop(self.next_batch)
            rows = wire.unpack_rows(encoded, paths.pop(self.next_batch))
            self.gathered += len(rows)
            yield from rows
            if self.keep:
                self.used.append(entry)
            self.next_batch += 1
