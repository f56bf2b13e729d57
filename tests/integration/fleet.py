"""Helpers for the fleet's integration tests: real `dmp worker` subprocesses, always stopped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.servers import REPO, dmp_env, moto_client, run_dmp, stop


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
def worker(
    broker_url: str,
    name: str,
    logdir: Path,
    *,
    celery: bool = False,
    app: str = "dmp_tasks",
    concurrency: int = 1,
    queues: str | None = None,
    module: list[str] | None = None,
    args: list[str] | None = None,
    **env: str,
) -> Iterator[subprocess.Popen[bytes]]:
    """A worker subprocess in its own session; `celery=True` starts it the Celery way
    (of ``app``, dmp's by default); ``module`` runs `python -m ...` of another entry
    point than dmp_cli's (same options); ``args`` go on its command line too."""
    if celery:
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app,
            "worker",
            "-c",
            str(concurrency),
            "-n",
            f"{name}@%h",
            "-Q",
            queues or "dmp.hash,dmp.transfer,dmp.big,dmp.coord",
            "--without-mingle",
            "--without-gossip",
            "-l",
            "INFO",
        ]
    else:
        cmd = [
            sys.executable,
            *(module or ["-m", "dmp_cli"]),
            "worker",
            "-c",
            str(concurrency),
            "-n",
            f"{name}@%h",
            *(["-Q", queues] if queues else []),
        ]
    cmd += args or []
    log = logdir / f"{name}.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            cmd,
            env=fleet_env(broker_url, **env),
            cwd=logdir,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_ready(log, proc)
        yield proc
    finally:
        stop(proc)


def run(
    *args: str | bytes, cwd: Path, broker_url: str | None, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[bytes]:
    """`dmp ARGS` in ``cwd``, distributed if ``broker_url`` is given, else embedded.

    Embedded, it runs in this process. Distributed, in a process of its own: a Celery
    client leaves threads and connections behind in its process, and the embedded runs
    that follow fork their hashing pools from this one."""
    return run_dmp(
        *args,
        cwd=cwd,
        env=fleet_env(broker_url, **env),
        timeout=timeout,
        subprocess=broker_url is not None,
    )


@dataclass
class Vault:
    """A vault for a fleet test: its URL, the environment that reaches it, its objects."""

    url: str
    env: dict[str, str]
    endpoint: str | None = None

    def objects(self) -> dict[str, bytes]:
        """Every object under the vault, by key, with its bytes (hidden files too)."""
        kind, _, where = self.url.partition("://")
        if kind == "file":
            root = Path(where)
            return {
                path.relative_to(root).as_posix(): path.read_bytes()
                for path in root.rglob("*")
                if path.is_file()
            }
        bucket, _, prefix = where.partition("/")
        s3 = self._client()
        try:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/")
            return {
                obj["Key"][len(prefix) + 1 :]: s3.get_object(Bucket=bucket, Key=obj["Key"])[
                    "Body"
                ].read()
                for page in pages
                for obj in page.get("Contents", [])
            }
        finally:
            s3.close()

    def _client(self) -> Any:
        return moto_client(self.endpoint)


def new_vault(kind: str, tmp_path: Path, s3_url: str | None = None) -> Vault:
    """An empty vault: a directory under ``tmp_path``, or a new bucket on ``s3_url``."""
    if kind == "file":
        root = tmp_path / f"vault-{uuid.uuid4().hex[:8]}"
        root.mkdir()
        return Vault(f"file://{root}", {"DMP_VAULT": f"file://{root}"})
    assert s3_url is not None
    vault = Vault("", {}, s3_url)
    bucket = f"dmp-{uuid.uuid4().hex[:16]}"
    s3 = vault._client()
    s3.create_bucket(Bucket=bucket)
    s3.close()
    vault.url = f"s3://{bucket}/object"
    vault.env = {"DMP_VAULT": vault.url, "AWS_ENDPOINT_URL": s3_url}
    return vault
