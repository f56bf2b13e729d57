"""Executors run an operation over a stream of items and give the rows back in order.

The embedded executor runs in the CLI's process: hashing in a pool of processes (two
threads fight over the GIL on every small-file syscall), network work in threads. The
Celery executor in ``dmp_tasks`` has the same shape.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor as PoolExecutor
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from itertools import islice
from typing import Any, Protocol, TypeVar

from dmp_cli.checking import (
    Piece,
    PieceResult,
    check_entries,
    check_piece,
    checked_rows,
    plain_entries,
)
from dmp_cli.inputs import Inputs, Lister
from dmp_cli.ops import kind_of, operation_named, run_batch
from dmp_cli.options import Work
from dmp_cli.rows import Item, Row
from dmp_cli.rules import Command
from dmp_cli.store import StorePool

_T = TypeVar("_T")
_R = TypeVar("_R")

MAX_BATCH_ITEMS = 512
MAX_BATCH_BYTES = 32 << 20


class Executor(Protocol):
    # The stores of this process, for a run to ask whether they can be used at all
    # before it sends them work; closed with the executor.
    stores: StorePool

    def map(
        self, work: Work, items: Iterable[Item], on_bytes: Callable[[int], None] | None = None
    ) -> Iterator[Row]:
        """Run ``work.op`` on every item; yield one row per item, in the items' order.
        ``on_bytes`` hears of the bytes transfers move, as they move, where the executor
        can tell (else the rows' ``bytes`` are all there is)."""
        ...

    def lister(self, inputs: Inputs) -> Lister | None:
        """What lists the directories of a --create walk of ``inputs``, if not this
        process (the fleet's workers list them, ahead of the walk)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: object) -> None: ...


def batches(
    items: Iterable[Item],
    max_items: int = MAX_BATCH_ITEMS,
    max_bytes: int = MAX_BATCH_BYTES,
    sizes: Callable[[], tuple[int, int]] | None = None,
    alone_bytes: int | None = None,
) -> Iterator[list[Item]]:
    """Group items into batches bounded by count and by bytes; a huge file goes alone
    (one over ``max_bytes``, or of ``alone_bytes`` or more).

    ``sizes``, if given, is asked before each batch for its bound on the count (instead of
    ``max_items``) and for the bytes to assume for an item of unknown size (else 0): the
    fleet's batches grow as a job starts, and hold fewer files when files are big.
    """
    batch: list[Item] = []
    size = 0
    limit, guess = sizes() if sizes else (max_items, 0)
    for item in items:
        known = item.get("size")
        alone = alone_bytes is not None and known is not None and known >= alone_bytes
        if batch and (
            alone or len(batch) >= limit or size + (guess if known is None else known) > max_bytes
        ):
            yield batch
            batch, size = [], 0
            if sizes:
                limit, guess = sizes()
        batch.append(item)
        size += guess if known is None else known
        if alone:
            yield batch
            batch, size = [], 0
            if sizes:
                limit, guess = sizes()
    if batch:
        yield batch


def _rows(batch: list[Item] | None, future: Future[list[Any]]) -> Iterator[Row]:
    results = future.result()
    return iter(results) if batch is None else checked_rows(batch, results)


def _counted(items: Iterable[Item], count: int) -> Iterator[list[Item]]:
    """Batches of ``count`` items: what ``batches`` makes of items of no known size."""
    items = iter(items)
    while batch := list(islice(items, count)):
        yield batch


def default_jobs() -> int:
    env = os.environ.get("DMP_JOBS")
    if env:
        return max(1, int(env))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def io_threads_for(jobs: int) -> int:
    """Threads for network work: it waits on the store, not on a CPU."""
    return min(64, max(8, 8 * jobs))


def _default_ending_signals() -> None:
    """A hashing process ends quietly on SIGTERM or SIGHUP (sent to the whole process
    group: `timeout`, a dropped session): it inherited the CLI's handlers, which unwind
    the run, and that is the CLI's work alone."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


class LocalExecutor:
    """The embedded executor: a local pool in this process, no services needed."""

    def __init__(self, jobs: int | None = None, io_threads: int | None = None) -> None:
        self.jobs = jobs or default_jobs()
        self.io_threads = io_threads or io_threads_for(self.jobs)
        self._pools: dict[str, PoolExecutor] = {}
        self.stores = StorePool()  # used by the transfer threads, all in this process

    def _pool(self, kind: str) -> PoolExecutor | None:
        if kind == "cpu" and self.jobs == 1:
            return None
        if kind not in self._pools:
            if kind == "cpu":
                context = multiprocessing.get_context("fork")
                self._pools[kind] = ProcessPoolExecutor(
                    self.jobs, mp_context=context, initializer=_default_ending_signals
                )
            else:
                self._pools[kind] = ThreadPoolExecutor(self.io_threads, "dmp-io")
        return self._pools[kind]

    def map(
        self, work: Work, items: Iterable[Item], on_bytes: Callable[[int], None] | None = None
    ) -> Iterator[Row]:
        kind = kind_of(work.op)
        pool = self._pool(kind)
        # Threads share this process, so they can tell of bytes as they move; the
        # processes of the hashing pool cannot (and hashing reports whole files).
        watch = on_bytes if kind == "io" else None
        compact = work.op == Command.CHECK.operation and work.cwd is None
        if kind == "io":
            # Network work is latency-bound: small batches keep every thread busy.
            per_thread = operation_named(work.op).per_thread
            groups = batches(items, max_items=per_thread, max_bytes=MAX_BATCH_BYTES)
        elif compact:
            groups = _counted(items, MAX_BATCH_ITEMS)  # entries of no known size
        else:
            groups = batches(items)
        # Hashing needs no stores (and its processes could not share them).
        stores = self.stores if kind == "io" else None
        if pool is None:
            for batch in groups:
                entries = plain_entries(batch) if compact else None
                if entries is None:
                    yield from run_batch(work, batch, stores, threads=False, on_bytes=watch)
                else:
                    yield from checked_rows(batch, check_entries(work, *entries, threads=False))
            return
        window = 4 * (self.jobs if kind == "cpu" else self.io_threads)
        # Each batch sent, with its items where the results come back compact (to be
        # made rows here), else None.
        pending: deque[tuple[list[Item] | None, Future[list[Any]]]] = deque()
        try:
            for batch in groups:
                entries = plain_entries(batch) if compact else None
                if entries is None:
                    future = pool.submit(run_batch, work, batch, stores, True, watch)
                    pending.append((None, future))
                else:
                    pending.append((batch, pool.submit(check_entries, work, *entries)))
                if len(pending) >= window:
                    yield from _rows(*pending.popleft())
            while pending:
                yield from _rows(*pending.popleft())
        finally:
            for _, future in pending:
                future.cancel()

    def check_pieces(
        self, work: Work, pieces: Iterable[Piece], stdin_manifest: bool
    ) -> Iterator[tuple[Piece, PieceResult]]:
        pool = self._pool("cpu")
        if pool is None:
            for piece in pieces:
                yield piece, check_piece(work, *piece, stdin_manifest, threads=False)
            return
        window = 4 * self.jobs
        pending: deque[tuple[Piece, Future[PieceResult]]] = deque()
        try:
            for piece in pieces:
                pending.append((piece, pool.submit(check_piece, work, *piece, stdin_manifest)))
                if len(pending) >= window:
                    sent, future = pending.popleft()
                    yield sent, future.result()
            while pending:
                sent, future = pending.popleft()
                yield sent, future.result()
        finally:
            for _, future in pending:
                future.cancel()

    def ordered(self, func: Callable[[_T], _R], args: Iterable[_T]) -> Iterator[_R]:
        """``func(arg)`` for each arg, in the hashing processes (here, with one job),
        the results in the args' order, a window of them ahead."""
        pool = self._pool("cpu")
        if pool is None:
            yield from map(func, args)
            return
        pending: deque[Future[_R]] = deque()
        try:
            for arg in args:
                pending.append(pool.submit(func, arg))
                if len(pending) >= 4 * self.jobs:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()

    def lister(self, inputs: Inputs) -> Lister | None:
        return None  # walks list their directories here, as they go

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
        self._pools.clear()
        self.stores.close()

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
