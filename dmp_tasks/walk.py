"""A --create walk fanned out: its directories listed by workers, ahead of the walk.

The walk itself (``dmp_cli.inputs``) stays where it was, in the process that writes the
manifest, and asks for each directory's listing in its own order; this lister has the
workers list the directories it will ask for next (the subdirectories of each listing,
depth first, a bounded number ahead), so that the listings come back in parallel and
the walk's order, and the manifest, stay exactly those of an embedded walk. Listings
carry the files' sizes, so that batches are bounded by bytes and a huge file goes alone
to ``dmp.big``.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from celery.exceptions import TimeoutError as CeleryTimeout

from dmp_cli.errors import BrokerError, DmpError
from dmp_cli.inputs import Listing
from dmp_tasks.config import HASH_QUEUE, safe_url

if TYPE_CHECKING:
    from celery import Celery
    from celery.result import AsyncResult

# Directories being listed (or listed and not yet walked) at most.
LISTINGS_AHEAD = 64
WAIT_S = 1.0


class FleetLister:
    """Lists directories on the workers, ``ahead`` of a depth-first walk of ``roots``.

    ``waiting`` is called while a listing is awaited (every second): it raises to stop
    the walk (a cancelled job, a lost lease)."""

    def __init__(
        self,
        app: Celery,
        cwd: str,
        roots: list[str],
        recursive: bool,
        waiting: Callable[[], None] = lambda: None,
        ahead: int = LISTINGS_AHEAD,
    ) -> None:
        self.app, self.cwd, self.recursive, self.ahead = app, cwd, recursive, ahead
        self.waiting = waiting
        self.asked: dict[str, AsyncResult] = {}
        self.next: deque[str] = deque(roots)  # in the order the walk will want them

    def __call__(self, directory: str) -> Listing:
        if directory not in self.asked:
            if directory in self.next:
                self.next.remove(directory)
            self._ask(directory)
        self._fill()
        result = self.asked.pop(directory)
        while True:
            try:
                # A coordinator is a task that waits on others by design: they never
                # wait on it, so Celery's guard against deadlock does not apply.
                found = result.get(timeout=WAIT_S, propagate=True, disable_sync_subtasks=False)
                break
            except CeleryTimeout:
                self.waiting()
            except (OSError, BrokerError) as exc:  # the broker is away: from the checkpoint
                raise BrokerError(f"listing {directory} on the fleet failed: {exc}") from None
            except Exception as exc:  # the worker's task failed
                raise DmpError(f"listing {directory} on the fleet failed: {exc}") from None
        result.forget()
        listing = Listing(
            [(name, kind, detail) for name, kind, detail in found["entries"]],
            found["error"],
            found["errno"],
        )
        if self.recursive:
            below = [os.path.join(directory, n) for n, kind, _ in listing.entries if kind == "d"]
            self.next.extendleft(reversed(below))
        self._fill()
        return listing

    def _fill(self) -> None:
        while self.next and len(self.asked) < self.ahead:
            self._ask(self.next.popleft())

    def _ask(self, directory: str) -> None:
        try:
            self.asked[directory] = self.app.signature(
                "dmp.list_dir", args=(directory, self.cwd)
            ).apply_async(queue=HASH_QUEUE)
        except Exception as exc:
            raise BrokerError(
                f"cannot submit to the broker at {safe_url(str(self.app.conf.broker_url))}: {exc}"
            ) from None

    def close(self) -> None:
        """Forget the listings asked for and never walked (the walk stopped early)."""
        for result in self.asked.values():
            result.forget()
        self.asked.clear()
