"""Celery's own tools work with dmp's workers, as the README's Monitoring section runs
them: `celery -A dmp_tasks inspect ping`, `inspect active_queues`, and task events, sent
by default, as `celery events` and Flower read them."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.fleet import fleet_env, worker
from tests.servers import Service, run_dmp

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fleet(redis: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logdir = tmp_path_factory.mktemp("monitor-logs")
    with worker(redis.url, "watched", logdir):
        yield redis.url


def celery(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "dmp_tasks", *args],
        env=fleet_env(url),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_inspect_ping_and_active_queues(fleet: str) -> None:
    # Named, the inspection ends when that worker answers (else it waits out the timeout).
    node = ("--destination", f"watched@{socket.gethostname()}", "--timeout", "10")
    ping = celery(fleet, "inspect", "ping", *node)
    assert ping.returncode == 0, ping.stderr
    assert "watched@" in ping.stdout and "pong" in ping.stdout
    queues = celery(fleet, "inspect", "active_queues", *node)
    assert queues.returncode == 0, queues.stderr
    for queue in ("dmp.hash", "dmp.transfer", "dmp.big", "dmp.coord"):
        assert f"'name': '{queue}'" in queues.stdout, queues.stdout


def test_workers_send_task_events_by_default(fleet: str, tmp_path: Path) -> None:
    from celery import Celery

    from dmp_tasks.config import celery_config

    seen: list[dict[str, object]] = []
    done = threading.Event()

    def on_event(event: dict[str, object]) -> None:
        seen.append(event)
        if event.get("type") == "task-received" and event.get("name") == "dmp.hash_batch":
            done.set()

    app = Celery("monitor")
    app.conf.update(celery_config({"DMP_BROKER_URL": fleet}))
    with app.connection_for_read() as connection:
        receiver = app.events.Receiver(
            connection, handlers={"task-received": on_event, "task-succeeded": on_event}
        )
        listening = threading.Thread(
            target=lambda: receiver.capture(limit=None, timeout=30, wakeup=True), daemon=True
        )
        listening.start()
        try:
            (tmp_path / "a.txt").write_bytes(b"alpha\n")
            # The receiver subscribes in its own thread, at a moment the test cannot see:
            # a job run before it listens goes unseen, so run jobs until one is seen.
            for _ in range(10):
                proc = run_dmp(
                    "manifest", "--create", "a.txt", cwd=tmp_path, env=fleet_env(fleet), timeout=60
                )
                assert proc.returncode == 0, proc.stderr
                if done.wait(3):
                    break
            assert done.is_set(), seen
        finally:
            receiver.should_stop = True
            listening.join(timeout=10)
    names = {event.get("name") for event in seen if event.get("type") == "task-received"}
    assert "dmp.hash_batch" in names
