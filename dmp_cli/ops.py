"""The per-file operations, written once for every executor, and the batch runner.

Each operation takes an item and a context and returns a row. A failure of one file is a
row, never an exception: an executor runs thousands of them and one unreadable file must
not cost the others, so ``run_batch`` turns whatever an operation raises into that file's
error row (``dmp_cli.rows.error_row``), and tries again, with backoff, the files whose
failure was marked transient where it was raised. Operations know nothing of click,
Celery or boto3; what they need from outside (stores, the working directory, who hears
of bytes moving) comes through the context.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

from dmp_cli import retry
from dmp_cli.digest import FileDigest
from dmp_cli.errors import DmpError, StoreError
from dmp_cli.fsutil import dir_prefix
from dmp_cli.meta import stat_of
from dmp_cli.options import Options, StoreSpec, Work
from dmp_cli.reuse import unchanged
from dmp_cli.rows import Item, Row, base_row, error_row, problem_row
from dmp_cli.store import Store, StorePool, Vault


@dataclass
class Context:
    """What an operation may use beyond its item."""

    work: Work
    stores: StorePool | None = None  # the process's stores (transfers only)
    # Set where big files may be finished on a thread of their own (see FileDigest).
    spawn: Callable[[Callable[[], Row]], Future[Row]] | None = None
    # Set where someone watches bytes move as they move (the CLI's progress bar, when
    # transfers run in its own threads); called from those threads.
    on_bytes: Callable[[int], None] | None = None

    @cached_property
    def options(self) -> Options:
        return self.work.opts()

    @cached_property
    def spec(self) -> StoreSpec:
        spec = self.work.spec()
        if spec is None:
            raise StoreError(f"the {self.work.op} operation was given no stores")
        return spec

    def vault(self) -> Vault:
        assert self.stores is not None, "transfers need the executor's stores"
        return self.stores.vault(self.spec)

    def dest(self) -> Store:
        assert self.stores is not None, "transfers need the executor's stores"
        return self.stores.dest(self.spec)

    def path(self, path: str) -> str:
        """A manifest path as this process must open it: against the job's directory."""
        if self._prefix is None or path.startswith("/"):
            return path
        return self._prefix + path

    @cached_property
    def _prefix(self) -> str | None:
        return None if self.work.cwd is None else dir_prefix(self.work.cwd)


# An operation's result: a row, or (for a big file finishing on a thread) its future.
Result = Row | Future[Row]
OpFunc = Callable[[Item, Context], Result]


def _path_only(item: Item, ctx: Context) -> Row:
    return base_row(item)


@dataclass(frozen=True)
class Operation:
    name: str
    func: OpFunc
    kind: str  # "cpu": hashing, wants processes; "io": network, wants threads
    # The fields of every row of an item, failed or not: what a report reads.
    base: Callable[[Item, Context], Row] = _path_only
    # The object an item's work is about, for the message of an unforeseen error.
    where: Callable[[Item, Context], str | None] = lambda item, ctx: None
    # Items of it that an embedded thread takes at a time (network work): a few small
    # requests, or one long piece of work (a listing) so that each goes in parallel.
    per_thread: int = 8

    def failed(self, item: Item, ctx: Context, exc: BaseException) -> Row:
        """The row of an item whose work raised ``exc``."""
        try:
            where = self.where(item, ctx) if not isinstance(exc, OSError | DmpError) else None
        except Exception:  # the object cannot even be named: the error says enough
            where = None
        return error_row(self.base(item, ctx), exc, where)


# Every operation, by name: the "module:attribute" of its Operation, loaded on first use
# (as kombu names its transports), so that a run that only hashes never loads the stores.
TABLE: dict[str, str] = {
    "hash": "dmp_cli.ops:HASH",
    "check": "dmp_cli.ops:CHECK",
    "head": "dmp_cli.transfer:HEAD",
    "upload": "dmp_cli.transfer:UPLOAD",
    "download": "dmp_cli.transfer:DOWNLOAD",
    "vault-list": "dmp_cli.listing:LIST",  # a prefix of the vault listed (planning)
    "pack": "dmp_cli.packing:PACK",  # small files stored as one pack (packing vaults)
}

# The operations loaded so far, by name.
OPERATIONS: dict[str, Operation] = {}


def _digest(item: Item, ctx: Context, row: Callable[[str, int], Row]) -> Result:
    """Hash the item's file and make its row; a big file may finish on ctx.spawn."""
    digest = FileDigest(ctx.path(item["path"]))

    def finish() -> Row:
        return row(*digest.finish())

    if not digest.done and ctx.spawn is not None:
        return ctx.spawn(finish)
    return finish()


def _expected(item: Item, ctx: Context) -> Row:
    return base_row(item, expected=item["digest"]) if "digest" in item else base_row(item)


