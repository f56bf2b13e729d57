"""Hashing files with a reused buffer (a fresh buffer per read costs about 4x on big files)."""

from __future__ import annotations

import hashlib
import os
import threading
from typing import BinaryIO

CHUNK = 1 << 20
_local = threading.local()


def _buffer() -> memoryview:
    view: memoryview | None = getattr(_local, "view", None)
    if view is None:
        view = _local.view = memoryview(bytearray(CHUNK))
    return view


def new_hasher() -> hashlib._Hash:
    return hashlib.sha256()


class FileDigest:
    """A file being hashed. Opening reads the first chunk, so a small file is done at once
    and a big one (``done`` still False) can be finished on another thread: hashlib
    releases the GIL for big updates, so threads suit big files, not small ones."""

    __slots__ = ("done", "fd", "hasher", "size")

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.hasher = hashlib.sha256()
        self.size = 0
        self.done = False
        try:
            self._read(once=True)
        except BaseException:
            self.close()
            raise

    def _read(self, once: bool = False) -> None:
        view = _buffer()
        while not self.done:
            n = os.readv(self.fd, [view])
            if n:
                self.hasher.update(view[:n])
                self.size += n
                if once and n == CHUNK:
                    return
                continue
            self.close()

    def finish(self) -> tuple[str, int]:
        """Read the rest: (hex digest, size). Raises OSError as read would."""
        try:
            self._read()
        finally:
            self.close()
        return self.hasher.hexdigest(), self.size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.done = True


def small_digest(path: str) -> tuple[str, int] | None:
    """Hash a file of less than one chunk in one read: (hex digest, size); None, nothing
    hashed, for a bigger file (``FileDigest`` hashes that, maybe on a thread of its own).
    Raises OSError as open/read would."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        view = _buffer()
        size = os.readv(fd, [view])
        if size == CHUNK:
            return None
        digest = hashlib.sha256(view[:size]).hexdigest()
        if os.readv(fd, [view]):  # not at its end after all: it grew meanwhile
            return None
        return digest, size
    finally:
        os.close(fd)


def digest_fd(fd: int) -> tuple[str, int]:
    """Hash what is left to read on an open descriptor: (hex digest, bytes read)."""
    hasher = hashlib.sha256()
    view = _buffer()
    total = 0
    while n := os.readv(fd, [view]):
        hasher.update(view[:n])
        total += n
    return hasher.hexdigest(), total


def digest_stream(stream: BinaryIO) -> tuple[str, int]:
    """Hash what is left to read on a stream (stdin): (hex digest, bytes read)."""
    hasher = hashlib.sha256()
    total = 0
    while data := stream.read(CHUNK):
        hasher.update(data)
        total += len(data)
    return hasher.hexdigest(), total


def digest_file(path: str) -> tuple[str, int]:
    """Hash one file: (hex digest, size). Raises OSError as open/read would."""
    return FileDigest(path).finish()
