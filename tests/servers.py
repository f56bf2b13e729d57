"""Real services for integration tests: each started on a free loopback port, always stopped."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from subprocess import CompletedProcess
from subprocess import run as run_process
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {timeout} s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop a process we started (and its process group), however it is doing."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class Service:
    url: str
    port: int
    proc: subprocess.Popen[bytes]


def moto_client(endpoint_url: str | None, **options: Any) -> Any:
    """A boto3 S3 client of moto's server (its test credentials), as the tests' own
    hands on the bucket, beside what dmp does; ``options`` go to ``boto3.client``."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        **options,
    )


def session_pids(session: int) -> list[int]:
    """The processes of a session (one started with ``start_new_session``): a command
    and whatever it forked, workers and their pool processes alike."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getsid(int(pid)) == session:
                found.append(int(pid))
        except OSError:  # gone meanwhile
            continue
    return found


@contextmanager
def moto_server() -> Iterator[Service]:
    """moto's S3 server over HTTP on loopback."""
    port = free_port()
    # The moto of the interpreter running the tests, not another one found on the PATH.
    args = [sys.executable, "-m", "moto.server"]
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [*args, "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port(port, proc)
        yield Service(f"http://127.0.0.1:{port}", port, proc)
    finally:
        stop(proc)
        log.close()


def redis_server_path() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )


@contextmanager
def redis_server(*extra: str) -> Iterator[Service]:
    """A private redis-server on loopback: no persistence, gone when the test ends."""
    exe = redis_server_path()
    if exe is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="dmp-redis-")
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(port, proc)
        yield Service(f"redis://127.0.0.1:{port}/0", port, proc)
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def dmp_env(**overrides: str | None) -> dict[str, str]:
    """The environment for a `dmp` subprocess: no stray AWS or DMP settings from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DMP_"))}
    env.update(
        {
            "LC_ALL": "C",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
    )
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_dmp(
    *args: str | bytes,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    timeout: float = 300,
    subprocess: bool = False,
) -> CompletedProcess[bytes]:
    """Run the real `dmp` command line; its status, stdout and stderr (bytes) as a
    subprocess would give them. In this process by default (tests/inproc.py); with
    ``subprocess=True`` as `python -m dmp_cli` in a process of its own, for what only a
    process shows: death by a signal, a closed stdout, state that would leak."""
    env = env if env is not None else dmp_env()
    if not subprocess:
        from tests.inproc import run_in_process

        return run_in_process(list(args), cwd=cwd, env=env, input=input, timeout=timeout)
    return run_process(
        [sys.executable, "-m", "dmp_cli", *args],
        cwd=cwd,
        env=env,
        input=input,
        capture_output=True,
        timeout=timeout,
    )
