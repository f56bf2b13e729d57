"""Run the real `dmp` (a command or a worker) with an exception injected into one
operation or one store method, for one file.

    DMP_TEST_FAULTS=plan.json python -m tests.integration.faults manifest --archive ...
    DMP_TEST_FAULTS=plan.json python -m tests.integration.faults worker -c 1 ...

The plan file says where to raise and for which file: ``{"target": "store.put_file",
"victim": "NAME", "error": "KeyError"}``; it is read at each call, so that one worker
serves many cases. Targets: ``op.NAME`` (the per-file operation NAME raises for the item
whose path ends in the victim, or, with ``"delay": SECONDS``, waits that long first
instead), ``store.METHOD`` (the file:// and s3:// stores raise
when an argument names the victim's path or its content's key) and ``s3.parts`` (a
multipart upload of the victim's content waits ``delay`` seconds once its first part is
read, so that the part is sent and the upload left incomplete, for a test to kill).
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import os
import sys
import time
from typing import Any

from dmp_cli.layout import digest_key

STORE_METHODS = ("head", "has", "put_file", "get_file", "copy")
OPERATIONS = ("hash", "check", "head", "upload", "download")


def error(name: str) -> BaseException:
    """An exception of a kind a store, s3transfer or the filesystem might raise, or not."""
    if name == "KeyError":
        return KeyError("digest")
    if name == "EIO":
        return OSError(errno.EIO, "Input/output error (injected)")
    if name == "ESTALE":
        return OSError(errno.ESTALE, "Stale file handle (injected)")
    if name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES"):  # a target that takes no more
        code = getattr(errno, name)
        return OSError(code, f"{os.strerror(code)} (injected)")
    if name == "ConnectionResetError":
        return ConnectionResetError(errno.ECONNRESET, "Connection reset by peer (injected)")
    return RuntimeError("injected fault")


def _plan() -> dict[str, str]:
    path = os.environ.get("DMP_TEST_FAULTS")
    if not path:
        return {}
    try:
        with open(path) as stream:
            plan: dict[str, str] = json.load(stream)
            return plan
    except (OSError, ValueError):
        return {}


def _strikes(plan: dict[str, str]) -> bool:
    """Whether to raise now: always, or (``times``) only the first so many times, counted
    in a file beside the plan, across processes."""
    times = int(plan.get("times") or 0)
    if not times:
        return True
    count = os.environ["DMP_TEST_FAULTS"].removesuffix(".json") + ".count"
    try:
        with open(count) as stream:
            done = len(stream.read())
    except FileNotFoundError:
        done = 0
    if done >= times:
        return False
    with open(count, "a") as stream:
        stream.write("x")
    return True


def _names(plan: dict[str, str]) -> list[str]:
    """What an argument holds when it is the victim: its path, or its content's key."""
    names = [plan["victim"]]
    if plan.get("digest"):
        names += [plan["digest"], digest_key(plan["digest"])]
    return names


def _store_method(owner: type, method: str) -> None:
    original = getattr(owner, method)

    @functools.wraps(original)
    def faulty(self: Any, *args: Any, **kwargs: Any) -> Any:
        plan = _plan()
        if plan.get("target") == f"store.{method}":
            names = _names(plan)
            named = any(isinstance(a, str) and any(a.endswith(n) for n in names) for a in args)
            if named and _strikes(plan):
                raise error(plan.get("error", ""))
        return original(self, *args, **kwargs)

    setattr(owner, method, faulty)


def _operation(name: str) -> None:
    from dmp_cli.ops import OPERATIONS as REGISTERED
    from dmp_cli.ops import operation_named

    op = operation_named(name)
    original = op.func

    def faulty(item: Any, ctx: Any) -> Any:
        plan = _plan()
        victim = str(item.get("path", "")).endswith(plan.get("victim", "\0"))
        if plan.get("target") == f"op.{name}" and victim:
            if plan.get("delay"):  # a slow filesystem or store: every victim waits
                time.sleep(float(plan["delay"]))
            elif _strikes(plan):
                raise error(plan.get("error", ""))
        return original(item, ctx)

    REGISTERED[name] = dataclasses.replace(op, func=faulty)


class _Stalling:
    """A source whose reads wait ``delay`` seconds once ``after`` bytes are read."""

    def __init__(self, source: Any, after: int, delay: float) -> None:
        self._source = source
        self._after = after
        self._delay = delay

    def read(self, amount: int = -1) -> bytes:
        if self._delay and self._source.tell() >= self._after:
            time.sleep(self._delay)
            self._delay = 0
        data: bytes = self._source.read(amount)
        return data


def _stalled_parts(owner: Any) -> None:
    original = owner._put_multipart

    @functools.wraps(original)
    def stalled(self: Any, key: str, source: Any, *args: Any) -> Any:
        plan = _plan()
        named = key.endswith(tuple(_names(plan))) if plan.get("target") == "s3.parts" else False
        if named and _strikes(plan):
            chunk = self.config.multipart_chunksize
            source = _Stalling(source, chunk, float(plan.get("delay") or 0))
        return original(self, key, source, *args)

    owner._put_multipart = stalled


def _checked_the_operation_way() -> None:
    """--check hashes a small file that matches without the check operation: the victim
    of an ``op.check`` plan goes the operation's way, where its fault is raised."""
    import dmp_cli.checking as checking

    original = checking.small_digest

    def small_digest(path: str) -> tuple[str, int] | None:
        plan = _plan()
        if plan.get("target") == "op.check" and path.endswith(plan.get("victim", "\0")):
            return None
        return original(path)

    checking.small_digest = small_digest  # type: ignore[assignment]


def install() -> None:
    from dmp_cli.store.local import FileStore
    from dmp_cli.store.s3 import S3Store

    for owner in (FileStore, S3Store):
        for method in STORE_METHODS:
            _store_method(owner, method)
    _stalled_parts(S3Store)
    for name in OPERATIONS:
        _operation(name)
    _checked_the_operation_way()


if __name__ == "__main__":
    install()
    from dmp_cli.cli import main

    main(sys.argv[1:])
