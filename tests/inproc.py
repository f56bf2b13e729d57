"""The `dmp` command line run inside the test process, as a subprocess would see it.

``run_in_process`` calls ``dmp_cli.cli.main`` with the test's arguments, working
directory, whole environment, locale and stdin, and captures what it writes to file
descriptors 1 and 2 (dmp's results go to fd 1 through a buffered file of its own, its
messages through ``sys.stderr``, and its hashing pool's children inherit both). It
gives back the ``CompletedProcess`` a subprocess would, ``SystemExit`` as the status.

It saves a Python start and the imports of click, boto3 and friends per call. What it
cannot do is die of a signal, which is how dmp ends on ^C and on a closed stdout: a test
of that runs dmp as a real process (``run_dmp(..., subprocess=True)``). A run that
would end so here raises ``EndedBySignal`` instead of taking the test process with it.
A run that changes the working directory, the environment, the locale, a signal
handler or the Celery app's broker raises ``LeakedState`` (the runner puts back what it
set itself, which would hide such a change): such a test needs a process of its own.
"""

from __future__ import annotations

import contextlib
import importlib
import locale
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from unittest import mock

MAIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dmp_cli")
WATCHED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGHUP, signal.SIGCHLD)


class EndedBySignal(AssertionError):
    """The run would have ended killed by a signal, which only a real process can."""


class LeakedState(AssertionError):
    """The run changed process-wide state that outlives it; a subprocess would not."""


class _Timeout(BaseException):  # not an Exception: dmp's last-resort handler must not eat it
    pass


def run_in_process(
    args: list[str | bytes],
    *,
    cwd: str | os.PathLike[str] | None,
    env: Mapping[str, str],
    input: bytes | None,
    timeout: float,
) -> subprocess.CompletedProcess[bytes]:
    from dmp_cli import cli

    argv = [os.fsdecode(arg) for arg in args]
    with (
        _environment(env),
        _working_directory(cwd),
        _argv([os.path.join(MAIN, "__main__.py"), *argv]),
        _standard_streams(input) as captured,
        _deadline(timeout, argv),
        _no_death_by_signal(cli),
    ):
        before = _process_state()
        returncode = _status_of(cli.main, argv)
        after = _process_state()
    if after != before:  # the runner has put it back; it would mislead the next run
        changed = [name for name in before if before[name] != after[name]]
        raise LeakedState(
            f"dmp {' '.join(argv)} changed {', '.join(changed)} of the test process: "
            "run it with run_dmp(..., subprocess=True)"
        )
    return subprocess.CompletedProcess(["dmp", *argv], returncode, captured.stdout, captured.stderr)


def _status_of(main: Any, argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)  # as the interpreter does with sys.exit("text")
        return 1
    return 0


def _no_death_by_signal(cli: Any) -> contextlib.AbstractContextManager[Any]:
    """dmp ends killed by SIGINT or SIGPIPE through ``_die_of``; here that is an error."""

    def ended_by(sig: signal.Signals) -> None:
        raise EndedBySignal(
            f"dmp would end killed by {sig.name}: run it with run_dmp(..., subprocess=True)"
        )

    if not hasattr(cli, "_die_of"):
        return contextlib.nullcontext()
    return mock.patch.object(cli, "_die_of", ended_by)


def _process_state() -> dict[str, object]:
    """What a run must leave as it found it: a subprocess would take it along when it ends."""
    state: dict[str, object] = {
        "the working directory": os.getcwd(),
        "the environment": dict(os.environ),
        "the locale": locale.setlocale(locale.LC_CTYPE),
        "signal handlers": [signal.getsignal(sig) for sig in WATCHED_SIGNALS],
    }
    # The workers' app, made from the environment it is first imported in: imported here,
    # so that a run can only change it, not make it.
    conf = importlib.import_module("dmp_tasks.app").app.conf
    state["the Celery app's broker"] = (conf.broker_url, conf.result_backend)
    return state


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    """Exactly ``env``, and the locale a process started with it would have."""
    saved = dict(os.environ)
    saved_ctype = locale.setlocale(locale.LC_CTYPE)
    os.environ.clear()
    os.environ.update(env)
    try:
        locale.setlocale(locale.LC_CTYPE, "")  # as the interpreter does at start-up
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        locale.setlocale(locale.LC_CTYPE, saved_ctype)


@contextlib.contextmanager
def _working_directory(cwd: str | os.PathLike[str] | None) -> Iterator[None]:
    saved = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved)


@contextlib.contextmanager
def _argv(argv: list[str]) -> Iterator[None]:
    saved = sys.argv
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = saved


@dataclass
class _Captured:
    stdout: bytes = b""
    stderr: bytes = b""


@contextlib.contextmanager
def _standard_streams(input: bytes | None) -> Iterator[_Captured]:
    """Files on fds 0, 1 and 2, and sys.stdin/stdout/stderr made on those fds as Python
    makes them at start-up (stdout block-buffered, stderr line-buffered)."""
    with (
        tempfile.TemporaryFile() as stdin,
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
    ):
        if input is not None:  # a file, not a pipe: the hashing pool forks, keeping fds
            stdin.write(input)
            stdin.seek(0)
        source = stdin if input is not None else open(os.devnull, "rb")  # noqa: SIM115
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        captured = _Captured()
        saved_fds = {fd: os.dup(fd) for fd in (0, 1, 2)}
        saved_streams = sys.stdin, sys.stdout, sys.stderr
        try:
            for fd, target in ((0, source), (1, out), (2, err)):
                os.dup2(target.fileno(), fd)
            sys.stdin = open(0, encoding="utf-8", errors="surrogateescape", closefd=False)  # noqa: SIM115
            sys.stdout = open(1, "w", encoding="utf-8", errors="surrogateescape", closefd=False)  # noqa: SIM115
            sys.stderr = open(  # noqa: SIM115
                2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False
            )
            yield captured
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
                stream.close()
            sys.stdin.close()
            sys.stdin, sys.stdout, sys.stderr = saved_streams
            for fd, saved in saved_fds.items():
                os.dup2(saved, fd)
                os.close(saved)
            if source is not stdin:
                source.close()
            out.seek(0)
            err.seek(0)
            captured.stdout, captured.stderr = out.read(), err.read()


@contextlib.contextmanager
def _deadline(timeout: float, argv: list[str]) -> Iterator[None]:
    """``timeout`` as subprocess.run has it: a run that takes longer fails the test."""

    def expire(signum: int, frame: object) -> None:
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    except _Timeout:
        raise subprocess.TimeoutExpired(["dmp", *argv], timeout) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
