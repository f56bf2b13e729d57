"""`dmp worker --idle-exit`: a worker with nothing to do stops by itself (a batch job gives
its nodes back), and one with work keeps it until the work is done. Real redis-server,
real worker processes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.integration.fleet import run, worker
from tests.servers import redis_server

pytestmark = pytest.mark.integration

IDLE_MINUTES = "0.05"  # 3 s
STOPPING = f"dmp: no task for {IDLE_MINUTES} minutes (--idle-exit); stopping"


def test_an_idle_worker_exits_by_itself(tmp_path: Path) -> None:
    with (
        redis_server() as server,
        worker(server.url, "idle", tmp_path, DMP_WORKER_IDLE_EXIT=IDLE_MINUTES) as proc,
    ):
        assert proc.wait(timeout=60) == 0
    log = (tmp_path / "idle.log").read_text()
    assert STOPPING in log
    assert "Traceback" not in log


def test_a_busy_worker_stays_until_its_work_is_done(tmp_path: Path) -> None:
    """Hashing the file takes twice the idle time: the worker finishes the job (it writes
    the manifest) and only then, idle, stops."""
    work, logs = tmp_path / "work", tmp_path / "logs"
    work.mkdir()
    logs.mkdir()
    data = b"slow to read\n"
    (work / "slow.bin").write_bytes(data)
    plan = tmp_path / "slow.json"
    plan.write_text(json.dumps({"target": "op.hash", "victim": "slow.bin", "delay": 6}))
    with redis_server() as server:
        # Submitted before the worker starts: it has work from its first moment.
        submitted = run(
            "manifest", "--create", "slow.bin", "-m", "slow.sha256", "--detach",
            cwd=work, broker_url=server.url,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        with worker(
            server.url,
            "busy",
            logs,
            concurrency=2,
            module=["-m", "tests.integration.faults"],
            DMP_TEST_FAULTS=str(plan),
            DMP_WORKER_IDLE_EXIT=IDLE_MINUTES,
        ) as proc:
            assert proc.wait(timeout=120) == 0
    digest = hashlib.sha256(data).hexdigest()
    assert (work / "slow.sha256").read_text() == f'{digest}  "slow.bin"\n'
    lines = (logs / "busy.log").read_text().splitlines()
    hashed = next(
        i for i, line in enumerate(lines) if "dmp.hash_batch" in line and "succeeded" in line
    )
    stopping = next(i for i, line in enumerate(lines) if STOPPING in line)
    assert hashed < stopping
