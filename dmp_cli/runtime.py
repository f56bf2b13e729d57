"""Choosing the executor: embedded by default, Celery when DMP_BROKER_URL is set."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dmp_cli.executor import Executor, LocalExecutor
from dmp_cli.settings import Settings

if TYPE_CHECKING:
    from dmp_cli.cli.output import Output


def make_executor(settings: Settings, out: Output | None = None) -> Executor:
    if settings.broker_url:
        from dmp_tasks.executor import CeleryExecutor

        return CeleryExecutor(settings.broker_url, out=out)
    return LocalExecutor(settings.jobs)
