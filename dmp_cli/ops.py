"""The per-file operations, written once for every executor.

Each operation takes an item (a dict of plain values: a path, a checksum, a size) and a
context, and returns a result row (a dict of plain values with at least ``status``).
A failure of one file is a row, never an exception: an executor runs thousands of them
and one unreadable file must not cost the others. Operations know nothing of click,
Celery or boto3; whatever they need from outside comes through the context.
"""

from __future__ import annotations

import errno as errno_mod
import json
import os
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from dmp_cli.digest import FileDigest

Item = dict[str, Any]
Row = dict[str, Any]
Config = Mapping[str, Any]


@dataclass
class Context:
    """What an operation may use beyond its item: the job's settings, and resources made
    from them once per process (an object store is made after a worker forks)."""

    config: Config
    resources: dict[str, Any] = field(default_factory=dict)
    # Set where big files may be finished on a thread of their own (see FileDigest).
    spawn: Callable[[Callable[[], Row]], Future[Row]] | None = None
    # Set where someone watches bytes move as they move (the CLI's progress bar, when
    # transfers run in its own threads); called from those threads.
    on_bytes: Callable[[int], None] | None = None

    def resource(self, name: str, factory: Callable[[Config], Any]) -> Any:
        if name not in self.resources:
            self.resources[name] = factory(self.config)
        return self.resources[name]


# An operation's result: a row, or (for a big file finishing on a thread) its future.
Result = Row | Future[Row]
OpFunc = Callable[[Item, "Context"], Result]


@dataclass(frozen=True)
class Operation:
    name: str
    func: OpFunc
    kind: str  # "cpu": hashing, wants processes; "io": network, wants threads


OPERATIONS: dict[str, Operation] = {}


def operation(name: str, kind: str) -> Callable[[OpFunc], OpFunc]:
    def register(func: OpFunc) -> OpFunc:
        OPERATIONS[name] = Operation(name, func, kind)
        return func

    return register


def os_error_row(path: str, exc: OSError, **extra: Any) -> Row:
    code = exc.errno or 0
    status = "missing" if code == errno_mod.ENOENT else "unreadable"
    return {
        "path": path,
        "status": status,
        "errno": code,
        "error": exc.strerror or str(exc),
        "bytes": 0,
        **extra,
    }


def _digest(item: Item, ctx: Context, row: Callable[[str, int], Row]) -> Row | Future[Row]:
    """Hash the item's file and make its row; a big file may finish on ctx.spawn."""
    path = item["path"]
    try:
        digest = FileDigest(path)
    except OSError as exc:
        return os_error_row(path, exc, **_expected(item))

    def finish() -> Row:
        try:
            return row(*digest.finish())
        except OSError as exc:
            return os_error_row(path, exc, **_expected(item))

    if not digest.done and ctx.spawn is not None:
        return ctx.spawn(finish)
    return finish()


def _expected(item: Item) -> dict[str, Any]:
    return {"expected": item["digest"]} if "digest" in item else {}


@operation("hash", kind="cpu")
def hash_op(item: Item, ctx: Context) -> Row | Future[Row]:
    path = item["path"]
    return _digest(
        item,
        ctx,
        lambda digest, size: {"path": path, "status": "ok", "digest": digest, "bytes": size},
    )


@operation("check", kind="cpu")
def check_op(item: Item, ctx: Context) -> Row | Future[Row]:
    if item.get("bad"):
        return {"status": "misformatted", "bytes": 0}
    path, expected = item["path"], item["digest"]
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


_contexts: dict[str, Context] = {}


def context_for(config: Config) -> Context:
    """One context per distinct configuration and process, so resources are reused."""
    key = json.dumps(config, sort_keys=True, default=str)
    ctx = _contexts.get(key)
    if ctx is None:
        ctx = _contexts[key] = Context(config)
    return ctx


def run_batch(
    name: str,
    items: list[Item],
    config: Config,
    threads: bool = True,
    on_bytes: Callable[[int], None] | None = None,
) -> list[Row]:
    """Run one operation over a batch of items in this process. With ``threads``, the big
    files of a batch are hashed side by side on threads, so that a batch of a few huge
    files does not leave the other cores idle. ``on_bytes`` hears of the bytes that
    transfers move, as they move."""
    op = _operation(name).func
    ctx = context_for(config)
    if threads and len(items) > 1:
        ctx = replace(ctx, spawn=_big_file_pool().submit)
    if on_bytes is not None:
        ctx = replace(ctx, on_bytes=on_bytes)
    results = [_run_one(op, item, ctx) for item in items]
    return [_settle(result, item) for result, item in zip(results, items, strict=True)]


def _run_one(op: OpFunc, item: Item, ctx: Context) -> Result:
    try:
        return op(item, ctx)
    except Exception as exc:  # one file's surprise must not sink the batch
        return {
            "path": item.get("path"),
            "status": "error",
            "bytes": 0,
            "error": f"{type(exc).__name__}: {exc}",
        }


def _settle(result: Row | Future[Row], item: Item) -> Row:
    if isinstance(result, Future):
        try:
            row = result.result()
        except Exception as exc:
            row = {
                "path": item.get("path"),
                "status": "error",
                "bytes": 0,
                "error": f"{type(exc).__name__}: {exc}",
            }
    else:
        row = result
    if "line" in item:
        row["line"] = item["line"]
    return row


_pool: ThreadPoolExecutor | None = None
_pool_pid = 0


def _big_file_pool() -> ThreadPoolExecutor:
    """Threads for the big files of a batch, made in this process (pools don't survive fork)."""
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        _pool = ThreadPoolExecutor(max(2, os.cpu_count() or 2), "dmp-big")
        _pool_pid = os.getpid()
    return _pool


def _operation(name: str) -> Operation:
    """The operation registered under ``name``; those that live beside the stores are
    registered on first use (imported lazily: hashing needs none of them)."""
    if name not in OPERATIONS:
        try:
            import dmp_cli.transfer  # noqa: F401
        except ImportError:
            pass
    return OPERATIONS[name]


def kind_of(name: str) -> str:
    return _operation(name).kind
