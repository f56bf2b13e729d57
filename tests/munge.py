"""A real munged for the tests of the fleet's credentials: a key and a socket of its own in a
temporary directory, always stopped.

A test module takes the fixture by importing it::

    from tests.munge import munged_fixture  # noqa: F401 - the fixture ``munged``

and starts another one (with another key) by ``munge_daemon()`` where it needs two.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from tests.servers import stop

MUNGED = "/usr/sbin/munged"


def munged_path() -> str | None:
    return shutil.which("munged") or (MUNGED if os.path.exists(MUNGED) else None)


@dataclass
class Munged:
    """A munged we started: its socket, its directory (key, log), and how to stop it."""

    socket: str
    directory: str
    proc: subprocess.Popen[bytes]
    argv: tuple[str, ...] = ()

    def stop(self) -> None:
        """SIGTERM, and wait for it to go (SIGKILL if it does not)."""
        stop(self.proc)

    def start_again(self) -> None:
        """After ``stop``: the same munged again, with the same key and socket."""
        if os.path.exists(self.socket):  # left behind: not the new one's
            os.unlink(self.socket)
        with open(os.path.join(self.directory, "stderr"), "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        _wait_for_socket(self)

    def log(self) -> str:
        with open(os.path.join(self.directory, "stderr"), errors="replace") as log:
            return log.read()


def _wait_for_socket(daemon: Munged, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.proc.poll() is not None:
            raise RuntimeError(
                f"munged exited with {daemon.proc.returncode} before listening: {daemon.log()}"
            )
        if os.path.exists(daemon.socket):
            return
        time.sleep(0.02)
    raise RuntimeError(f"munged made no socket at {daemon.socket} within {timeout} s")


@contextmanager
def munge_daemon(*extra: str) -> Iterator[Munged]:
    """munged in the foreground with a new random key; ``extra`` options go to it."""
    exe = munged_path()
    if exe is None:
        raise RuntimeError("munged is not installed (apt-get install munge)")
    # Mode 0755: processes of other uids (a test's signer) reach the socket through it,
    # and munged refuses a socket directory that others may write to.
    directory = tempfile.mkdtemp(prefix="dmp-munge-")
    os.chmod(directory, 0o755)
    key = os.path.join(directory, "key")
    with open(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400), "wb") as out:
        out.write(os.urandom(1024))
    stderr = open(os.path.join(directory, "stderr"), "wb")  # noqa: SIM115 - closed below
    # --force: run although /tmp, above the directory, is writable by all (sticky bit).
    argv = (
        exe,
        "--foreground",
        "--force",
        f"--socket={directory}/sock",
        f"--key-file={key}",
        f"--pid-file={directory}/pid",
        f"--log-file={directory}/log",
        f"--seed-file={directory}/seed",
        *extra,
    )
    proc = subprocess.Popen(argv, stdout=stderr, stderr=subprocess.STDOUT, start_new_session=True)
    daemon = Munged(os.path.join(directory, "sock"), directory, proc, argv)
    try:
        _wait_for_socket(daemon)
        yield daemon
    finally:
        daemon.stop()
        stderr.close()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module", name="munged")
def munged_fixture() -> Iterator[Munged]:
    """A real munged with a key of its own, shared by a module's tests."""
    with munge_daemon() as daemon:
        yield daemon
