"""Executors run an operation over a stream of items and give the rows back in order.

The embedded executor runs in the CLI's process: hashing in a pool of processes (two
threads fight over the GIL on every small-file syscall), network work in threads. The
Celery executor in ``dmp_tasks`` has the same shape.
"""

from __future__ import annotations

import codecs
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor as PoolExecutor
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from itertools import islice
from typing import Any, Protocol, runtime_checkable

from dmp_cli.digest import small_digest
from dmp_cli.inputs import Inputs, Lister
from dmp_cli.manifest import (
    FS_ENCODING,
    FS_ERRORS,
    LineParser,
    checked_name,
    common_lines,
    parse_block,
)
from dmp_cli.ops import kind_of, run_batch
from dmp_cli.options import Work
from dmp_cli.rows import Item, Row
from dmp_cli.rules import Command
from dmp_cli.store import StorePool

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


# A check's batch of plain entries (a line, a path, a checksum: nearly every batch) goes
# to a hashing process as three lists, and what comes back for a file that matches is its
# size alone, its row made here from the entry: dicts pickled both ways, and the general
# path through the check operation, cost more CPU than hashing a small file. Anything
# else (a file that differs, cannot be read, or is too big to hash in one read) comes
# back as the row the check operation makes, byte for byte what the fleet's would be.
_PLAIN_ENTRY = frozenset({"line", "path", "digest"})


def _entries(batch: list[Item]) -> tuple[list[int], list[str], list[str]] | None:
    """A batch of plain entries as (lines, paths, checksums); None if any item is
    another kind (an improperly formatted line, an entry '-' read from stdin)."""
    for item in batch:
        if item.keys() != _PLAIN_ENTRY:
            return None
    return (
        [item["line"] for item in batch],
        [item["path"] for item in batch],
        [item["digest"] for item in batch],
    )


def check_entries(
    work: Work,
    lines: list[int],
    paths: list[str],
    digests: list[str],
    threads: bool = True,
    matched: Sequence[int] = (),
) -> list[int | Row]:
    """Check a batch of plain entries (``_entries``): for each, the size of its file if
    it matches, else its row from the check operation (``run_batch``: with ``threads``,
    big files side by side on threads). The first entries may be known to match
    already: ``matched`` holds their sizes."""
    results: list[int | Row] = list(matched)
    others: list[int] = []  # where the check operation must say
    done = len(results)
    for path, expected in zip(paths[done:], digests[done:], strict=True):
        try:
            found = small_digest(path)
        except Exception:  # the check operation says why, in its row
            found = None
        if found is not None and found[0] == expected:
            results.append(found[1])
        else:
            others.append(len(results))
            results.append(0)
    if others:
        items: list[Item] = [
            {"line": lines[i], "path": paths[i], "digest": digests[i]} for i in others
        ]
        for i, row in zip(others, run_batch(work, items, None, threads), strict=True):
            results[i] = row
    return results


def _checked_rows(batch: list[Item], results: list[int | Row]) -> Iterator[Row]:
    """The rows of a batch of plain entries, from ``check_entries``' results: a size is
    a file that matched, and its row is the one the check operation makes."""
    for item, result in zip(batch, results, strict=True):
        if isinstance(result, int):
            digest = item["digest"]
            yield {
                "path": item["path"],
                "status": "ok",
                "digest": digest,
                "expected": digest,
                "bytes": result,
                "line": item["line"],
            }
        else:
            yield result


def check_item(number: int, digest: str | None, path: str, stdin_manifest: bool) -> Item:
    """The check operation's item for a manifest line (as ``dmp_cli.manifest.parsed``
    reads it): improperly formatted if it has no checksum, or, with ``stdin_manifest``
    (the manifest is stdin), if it names '-' (stdin), as in sha256sum."""
    if digest is None or (stdin_manifest and path == "-"):
        return {"line": number, "bad": True}
    return {"line": number, "path": path, "digest": digest}


def check_batch(
    work: Work, items: list[Item], threads: bool = True, matched: Sequence[int] = ()
) -> list[Row]:
    """The check operation's rows for a batch of items, in this process: compact
    (``check_entries``) if they are all plain entries."""
    entries = _entries(items)
    if entries is None:
        return run_batch(work, items, None, threads)
    return list(_checked_rows(items, check_entries(work, *entries, threads, matched)))


