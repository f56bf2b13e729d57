"""Standard streams that were closed when dmp started (`<&-`, `>&-`, `2>&-`).

Python leaves ``sys.stdin`` (or ``sys.stdout``, ``sys.stderr``) None for a descriptor
that was closed, and the next file dmp opens would take its number: a manifest read as
if it were stdin, or results written into a file opened for something else. ``guard``
puts ``/dev/null`` there instead, opened the wrong way round (stdin for writing, stdout
and stderr for reading), so that the descriptor stays taken and every read or write of
it still fails with EBADF, as it did closed: dmp then says what sha256sum says
(`write error: Bad file descriptor`). ``stdin_closed`` is how a run asks whether it may
read stdin; one that asked of a closed stdin ends as sha256sum does, with
`standard input: Bad file descriptor`.

Results go to stdout through ``ResultsStream``, which turns a write that fails into a
``WriteError``, said as coreutils say it (``guarded_stdout`` puts it under
``sys.stdout`` too, where click prints).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, cast

from dmp_cli.errors import DmpError

STDIN_CLOSED_MESSAGE = f"standard input: {os.strerror(errno.EBADF)}"

_wanted_closed_stdin = False


def _is_closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError as exc:
        return exc.errno == errno.EBADF
    return False


def guard() -> None:
    """Take each standard descriptor that is closed with a ``/dev/null`` that cannot be
    used in its direction (see the module's description)."""
    for fd, flags in ((0, os.O_WRONLY), (1, os.O_RDONLY), (2, os.O_RDONLY)):
        if not _is_closed(fd):
            continue
        null = os.open(os.devnull, flags)
        if null != fd:
            os.dup2(null, fd, inheritable=True)
            os.close(null)
        else:
            os.set_inheritable(fd, True)


def stdin_closed() -> bool:
    """Whether stdin was closed when dmp started; asked by a run about to read it, which
    makes the run end with sha256sum's `standard input: Bad file descriptor`."""
    global _wanted_closed_stdin
    if sys.stdin is None:
        _wanted_closed_stdin = True
        return True
    return False


def take_closed_stdin_wanted() -> bool:
    """Whether this run asked for a closed stdin (``stdin_closed``); asked once, at the end."""
    global _wanted_closed_stdin
    wanted, _wanted_closed_stdin = _wanted_closed_stdin, False
    return wanted


# ---------------------------------------------------------------- stdout for results


def buffered_stdout() -> BinaryIO:
    """stdout with a block buffer of its own, also under PYTHONUNBUFFERED or -u."""
    if sys.stdout is None:  # closed (`>&-`), outside ``main``: writes fail, as they would
        return open(1, "wb", buffering=1 << 16, closefd=False)
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # a stand-in stdout, as in tests
        return sys.stdout.buffer
    return open(fd, "wb", buffering=1 << 16, closefd=False)


def stderr_bytes() -> BinaryIO:
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
        cast(BinaryIO, ResultsStream(buffer)),
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


class ResultsStream(io.RawIOBase):
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
        try:  # self._guarded, inline: this runs once a file
            return self.stream.write(data)
        except BrokenPipeError:
            raise
        except OSError as exc:
            self._give_up()
            raise WriteError(exc.strerror) from exc

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
