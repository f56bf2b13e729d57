"""Everything dmp prints goes through here: results, JSON Lines, messages, progress."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, cast

from dmp_cli.errors import DmpError
from dmp_cli.quoting import quote_name
from dmp_cli.words import human_bytes

PROG = "dmp"


def _buffered_stdout() -> BinaryIO:
    """stdout with a block buffer of its own, also under PYTHONUNBUFFERED or -u."""
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # a stand-in stdout, as in tests
        return sys.stdout.buffer
    return open(fd, "wb", buffering=1 << 16, closefd=False)


class WriteError(DmpError):
    """Results could not be written to stdout (a full disk, a quota): said as coreutils
    say it, `dmp: write error`."""

    def __init__(self) -> None:
        super().__init__("write error")


class _Results(io.RawIOBase):
    """stdout for results: a write that fails (other than a reader gone, which ends dmp
    by SIGPIPE) is a WriteError, and what is left unwritten goes nowhere, so that the
    flush at exit does not fail again."""

    def __init__(self, stream: BinaryIO) -> None:
        super().__init__()
        self.stream = stream

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self._guarded(self.stream.write, data)

    def flush(self) -> None:
        self._guarded(self.stream.flush)

    def _guarded(self, action: Callable[..., Any], *args: Any) -> Any:
        try:
            return action(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            self._give_up()
            raise WriteError from exc

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def _give_up(self) -> None:
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self.stream.fileno())
            os.close(null)


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8, read as lone surrogates
        return False
    return True


def _text(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else os.fsencode(value)


class Output:
    """Where results and messages go: stdout for results, stderr for messages and bars."""

    def __init__(
        self,
        json_mode: bool = False,
        quiet: bool = False,
        verbose: int = 0,
        stdout: BinaryIO | None = None,
        stderr: BinaryIO | None = None,
    ) -> None:
        self.json = json_mode
        self.quiet = quiet
        self.verbose = verbose
        self.stdout: BinaryIO = cast(BinaryIO, _Results(stdout or _buffered_stdout()))
        self.stderr = stderr or sys.stderr.buffer
        # On a terminal each line shows as it is made; into a pipe or file, output goes
        # in blocks (a write per line costs more than the hashing of a small file).
        self._tty = self.stdout.isatty()

    # results -------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self.stdout.write(data)
        if self._tty:
            self.stdout.flush()

    def record(self, kind: str, **fields: Any) -> None:
        """One JSON Lines object on stdout (only in --json mode).

        A path that is not UTF-8 is written as Python reads it back (``\\udcff`` for the
        byte 0xff), which other JSON readers turn into U+FFFD; ``path_b64`` beside it
        then holds its bytes, base64-encoded, so that no reader loses the name.
        """
        if self.json:
            obj = {"type": kind, **fields}
            path = fields.get("path")
            if isinstance(path, str) and not path.isascii() and not _is_utf8(path):
                obj["path_b64"] = base64.b64encode(os.fsencode(path)).decode()
            self.stdout.write(json.dumps(obj, ensure_ascii=True).encode() + b"\n")

    def flush(self) -> None:
        self.stdout.flush()
        self.stderr.flush()

    # messages ------------------------------------------------------------
    def _message(self, *parts: str | bytes) -> None:
        self.stdout.flush()
        self.stderr.write(PROG.encode() + b": " + b"".join(_text(p) for p in parts) + b"\n")
        self.stderr.flush()

    def error(self, *parts: str | bytes) -> None:
        self._message(*parts)

    def file_error(self, path: str, reason: str) -> None:
        """``dmp: NAME: reason``, the name quoted as coreutils quotes it."""
        self._message(quote_name(path), ": ", reason)

    def warning(self, *parts: str | bytes) -> None:
        self._message("WARNING: ", *parts)

    def info(self, *parts: str | bytes) -> None:
        if not self.quiet:
            self._message(*parts)

    def debug(self, *parts: str | bytes) -> None:
        if self.verbose:
            self._message(*parts)

    # progress ------------------------------------------------------------
    def wants_progress(self) -> bool:
        return not self.quiet and self.stderr.isatty()

    @contextmanager
    def progress(
        self,
        description: str,
        total: int | None = None,
        unit: str = " files",
        initial: tuple[int, int] = (0, 0),
        bytes_total: int | None = None,
    ) -> Iterator[Progress]:
        bar = (
            Progress(description, total, unit, initial, bytes_total)
            if self.wants_progress()
            else None
        )
        try:
            yield bar or _NO_PROGRESS
        finally:
            if bar is not None:
                bar.close()


class Progress:
    """A progress bar on stderr: files counted, bytes and bytes/s shown alongside; or,
    with ``bytes_total``, bytes counted (so its ETA is by bytes), files alongside. Bytes
    come with each file done (``update``), and, where transfers run in this process, as
    they move (``moved``, from any thread), so that one huge file does not look stuck.
    ``initial`` (files, bytes) were done before the bar began: counted, not in the rate."""

    REDRAW_S = 0.5  # bytes that move redraw the bar at most this often

    def __init__(
        self,
        description: str,
        total: int | None,
        unit: str,
        initial: tuple[int, int] = (0, 0),
        bytes_total: int | None = None,
    ) -> None:
        from tqdm import tqdm

        common: dict[str, Any] = {
            "desc": description,
            "file": sys.stderr,
            "dynamic_ncols": True,
            "leave": False,
            "smoothing": 0.1,
        }
        self._by_bytes = bytes_total is not None
        if self._by_bytes:
            self._bar = tqdm(
                total=bytes_total,
                initial=initial[1],
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                **common,
            )
        else:
            self._bar = tqdm(total=total, initial=initial[0], unit=unit, **common)
        self._total = total
        self._files, self._bytes = initial  # done so far, with the files' bytes
        self._initial_bytes = initial[1]
        self._start = time.monotonic()
        self._moved = 0  # as they moved, counted by ``moved``
        self._lock = threading.Lock()
        self._drawn = 0.0

    def update(self, files: int = 1, nbytes: int = 0) -> None:
        self._bytes += nbytes
        self._files += files
        if self._by_bytes:
            total = self._total if self._total is not None else "?"
            self._bar.set_postfix_str(f"{self._files}/{total} files", refresh=False)
            self._bar.update(nbytes)
            return
        self._bar.update(files)
        if nbytes and (self._bar.n % 64 == 0 or files > 1):
            self._bar.set_postfix_str(self._bytes_text(), refresh=False)

    def _bytes_text(self) -> str:
        """The bytes done and their rate since the bar began."""
        done = max(self._bytes, self._initial_bytes + self._moved)
        seconds = max(time.monotonic() - self._start, 1e-3)
        return f"{human_bytes(done)}, {human_bytes((done - self._initial_bytes) / seconds)}/s"

    def moved(self, nbytes: int) -> None:
        with self._lock:
            self._moved += nbytes
            now = time.monotonic()
            if now - self._drawn < self.REDRAW_S:
                return
            self._drawn = now
        if self._by_bytes:
            return  # the bar itself counts bytes, as each file is done
        self._bar.set_postfix_str(self._bytes_text())  # and redraw: no file may be done yet

    def close(self) -> None:
        self._bar.close()


class _NoProgress(Progress):
    def __init__(self) -> None:  # no bar at all
        pass

    def update(self, files: int = 1, nbytes: int = 0) -> None:
        pass

    def moved(self, nbytes: int) -> None:
        pass

    def close(self) -> None:
        pass


_NO_PROGRESS = _NoProgress()
