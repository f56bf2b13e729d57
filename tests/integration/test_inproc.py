"""The in-process runner (tests/inproc.py) gives what a `dmp` process gives, and leaves
the test process as it found it, however the run ends."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import locale
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.inproc import EndedBySignal
from tests.integration.manifest_helpers import AWKWARD_NAMES, make_files, untimed
from tests.servers import dmp_env, run_dmp

pytestmark = pytest.mark.integration


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    make_files(tmp_path, AWKWARD_NAMES)
    (tmp_path / "caf\u00e9.txt").write_bytes(b"caf\n")
    return tmp_path


SPACE = sha(b"content of space\n")  # what make_files wrote to "a b.txt"
CHECK = (
    f"{SPACE}  a b.txt\n{sha(b'other')}  tab\\there.txt\n{sha(b'x')}  gone \u00e9.txt\nnot a line\n"
).encode()
NAMES = list(AWKWARD_NAMES.values())
CASES = {
    # the hashing pool's processes are forked from the test process
    "create-parallel": (["-j", "2", "manifest", "--create", "--", *NAMES], None, {}),
    "create-serial-json": (["-j", "1", "--json", "manifest", "--create", "--dir", "."], None, {}),
    "check-stdin": (["manifest", "--check", "--warn", "--manifest", "-"], CHECK, {}),
    "check-stdin-utf8": (["manifest", "--check", "-m", "-"], CHECK, {"LC_ALL": "C.UTF-8"}),
    "files-from-stdin": (
        ["manifest", "--create", "--files-from", "-", "-0"],
        b"-x\0\xff\xfe\0",
        {},
    ),
    "usage-error": (["manifest", "--create", "--bogus"], None, {}),
    "no-vault": (["manifest", "--vault", "-m", "-"], CHECK, {"DMP_VAULT": "file:///nonexistent"}),
    "version": (["--version"], None, {}),
}


@pytest.mark.parametrize(("args", "input", "env"), CASES.values(), ids=CASES.keys())
def test_in_process_gives_what_a_process_gives(
    work: Path, args: list[str | bytes], input: bytes | None, env: dict[str, str]
) -> None:
    ours = run_dmp(*args, cwd=work, env=dmp_env(**env), input=input)
    real = run_dmp(*args, cwd=work, env=dmp_env(**env), input=input, subprocess=True)
    assert (ours.returncode, untimed(ours.stdout), ours.stderr) == (
        real.returncode,
        untimed(real.stdout),
        real.stderr,
    )
    assert ours.stdout or ours.stderr  # there was something to compare


def test_locale_follows_the_environment_given(work: Path) -> None:
    quoted = {}
    for lc_all in ("C", "C.UTF-8"):
        result = run_dmp(
            "manifest", "--check", "-m", "-", cwd=work, env=dmp_env(LC_ALL=lc_all), input=CHECK
        )
        quoted[lc_all] = [line for line in result.stderr.splitlines() if b"gone" in line]
    assert quoted == {
        "C": [b"dmp: 'gone '$'\\303\\251''.txt': No such file or directory"],
        "C.UTF-8": [b"dmp: 'gone \xc3\xa9.txt': No such file or directory"],
    }


def _process_state() -> dict[str, object]:
    return {
        "environ": dict(os.environ),
        "cwd": os.getcwd(),
        "locale": locale.setlocale(locale.LC_CTYPE),
        "argv": list(sys.argv),
        "streams": (sys.stdin, sys.stdout, sys.stderr),
        "fds": [(os.fstat(fd).st_dev, os.fstat(fd).st_ino) for fd in (0, 1, 2)],
        "handlers": [signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGALRM)],
        "timer": signal.getitimer(signal.ITIMER_REAL),
    }


@contextlib.contextmanager
def _reader_of(fifo: Path) -> Iterator[int]:
    """The write end of ``fifo`` (made already), once dmp has opened it to read (and
    waits for lines)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            assert exc.errno == errno.ENXIO and time.monotonic() < deadline
            time.sleep(0.01)
    try:
        yield fd
    finally:
        os.close(fd)


def test_the_test_process_is_left_as_it_was(work: Path, tmp_path: Path) -> None:
    before = _process_state()
    ok = run_dmp("manifest", "--create", "a b.txt", cwd=work, env=dmp_env(LC_ALL="C.UTF-8"))
    failed = run_dmp("manifest", "--check", "-m", "absent", cwd=work, input=b"ignored")
    assert (ok.returncode, failed.returncode) == (0, 1)
    assert _process_state() == before

    # A run past its timeout ends as subprocess.run's does, and cleans up the same.
    os.mkfifo(tmp_path / "fifo")  # no writer: dmp waits to open it
    with pytest.raises(subprocess.TimeoutExpired):
        run_dmp("manifest", "--create", "--files-from", str(tmp_path / "fifo"), timeout=0.5)
    assert _process_state() == before


def test_a_run_that_would_die_of_sigint_fails_the_test_and_not_the_session(
    tmp_path: Path,
) -> None:
    """^C lands while dmp waits for its list on a FIFO: dmp would end killed by SIGINT;
    in this process that is an error naming the way out, and pytest lives on."""
    fifo = tmp_path / "list"
    os.mkfifo(fifo)  # before dmp looks for it: made by the thread, it could come too late
    before = _process_state()

    def interrupt_once_dmp_reads() -> None:
        with _reader_of(fifo):
            time.sleep(0.1)
            os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=interrupt_once_dmp_reads)
    thread.start()
    try:
        with pytest.raises(EndedBySignal, match=r"SIGINT.*subprocess=True"):
            run_dmp("manifest", "--create", "--files-from", str(fifo), cwd=tmp_path)
    finally:
        thread.join()
    assert _process_state() == before
