"""Choosing the executor: embedded by default, Celery when DMP_BROKER_URL is set."""

from __future__ import annotations

from collections.abc import Callable

from dmp_cli.executor import Executor, LocalExecutor
from dmp_cli.settings import broker_url as check_broker_url


def make_executor(
    broker_url: str | None = None,
    jobs: int | None = None,
    on_message: Callable[[str], None] | None = None,
) -> Executor:
    """The fleet's executor if a broker is given, else the embedded one. ``on_message``
    hears what a person should know while a fleet job waits (no worker for its queue)."""
    url = check_broker_url(broker_url, "broker_url")
    if url:
        from dmp_tasks.executor import CeleryExecutor

        return CeleryExecutor(url, on_message=on_message)
    return LocalExecutor(jobs)
