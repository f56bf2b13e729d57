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
from dataclasses import dataclass, field
from typing import Any

from dmp_cli.digest import digest_file

Item = dict[str, Any]
Row = dict[str, Any]
Config = Mapping[str, Any]


@dataclass
class Context:
    """What an operation may use beyond its item: the job's settings, and resources made
    from them once per process (an object store is made after a worker forks)."""

    config: Config
    resources: dict[str, Any] = field(default_factory=dict)

    def resource(self, name: str, factory: Callable[[Config], Any]) -> Any:
        if name not in self.resources:
            self.resources[name] = factory(self.config)
        return self.resources[name]


@dataclass(frozen=True)
class Operation:
    name: str
    func: Callable[[Item, Context], Row]
    kind: str  # "cpu": hashing, wants processes; "io": network, wants threads


OPERATIONS: dict[str, Operation] = {}


def operation(name: str, kind: str) -> Callable[[Callable[[Item, Context], Row]], Any]:
    def register(func: Callable[[Item, Context], Row]) -> Callable[[Item, Context], Row]:
        OPERATIONS[name] = Operation(name, func, kind)
        return func

    return register


def os_error_row(path: str, exc: OSError, **extra: Any) -> Row:
    code = exc.errno or 0
    status = "missing" if code == errno_mod.ENOENT else "unreadable"
    return {"path": path, "status": status, "errno": code,
            "error": exc.strerror or str(exc), "bytes": 0, **extra}


@operation("hash", kind="cpu")
def hash_op(item: Item, ctx: Context) -> Row:
    path = item["path"]
    try:
        digest, size = digest_file(path)
    except OSError as exc:
        return os_error_row(path, exc)
    return {"path": path, "status": "ok", "digest": digest, "bytes": size}


@operation("check", kind="cpu")
def check_op(item: Item, ctx: Context) -> Row:
    if item.get("bad"):
        return {"status": "misformatted", "bytes": 0}
    path = item["path"]
    expected = item["digest"]
    try:
        digest, size = digest_file(path)
    except OSError as exc:
        return os_error_row(path, exc, expected=expected)
    status = "ok" if digest == expected else "failed"
    return {"path": path, "status": status, "digest": digest, "expected": expected,
            "bytes": size}


_contexts: dict[str, Context] = {}


def context_for(config: Config) -> Context:
    """One context per distinct configuration and process, so resources are reused."""
    key = json.dumps(config, sort_keys=True, default=str)
    ctx = _contexts.get(key)
    if ctx is None:
        ctx = _contexts[key] = Context(config)
    return ctx


def run_batch(name: str, items: list[Item], config: Config) -> list[Row]:
    """Run one operation over a batch of items in this process."""
    _load_plugins()
    op = OPERATIONS[name].func
    ctx = context_for(config)
    rows = []
    for item in items:
        try:
            row = op(item, ctx)
        except Exception as exc:  # one file's surprise must not sink the batch
            row = {"path": item.get("path"), "status": "error", "bytes": 0,
                   "error": f"{type(exc).__name__}: {exc}"}
        if "line" in item:
            row["line"] = item["line"]
        rows.append(row)
    return rows


def _load_plugins() -> None:
    """Register the operations that live beside the stores (imported lazily: boto3 is heavy)."""
    if "head" not in OPERATIONS:
        try:
            import dmp_cli.transfer  # noqa: F401
        except ImportError:
            pass


def kind_of(name: str) -> str:
    _load_plugins()
    return OPERATIONS[name].kind