# --check of a manifest file, embedded, with the default output: the hashing processes
# read the manifest themselves, a piece of lines at a time (cut by ``pieces``), and send
# back, where every file of a piece matched, how many and their bytes, with the lines
# sha256sum prints for them (``NAME: OK``), all in one. The CLI's process then only reads
# the manifest and writes those lines: a row a file made, counted and printed there cost
# more than its process could do beside two hashing processes. A piece with anything
# else in it comes back as its rows, as the general path makes them.
PIECE_BYTES = 32 << 10

# A piece of a manifest: its lines (as ``dmp_cli.manifest.pieces`` cuts them), the number
# of the line before them, and the parser's form at their start (``LineParser``).
Piece = tuple[bytes, int, "bool | None"]
# What a hashing process makes of a piece: (files, bytes, lines) if every file matched,
# else the rows of its lines; None if a line names '-': stdin, which only the run's own
# process can read.
PieceResult = tuple[int, int, bytes] | list[Row] | None

_OK = b": OK\n"
# A name's bytes are then its path's, encoded back (``checked_name``): the lines printed for
# the files of a piece can be made of the manifest's own bytes.
_NAMES_AS_READ = codecs.lookup(FS_ENCODING).name == "utf-8" and FS_ERRORS == "surrogateescape"


def check_piece(
    work: Work,
    lines: bytes,
    number: int,
    reversed_bsd: bool | None,
    stdin_manifest: bool,
    threads: bool = True,
) -> PieceResult:
    """Check the files a piece of a manifest names (``Piece``); see ``PieceResult``."""
    sizes: list[int] = []  # of the files that matched, from the first on
    common = common_lines(lines) if reversed_bsd is not True else None
    if common is not None:
        for line in common:
            path = line[67:-1].decode(FS_ENCODING, FS_ERRORS)
            try:
                found = small_digest(path)
            except Exception:  # the check operation says why, in its row
                break
            if found is None or found[0].encode() != line[:64]:
                break
            sizes.append(found[1])
        else:
            if _NAMES_AS_READ:
                names = [line[67:-1] for line in common]
            else:
                names = [
                    checked_name(line[67:-1].decode(FS_ENCODING, FS_ERRORS)) for line in common
                ]
            return len(sizes), sum(sizes), _OK.join(names) + _OK
    parser = LineParser(reversed_bsd)
    items = [check_item(*entry, stdin_manifest) for entry in parse_block(lines, parser, number)]
    if any(item.get("path") == "-" for item in items):
        return None
    return check_batch(work, items, threads, sizes)


@runtime_checkable
class PieceChecker(Protocol):
    """An executor that checks a manifest file a piece at a time (``check_piece``)."""

    def check_pieces(
        self, work: Work, pieces: Iterable[Piece], stdin_manifest: bool
    ) -> Iterator[tuple[Piece, PieceResult]]:
        """Each piece with what ``check_piece`` makes of it, in the pieces' order."""
        ...


def _rows(batch: list[Item] | None, future: Future[list[Any]]) -> Iterator[Row]:
    results = future.result()
    return iter(results) if batch is None else _checked_rows(batch, results)


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
            groups = batches(items, max_items=8, max_bytes=MAX_BATCH_BYTES)
        elif compact:
            groups = _counted(items, MAX_BATCH_ITEMS)  # entries of no known size
        else:
            groups = batches(items)
        # Hashing needs no stores (and its processes could not share them).
        stores = self.stores if kind == "io" else None
        if pool is None:
            for batch in groups:
                entries = _entries(batch) if compact else None
                if entries is None:
                    yield from run_batch(work, batch, stores, threads=False, on_bytes=watch)
                else:
                    yield from _checked_rows(batch, check_entries(work, *entries, threads=False))
            return
        window = 4 * (self.jobs if kind == "cpu" else self.io_threads)
        # Each batch sent, with its items where the results come back compact (to be
        # made rows here), else None.
        pending: deque[tuple[list[Item] | None, Future[list[Any]]]] = deque()
        try:
            for batch in groups:
                entries = _entries(batch) if compact else None
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
