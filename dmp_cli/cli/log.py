"""--log-file: the run log, every line dmp prints and those it keeps from the terminal."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable


class RunLog:
    """--log-file: every line dmp prints, and those that -q, --status or --json keep
    from the terminal, each after its time (ISO 8601, UTC, to the millisecond) and
    dmp's process id, appended to a file. Written in whole lines, so that runs sharing
    a log interleave line by line; flushed at each message, and by a thread of its own
    within a second of any other line, so that a run killed, or stalled on a huge file,
    leaves in the log what it had done."""

    FLUSH_S = 1.0

    def __init__(self, path: str, on_error: Callable[[str, OSError], None]) -> None:
        self.path = path
        self._fd: int | None = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666
        )
        self._on_error = on_error
        self._tag = f" [{os.getpid()}] ".encode()
        self._second, self._stamp = -1, b""
        self._millis, self._prefixed = -1, b""
        self._pending: list[bytes] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_often, name="dmp-log", daemon=True)
        self._flusher.start()

    def lines(self, data: bytes, flush: bool = False) -> None:
        """``data``, one or more lines, each stamped with the time now."""
        failed = None
        with self._lock:
            if self._fd is None:
                return
            prefix = self._prefix()
            text = data.rstrip(b"\n")
            if b"\n" in text:
                self._pending.extend(prefix + line + b"\n" for line in text.split(b"\n"))
            else:  # one line: the per-file case, kept cheap
                self._pending.append(prefix + text + b"\n")
            if flush:
                failed = self._flush()
        if failed:
            self._on_error(self.path, failed)

    def _prefix(self) -> bytes:
        """The time now and the process id; formatted once a millisecond at most."""
        now = time.time()
        millis = int(now * 1000)
        if millis != self._millis:
            self._millis = millis
            second, milli = divmod(millis, 1000)
            if second != self._second:
                self._second = second
                self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
            self._prefixed = b"%s.%03dZ%s" % (self._stamp, milli, self._tag)
        return self._prefixed

    def _flush(self) -> OSError | None:
        """Write what is pending (with the lock held); a failure ends the log, and is
        returned for the caller to tell once the lock is released."""
        if not self._pending or self._fd is None:
            return None
        data = b"".join(self._pending)
        self._pending.clear()
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as exc:
            os.close(self._fd)
            self._fd = None
            return exc
        return None

    def _flush_often(self) -> None:
        while not self._closed.wait(self.FLUSH_S):
            with self._lock:
                failed = self._flush()
            if failed:
                self._on_error(self.path, failed)

    def close(self, discard: bool = False) -> None:
        """Write what is pending, unless ``discard``, and close the file."""
        self._closed.set()
        self._flusher.join()
        with self._lock:
            if discard:
                self._pending.clear()
            failed = self._flush()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        if failed:
            self._on_error(self.path, failed)
