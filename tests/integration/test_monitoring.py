"""Celery's own tools work with dmp's workers, as docs/operations.md's Monitoring section
runs them: `celery -A dmp_tasks inspect ping`, `inspect active_queues`, and task events, off
until a monitor turns them on (as Flower does), as `celery events` and Flower read them."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
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


class _Events:
    """Task events and worker heartbeats as a monitor receives them, in a thread."""

    def __init__(self, url: str) -> None:
        from celery import Celery

        from dmp_tasks.config import celery_config

        self.seen: list[dict[str, object]] = []
        self.heard = threading.Event()  # a heartbeat: the receiver is listening
        self.received = threading.Event()  # a batch task received
        app = Celery("monitor")
        app.conf.update(celery_config({"DMP_BROKER_URL": url}))
        self.connection = app.connection_for_read()
        self.receiver = app.events.Receiver(self.connection, handlers={"*": self._on_event})
        self.thread = threading.Thread(
            target=lambda: self.receiver.capture(limit=None, timeout=60, wakeup=True),
            daemon=True,
        )

    def _on_event(self, event: dict[str, object]) -> None:
        self.seen.append(event)
        if event.get("type") == "worker-heartbeat":
            self.heard.set()
        if event.get("type") == "task-received" and event.get("name") == "dmp.hash_batch":
            self.received.set()

    def tasks(self) -> list[dict[str, object]]:
        return [e for e in self.seen if str(e.get("type", "")).startswith("task-")]

    def __enter__(self) -> _Events:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.receiver.should_stop = True
        self.thread.join(timeout=10)
        self.connection.release()


def _create(url: str, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"alpha\n")
    proc = run_dmp("manifest", "--create", "a.txt", cwd=tmp_path, env=fleet_env(url), timeout=60)
    assert proc.returncode == 0, proc.stderr


def _run_until_received(url: str, events: _Events, tmp_path: Path) -> None:
    # The receiver subscribes in its own thread, at a moment the test cannot see: a job
    # run before it listens goes unseen, so run jobs until one is seen.
    for _ in range(10):
        _create(url, tmp_path)
        if events.received.wait(3):
            return
    raise AssertionError(events.seen)


def test_task_events_are_off_until_a_monitor_enables_them(fleet: str, tmp_path: Path) -> None:
    """As Celery's default: a worker sends heartbeats but no task events until asked,
    as Flower asks when it starts, and `celery control enable_events` does."""
    with _Events(fleet) as events:
        # Worker heartbeats come every 2 s whatever the setting: once one is heard, the
        # receiver is listening, and a job run now would be seen if it sent events.
        assert events.heard.wait(30), events.seen
        _create(fleet, tmp_path)
        time.sleep(2)  # events are flushed as the batch ends, before the command does
        assert events.tasks() == []
        enabled = celery(fleet, "control", "enable_events")
        assert enabled.returncode == 0 and "task events enabled" in enabled.stdout, enabled
        try:
            _run_until_received(fleet, events, tmp_path)
        finally:
            celery(fleet, "control", "disable_events")
    names = {event.get("name") for event in events.tasks() if event["type"] == "task-received"}
    assert "dmp.hash_batch" in names


def test_a_worker_started_with_task_events_sends_them_from_the_start(
    redis: Service, tmp_path: Path
) -> None:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    url = redis.url.rsplit("/", 1)[0] + "/3"  # a fleet of its own: no other worker
    with worker(url, "eventful", logdir, args=["--task-events"]), _Events(url) as events:
        _run_until_received(url, events, tmp_path)
    succeeded = [e for e in events.tasks() if e["type"] == "task-succeeded"]
    assert succeeded, events.seen
