"""What an upload reads and hears: the hashing reader of a multipart upload, the tokens
of unanswered uploads, a big file's turn, s3transfer's subscribers, and the error of a
file that changed."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

from s3transfer.subscribers import BaseSubscriber

from dmp_cli.errors import IntegrityError
from dmp_cli.store import OnBytes


class HashingReader:
    """A read-only, non-seekable view of ``size`` bytes of a file that hashes what is read
    and, at the end, raises IntegrityError if that is not the expected content."""

    def __init__(
        self, source: BinaryIO, size: int, digest: str, on_end: Callable[[], None] | None = None
    ) -> None:
        self._source = source
        self._left = size
        self._digest = digest
        self._hasher = hashlib.sha256()
        self._on_end = on_end

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, amount: int = -1) -> bytes:
        want = self._left if amount is None or amount < 0 else min(amount, self._left)
        data = self._source.read(want) if want else b""
        self._hasher.update(data)
        self._left -= len(data)
        if not data or self._left == 0:
            self._verify(short=want > len(data))
        return data

    def _verify(self, short: bool) -> None:
        if short:
            raise IntegrityError(
                "changed since the manifest was made (it shrank while being read); not stored"
            )
        got = self._hasher.hexdigest()
        if got != self._digest:
            raise changed(got)
        if self._on_end:
            self._on_end()


class Tokens:
    """A thread-safe map of keys to tokens, bounded: past ``bound`` the oldest are
    forgotten."""

    def __init__(self, bound: int = 4096) -> None:
        self._tokens: dict[str, str] = {}
        self._bound = bound
        self._lock = threading.Lock()

    def add(self, key: str, token: str) -> None:
        with self._lock:
            self._tokens[key] = token
            if len(self._tokens) > self._bound:
                del self._tokens[next(iter(self._tokens))]

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._tokens.get(key)

    def pop(self, key: str) -> None:
        with self._lock:
            self._tokens.pop(key, None)


class Turn:
    """A turn at a semaphore, given back once: early by ``release``, else on exit."""

    def __init__(self, semaphore: threading.BoundedSemaphore) -> None:
        self._semaphore = semaphore
        self._held = False
        self._mutex = threading.Lock()

    def __enter__(self) -> Turn:
        self._semaphore.acquire()
        self._held = True
        return self

    def release(self) -> None:
        with self._mutex:
            if self._held:
                self._held = False
                self._semaphore.release()

    def __exit__(self, *exc: object) -> None:
        self.release()


def subscribers(size: int | None, on_bytes: OnBytes | None, etag: str | None = None) -> list[Any]:
    """Only the callbacks asked for: s3transfer calls an ``on_progress`` for every 8 KiB
    block sent, which costs measurable CPU on big files when nobody listens. A download
    given its object's size and ETag (from dmp's own HEAD) sends no HEAD of its own."""
    chosen: list[Any] = []
    if size is not None:
        chosen.append(_ProvideSize(size, etag))
    if on_bytes is not None:
        chosen.append(_Progress(on_bytes))
    return chosen


class _ProvideSize:
    def __init__(self, size: int, etag: str | None = None) -> None:
        self._size = size
        self._etag = etag

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        future.meta.provide_transfer_size(self._size)
        if self._etag is not None:  # then the GETs also carry If-Match: the object read
            future.meta.provide_object_etag(self._etag)


class _Progress(BaseSubscriber):
    def __init__(self, on_bytes: OnBytes) -> None:
        self._on_bytes = on_bytes

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self._on_bytes(bytes_transferred)


def changed(got: str) -> IntegrityError:
    return IntegrityError(f"changed since the manifest was made (sha256 now {got}); not stored")
