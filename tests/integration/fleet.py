"""Helpers for the fleet's integration tests: real `dmp worker` subprocesses, always stopped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.servers import REPO, dmp_env, stop


def fleet_env(broker_url: str | None, **overrides: str | None) -> dict[str, str]:
    """The environment of a CLI or worker of this tree, with the broker set (or not)."""
    path = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
    return dmp_env(DMP_BROKER_URL=broker_url, PYTHONPATH=path, **overrides)


def wait_ready(log: Path, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}:\n{log.read_text()}")
        if b" ready." in log.read_bytes():
            return
        time.sleep(0.1)
    raise RuntimeError(f"worker not ready within {timeout} s:\n{log.read_text()}")


@contextmanager
def worker(broker_url: str, name: str, logdir: Path, *, celery: bool = False,
           concurrency: int = 1, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """A worker subprocess in its own session; `celery=True` starts it the Celery way."""
    if celery:
        cmd = [sys.executable, "-m", "celery", "-A", "dmp_tasks", "worker", "-c",
               str(concurrency), "-n", f"{name}@%h", "-Q", "dmp.hash,dmp.transfer,dmp.big",
               "--without-mingle", "--without-gossip", "-l", "INFO"]
    else:
        cmd = [sys.executable, "-m", "dmp_cli", "worker", "-c", str(concurrency), "-n",
               f"{name}@%h"]
    log = logdir / f"{name}.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen(cmd, env=fleet_env(broker_url, **env), cwd=logdir,
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(log, proc)
        yield proc
    finally:
        stop(proc)


def run(*args: str | bytes, cwd: Path, broker_url: str | None, timeout: float = 120,
        **env: str) -> subprocess.CompletedProcess[bytes]:
    """`dmp ARGS` in ``cwd``, distributed if ``broker_url`` is given, else embedded."""
    return subprocess.run([sys.executable, "-m", "dmp_cli", *args], cwd=cwd,
                          env=fleet_env(broker_url, **env), capture_output=True,
                          timeout=timeout)
