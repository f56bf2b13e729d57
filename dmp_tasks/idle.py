"""A worker that stops by itself when it has had nothing to do for a while.

``dmp worker --idle-exit MINUTES`` (or DMP_WORKER_IDLE_EXIT; ``celery -A dmp_tasks worker
--idle-exit MINUTES`` too): after that long with no task received and none running, the worker
shuts down as on SIGTERM and exits 0, so that a batch job on a cluster gives its nodes back
once the queues are empty.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import click
from celery import Celery, bootsteps, signals
from celery.platforms import EX_OK
from celery.worker import state

logger = logging.getLogger(__name__)


class IdleExit(bootsteps.StartStopStep):
    """Asks for a warm shutdown once the worker has been idle for ``idle_exit`` minutes."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, parent: Any, idle_exit: float | None = None, **options: Any) -> None:
        super().__init__(parent, **options)
        self.limit = idle_exit * 60 if idle_exit else None
        self.last_busy = time.monotonic()
        self.stopping = False
        self._timer: Any = None

    def include_if(self, parent: Any) -> bool:
        return self.limit is not None

    def start(self, parent: Any) -> None:
        assert self.limit is not None
        self.last_busy = time.monotonic()
        signals.task_received.connect(self._received, weak=False)
        # Often enough to stop within 5% of the limit; no more than twice a second.
        interval = min(max(self.limit / 20, 0.5), 30.0)
        self._timer = parent.timer.call_repeatedly(interval, self._tick)

    def stop(self, parent: Any) -> None:
        signals.task_received.disconnect(self._received)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _received(self, **_: Any) -> None:
        self.last_busy = time.monotonic()

    def _tick(self) -> None:
        assert self.limit is not None
        now = time.monotonic()
        # Received and not done: running, prefetched, or held for a countdown (a retry).
        if state.reserved_requests or state.active_requests or state.scheduled_requests:
            self.last_busy = now
        elif now - self.last_busy >= self.limit and not self.stopping:
            self.stopping = True
            logger.warning("dmp: no task for %g minutes (--idle-exit); stopping", self.limit / 60)
            state.should_stop = EX_OK  # Celery's warm shutdown, as on SIGTERM


def install(app: Celery) -> None:
    """Give the app's workers the ``--idle-exit MINUTES`` option and the step behind it."""
    app.user_options["worker"].add(
        click.Option(
            ["--idle-exit"],
            type=click.FloatRange(min=0),
            metavar="MINUTES",
            help="Stop (exit 0) after MINUTES with no task received or running (0: never).",
        )
    )
    app.steps["worker"].add(IdleExit)
