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
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

from dmp_cli.errors import DmpError, UsageError
from dmp_cli.quoting import quote_name
from dmp_cli.words import human_bytes, pace, per_second

PROG = "dmp"


def _buffered_stdout() -> BinaryIO:
    """stdout with a block buffer of its own, also under PYTHONUNBUFFERED or -u."""
    if sys.stdout is None:  # closed (`>&-`), outside ``main``: writes fail, as they would
        return open(1, "wb", buffering=1 << 16, closefd=False)
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # a stand-in stdout, as in tests
        return sys.stdout.buffer
    return open(fd, "wb", buffering=1 << 16, closefd=False)


def _stderr() -> BinaryIO:
    """stderr's bytes; where stderr was closed (`2>&-`), a sink: messages go nowhere, as
    a C tool's do, and the run goes on."""
    if sys.stderr is None:
        return open(os.devnull, "wb")
    return sys.stderr.buffer


@contextmanager
def guarded_stdout() -> Iterator[None]:
    """``sys.stdout``, where click prints (--help, --version), guarded as results are: a
    write that fails is a WriteError, said as coreutils say it, not a traceback."""
    old = sys.stdout
    try:
        buffer = old.buffer if old is not None else open(1, "wb", closefd=False)  # noqa: SIM115
    except AttributeError:  # a stand-in stdout without bytes
        yield
        return
    guarded = io.TextIOWrapper(
        cast(BinaryIO, _Results(buffer)),
        encoding=getattr(old, "encoding", None) or "utf-8",
        errors=getattr(old, "errors", None) or "strict",
        write_through=True,
    )
    sys.stdout = guarded
    try:
        yield
    finally:
        sys.stdout = old
        with contextlib.suppress(DmpError, OSError, ValueError):
            guarded.flush()
        with contextlib.suppress(ValueError):
            guarded.detach()


class WriteError(DmpError):
    """Results could not be written to stdout (a full disk, a quota, stdout closed): said
    as coreutils say it, `dmp: write error: No space left on device`."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(f"write error: {reason}" if reason else "write error")


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
        if not data:  # nothing (click writes nothing to see what a stream takes)
            return 0
        return self._guarded(self.stream.write, data)

    def flush(self) -> None:
        # Nothing to flush once the stream is closed: also when this object is collected
        # after it (io's close at collection flushes, and must not fail).
        if not self.stream.closed:
            self._guarded(self.stream.flush)

    def _guarded(self, action: Callable[..., Any], *args: Any) -> Any:
        try:
            return action(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            self._give_up()
            raise WriteError(exc.strerror) from exc

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


def _command_line(argv: list[str]) -> str:
    import shlex

    return shlex.join(argv) if argv else PROG


@dataclass(frozen=True)
class Pace:
    """How long a run took, and its files and bytes (None: it read or moved none):
    the end of every summary line, and fields of the JSON summary."""

    seconds: float
    files: int
    nbytes: int | None = None

    @classmethod
    def since(cls, started: float, files: int, nbytes: int | None = None) -> Pace:
        """From ``started``, a ``time.monotonic()`` reading, to now."""
        return cls(time.monotonic() - started, files, nbytes)

    def text(self) -> str:
        """``in 2.1 s (1.5 GiB/s, 8,349 files/s)``."""
        return pace(self.seconds, self.files, self.nbytes)

    def fields(self) -> dict[str, float]:
        fields = {
            "seconds": round(self.seconds, 3),
            "files_per_second": round(per_second(self.files, self.seconds), 1),
        }
        if self.nbytes is not None:
            fields["bytes_per_second"] = int(per_second(self.nbytes, self.seconds))
        return fields


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
        self.stderr = stderr or _stderr()
        # On a terminal each line shows as it is made; into a pipe or file, output goes
        # in blocks (a write per line costs more than the hashing of a small file).
        self._tty = self.stdout.isatty()
        self.log: RunLog | None = None
        self.command: list[str] = []  # the command line, for the log's first line

    # the log -------------------------------------------------------------
    def open_log(self, path: str, origin: str = "") -> None:
        """--log-file: from now on every line, shown or not, goes to ``path`` too; a
        path that cannot be opened for appending is a usage error, before any work."""
        if self.log is not None:
            if self.log.path == path:
                return
            self.log.close(discard=True)  # DMP_LOG_FILE, and --log-file after the command
            self.log = None
        try:
            self.log = RunLog(path, self._errors_of_log)
        except OSError as exc:
            name = quote_name(path).decode("utf-8", "surrogateescape")
            raise UsageError(
                f"cannot open the log file {name}{origin}: {exc.strerror or exc}"
            ) from None
        self.log.lines(f"{PROG}: started {_command_line(self.command)}".encode())

    def close_log(self, last: str) -> None:
        """End the log with ``last``, a line saying how the run ended."""
        log, self.log = self.log, None
        if log is not None:
            log.lines(last.encode())
            log.close()

    def _errors_of_log(self, path: str, exc: OSError) -> None:
        name = quote_name(path).decode("utf-8", "surrogateescape")
        self._message(f"cannot write the log file {name}: {exc.strerror or exc}; logging stopped")

    # results -------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Results on stdout, and in the log."""
        self.stdout.write(data)
        if self._tty:
            self.stdout.flush()
        if self.log is not None:
            self.log.lines(data)

    def result(self, line: bytes, show: bool = True) -> None:
        """One file's line: on stdout unless hidden (-q, --status) or in --json mode
        (where records go instead); in the log whatever hides it."""
        if show and not self.json:
            self.write(line)
        elif self.log is not None:
            self.log.lines(line)

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
    def _message(self, *parts: str | bytes, show: bool = True) -> None:
        line = PROG.encode() + b": " + b"".join(_text(p) for p in parts)
        if show:
            self.stdout.flush()
            self.stderr.write(line + b"\n")
            self.stderr.flush()
        if self.log is not None:
            self.log.lines(line, flush=True)

    def error(self, *parts: str | bytes, show: bool = True) -> None:
        self._message(*parts, show=show)

    def file_error(self, path: str, reason: str, show: bool = True) -> None:
        """``dmp: NAME: reason``, the name quoted as coreutils quotes it."""
        self._message(quote_name(path), ": ", reason, show=show)

    def warning(self, *parts: str | bytes, show: bool = True) -> None:
        """``dmp: WARNING: ...``; in the log also when not shown (--status)."""
        self._message("WARNING: ", *parts, show=show)

    def info(self, *parts: str | bytes, show: bool = True) -> None:
        """A message for people, which -q (or ``show``) keeps from the terminal, not
        from the log."""
        self._message(*parts, show=show and not self.quiet)

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


class _NoProgress(Progress):
    active = False

    def __init__(self) -> None:  # no bar at all
        pass

    def update(self, files: int = 1, nbytes: int = 0) -> None:
        pass

    def expect(self, files: int, nbytes: int | None) -> None:
        pass

    def moved(self, nbytes: int) -> None:
        pass

    def close(self) -> None:
        pass


_NO_PROGRESS = _NoProgress()