def hash_op(item: Item, ctx: Context) -> Result:
    if "problem" in item:
        return problem_row(item)
    path = item["path"]
    old = item.get("old")
    meta = bool(ctx.options.meta)
    fields = None
    if meta or old is not None:
        fields = stat_of(ctx.path(path))  # before hashing: a change meanwhile shows in --check
        if old is not None and unchanged(old, fields):  # --update: the file is not read
            row: Row = {"path": path, "status": "ok", "digest": old[0], "bytes": fields[3]}
            row["reused"] = True
            if meta:
                row["stat"] = fields
            return row

    def done(digest: str, size: int) -> Row:
        row: Row = {"path": path, "status": "ok", "digest": digest, "bytes": size}
        if fields is not None and meta:
            row["stat"] = fields
        return row

    return _digest(item, ctx, done)


def check_op(item: Item, ctx: Context) -> Result:
    if item.get("bad"):
        return {"status": "misformatted", "bytes": 0}
    path, expected = item["path"], item["digest"]
    if "stdin_error" in item:  # an entry '-': stdin, read by the run (runs.check)
        raise OSError(*item["stdin_error"])
    if "stdin" in item:
        digest, size = item["stdin"]
        return {
            "path": path,
            "status": "ok" if digest == expected else "failed",
            "digest": digest,
            "expected": expected,
            "bytes": size,
        }
    return _digest(
        item,
        ctx,
        lambda digest, size: {
            "path": path,
            "status": "ok" if digest == expected else "failed",
            "digest": digest,
            "expected": expected,
            "bytes": size,
        },
    )


HASH = Operation("hash", hash_op, "cpu")
CHECK = Operation("check", check_op, "cpu", base=_expected)


def run_batch(
    work: Work,
    items: list[Item],
    stores: StorePool | None = None,
    threads: bool = True,
    on_bytes: Callable[[int], None] | None = None,
) -> list[Row]:
    """Run one operation over a batch of items in this process: one row per item, in
    order, whatever the operation raised. Files whose failure was transient are tried
    again, with backoff. With ``threads``, the big files of a batch are hashed side by
    side on threads, so that a batch of a few huge files does not leave the other cores
    idle. ``on_bytes`` hears of the bytes that transfers move, as they move."""
    op = operation_named(work.op)
    ctx = Context(work, stores, on_bytes=on_bytes)
    unusable = _unusable_cwd(work.cwd)
    if unusable:
        return [op.failed(item, ctx, unusable) for item in items]
    if threads and len(items) > 1:
        ctx.spawn = _big_file_pool().submit
    rows = _attempt(op, items, ctx)
    for delay in retry.retry_delays():
        again = [i for i, row in enumerate(rows) if row.get("transient")]
        if not again:
            break
        retry.pause(delay)
        for i, row in zip(again, _attempt(op, [items[i] for i in again], ctx), strict=True):
            rows[i] = row
    return rows


def _attempt(op: Operation, items: list[Item], ctx: Context) -> list[Row]:
    results = [_run_one(op, item, ctx) for item in items]
    return [_settle(op, result, item, ctx) for result, item in zip(results, items, strict=True)]


def _run_one(op: Operation, item: Item, ctx: Context) -> Result:
    try:
        return op.func(item, ctx)
    except Exception as exc:  # one file's surprise must not sink the batch
        return op.failed(item, ctx, exc)


def _settle(op: Operation, result: Result, item: Item, ctx: Context) -> Row:
    if isinstance(result, Future):
        try:
            row = result.result()
        except Exception as exc:
            row = op.failed(item, ctx, exc)
    else:
        row = result
    if "line" in item:
        row["line"] = item["line"]
    return row


def _unusable_cwd(cwd: str | None) -> OSError | None:
    """Why the job's directory cannot be used here (workers share the filesystem)."""
    if cwd is None or os.path.isdir(cwd):
        return None
    return OSError(f"working directory {cwd} not usable on this worker")


_pool: ThreadPoolExecutor | None = None
_pool_pid = 0


def _big_file_pool() -> ThreadPoolExecutor:
    """Threads for the big files of a batch, made in this process (pools don't survive fork)."""
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        _pool = ThreadPoolExecutor(max(2, os.cpu_count() or 2), "dmp-big")
        _pool_pid = os.getpid()
    return _pool


def operation_named(name: str) -> Operation:
    """The operation ``TABLE`` names ``name``, its module imported on first use."""
    op = OPERATIONS.get(name)
    if op is None:
        module, _, attribute = TABLE[name].partition(":")
        op = OPERATIONS[name] = getattr(importlib.import_module(module), attribute)
    return op


def kind_of(name: str) -> str:
    return operation_named(name).kind


__all__ = [
    "OPERATIONS",
    "TABLE",
    "Context",
    "Operation",
    "kind_of",
    "operation_named",
    "run_batch",
]
