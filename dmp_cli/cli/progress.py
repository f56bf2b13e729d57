"""Progress on stderr: a bar where stderr is a terminal (``Bar``), else nothing
(``NO_PROGRESS``); a command speaks to either as a ``Progress``."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Protocol

from dmp_cli.words import human_bytes


class Progress(Protocol):
    """What a command tells of its progress as it goes; ``active`` says whether anyone
    is shown it (a run need not work out its totals for nobody)."""

    @property
    def active(self) -> bool: ...

    def update(self, files: int = 1, nbytes: int = 0) -> None:
        """Files done, with the bytes they read or moved."""

    def expect(self, files: int, nbytes: int | None) -> None:
        """The totals, now that the input has been read to its end (``nbytes`` None:
        not every size is known)."""

    def moved(self, nbytes: int) -> None:
        """Bytes as they move, from any thread."""

    def close(self) -> None: ...


class Bar:
    """A progress bar on stderr, in one of two forms. Where the bytes to do are known, it
    counts bytes (so its rate is bytes/s and its ETA is by bytes), files alongside;
    else it counts files (its ETA by files, once their number is known), with the bytes
    done and their rate alongside. Bytes come with each file done (``update``), and,
    where transfers run in this process, as they move (``moved``, from any thread), so
    that one huge file does not look stuck. ``expect`` gives the totals once the input
    has been read to its end (a bar for files becomes one for bytes if their sizes are
    all known). ``initial`` (files, bytes) were done before the bar began: counted, not
    in the rate."""

    REDRAW_S = 0.5  # bytes that move redraw the bar at most this often
    active = True

    def __init__(
        self,
        description: str,
        total: int | None,
        unit: str,
        initial: tuple[int, int] = (0, 0),
        bytes_total: int | None = None,
    ) -> None:
        self._description, self._unit = description, unit
        self._total = total
        self._files, self._bytes = initial  # done so far, with the files' bytes
        self._initial = initial
        self._start = time.monotonic()
        self._moved = 0  # as they moved, counted by ``moved``
        self._lock = threading.Lock()
        self._drawn = 0.0
        self._by_bytes = bytes_total is not None
        self._bar = self._open(bytes_total)

    def _open(self, bytes_total: int | None) -> Any:
        from tqdm import tqdm

        common: dict[str, Any] = {
            "desc": self._description,
            "file": sys.stderr,
            "dynamic_ncols": True,
            "leave": False,
            "smoothing": 0.1,
        }
        if self._by_bytes:
            bar = tqdm(
                total=bytes_total,
                initial=self._done_bytes(),
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                **common,
            )
            bar.set_postfix_str(self._files_text(), refresh=False)
        else:
            bar = tqdm(total=self._total, initial=self._files, unit=self._unit, **common)
        return bar

    def update(self, files: int = 1, nbytes: int = 0) -> None:
        self._bytes += nbytes
        self._files += files
        if self._by_bytes:
            self._bar.set_postfix_str(self._files_text(), refresh=False)
            with self._lock:
                self._advance()
            return
        self._bar.update(files)
        if nbytes and (self._bar.n % 64 == 0 or files > 1):
            self._bar.set_postfix_str(self._bytes_text(), refresh=False)

    def expect(self, files: int, nbytes: int | None) -> None:
        """The totals, now that the input has been read to its end (``nbytes`` None:
        not every size is known). Called from the thread that runs the run."""
        self._total = files
        if nbytes is None:
            if not self._by_bytes:
                self._bar.total = files
                self._bar.refresh()
            return
        if self._by_bytes:
            self._bar.total = nbytes
            self._bar.set_postfix_str(self._files_text())
            return
        # Counted files so far: count bytes from here, with the same start, so the
        # elapsed time stays the run's and the ETA is by bytes (with the lock: bytes
        # that move advance the bar from other threads).
        with self._lock:
            started = self._bar.start_t
            self._bar.close()
            self._by_bytes = True
            self._bar = self._open(nbytes)
            self._bar.start_t = started

    def _files_text(self) -> str:
        total = self._total if self._total is not None else "?"
        return f"{self._files}/{total} files"

    def _bytes_text(self) -> str:
        """The bytes done and their rate since the bar began."""
        initial = self._initial[1]
        done = self._done_bytes()
        seconds = max(time.monotonic() - self._start, 1e-3)
        return f"{human_bytes(done)}, {human_bytes((done - initial) / seconds)}/s"

    def moved(self, nbytes: int) -> None:
        with self._lock:
            self._moved += nbytes
            now = time.monotonic()
            if now - self._drawn < self.REDRAW_S:
                return
            self._drawn = now
            if self._by_bytes:
                self._advance(redraw=True)  # now: no file may be done for a while
                return
        self._bar.set_postfix_str(self._bytes_text())  # and redraw: no file may be done yet

    def _done_bytes(self) -> int:
        """The bytes of the files done or, if more, moved so far."""
        return max(self._bytes, self._initial[1] + self._moved)

    def _advance(self, redraw: bool = False) -> None:
        """A bar of bytes to the bytes done (with the lock)."""
        done = self._done_bytes()
        if done > self._bar.n:
            self._bar.update(done - self._bar.n)
            if redraw:
                self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


class _NoProgress:
    """No progress shown: stderr is not a terminal, or -q."""

    active = False

    def update(self, files: int = 1, nbytes: int = 0) -> None:
        pass

    def expect(self, files: int, nbytes: int | None) -> None:
        pass

    def moved(self, nbytes: int) -> None:
        pass

    def close(self) -> None:
        pass


NO_PROGRESS: Progress = _NoProgress()


def count_lines(path: str) -> int | None:
    """Lines in the manifest at ``path``, for a progress bar; None for stdin or if it
    cannot be read (the reading proper says why)."""
    if path == "-":
        return None
    try:
        with open(path, "rb") as stream:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: stream.read(1 << 20), b""))
    except OSError:
        return None
