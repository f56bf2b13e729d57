"""A --create walk fanned out: its directories listed by workers, ahead of the walk.

The walk itself (``dmp_cli.inputs``) stays where it was, in the process that writes the
manifest, and asks for each directory's listing in its own order. This lister has the
workers list the directories it will ask for next, depth first and a bounded number of
tasks ahead, so that the listings come back in parallel while the walk's order, and the
manifest, stay exactly those of an embedded walk. A task lists a few directories, and
goes on into their subdirectories, up to a budget of entries (``dmp_tasks.tasks.list_dirs``):
a tree of many small directories costs a few tasks, not one a directory. Listings carry
the files' sizes, so that batches are bounded by bytes and a huge file goes alone to
``dmp.big``.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from celery.exceptions import TimeoutError as CeleryTimeout

from dmp_cli.errors import BrokerError, DmpError
from dmp_cli.fsutil import dir_prefix
from dmp_cli.inputs import Listing
from dmp_tasks import auth
from dmp_tasks.config import HASH_QUEUE, safe_url

if TYPE_CHECKING:
    from celery import Celery
    from celery.result import AsyncResult

TASKS_AHEAD = 8  # listing tasks out at once
DIRS_A_TASK = 16  # directories a task is given (it lists more below them, on budget)
ENTRIES_A_TASK = 20_000  # a task stops going deeper once it has listed this many entries
WAIT_S = 1.0


def _subdirs(directory: str, listing: Listing) -> list[str]:
    """The paths of a listing's directories, joined as the walk joins them."""
    prefix = dir_prefix(directory)
    return [prefix + name for name, kind, _ in listing.entries if kind == "d"]


class FleetLister:
    """Lists directories on the workers, ahead of a depth-first walk of ``roots``.

    ``waiting`` is called while a listing is awaited (every second): it raises to stop
    the walk (a cancelled job, a lost lease)."""

    def __init__(
        self,
        app: Celery,
        cwd: str,
        roots: list[str],
        recursive: bool,
        waiting: Callable[[], None] = lambda: None,
    ) -> None:
        self.app, self.cwd, self.recursive = app, cwd, recursive
        self.waiting = waiting
        self.asked: dict[str, AsyncResult] = {}  # each directory given to a task, its task
        self.tasks: dict[str, list[str]] = {}  # each task's directories, by task id
        self.listed: dict[str, Listing] = {}  # listings not yet walked
        self.next: deque[str] = deque(roots)  # not yet asked for, in the walk's order

    def __call__(self, directory: str) -> Listing:
        while directory not in self.listed:
            if directory not in self.asked:
                if directory in self.next:
                    self.next.remove(directory)
                self._ask([directory])
            self._fill()
            self._receive(self.asked[directory], directory)
        self._fill()
        return self.listed.pop(directory)

    def _receive(self, result: AsyncResult, directory: str) -> None:
        """Wait for a task's listings; the directories under them it did not reach (or
        that it was given and did not reach) go first in the queue, in the walk's order."""
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
        given = self.tasks.pop(result.id)
        for name in given:
            del self.asked[name]
        got: dict[str, Listing] = {}
        for name, entries, error, errno in found:
            got[name] = Listing([tuple(entry) for entry in entries], error, errno)
        self.listed.update(got)
        ahead = [name for root in given for name in self._unlisted(root, got)]
        self.next.extendleft(reversed(ahead))

    def _unlisted(self, root: str, got: dict[str, Listing]) -> Iterator[str]:
        """The directories of ``root``'s subtree, in walk order, that the walk will want
        and ``got`` lacks: ``root`` itself, or those below the listings it has."""
        if root not in got:
            yield root
            return
        if not self.recursive:
            return
        stack = list(reversed(_subdirs(root, got[root])))
        while stack:
            name = stack.pop()
            if name in got:
                stack.extend(reversed(_subdirs(name, got[name])))
            else:
                yield name

    def _fill(self) -> None:
        while self.next and len(self.tasks) < TASKS_AHEAD:
            group: list[str] = []
            while self.next and len(group) < DIRS_A_TASK:
                name = self.next.popleft()
                if name not in self.listed and name not in self.asked:
                    group.append(name)
            if group:
                self._ask(group)

    def _ask(self, directories: list[str]) -> None:
        budget = ENTRIES_A_TASK if self.recursive else 0
        try:
            credential = auth.sign(*listing_parts(directories, self.cwd, budget))
            result = self.app.signature(
                "dmp.list_dirs",
                args=(directories, self.cwd, budget),
                kwargs={"credential": credential} if credential else {},
            ).apply_async(queue=HASH_QUEUE)
        except Exception as exc:
            raise BrokerError(
                f"cannot submit to the broker at {safe_url(str(self.app.conf.broker_url))}: {exc}"
            ) from None
        self.tasks[result.id] = directories
        for name in directories:
            self.asked[name] = result

    def close(self) -> None:
        """Forget the listings asked for and never walked (the walk stopped early)."""
        for result in {id(r): r for r in self.asked.values()}.values():
            result.forget()
        self.asked.clear()
        self.tasks.clear()


def listing_parts(directories: list[str], cwd: str, budget: int) -> tuple[Any, ...]:
    """What the credential of a ``dmp.list_dirs`` task covers (``dmp_tasks.auth``)."""
    return ("list_dirs", directories, cwd, budget)


def list_dirs(directories: list[str], cwd: str, budget: int) -> list[Any]:
    """What a worker does for ``dmp.list_dirs``: list each directory, in order, and (with
    a ``budget``) go on depth first into their subdirectories until that many entries
    are listed. Returns [directory, entries, error, errno] for each directory listed, in
    walk order; the given directories not reached are left to another task."""
    from dmp_cli.inputs import list_dir

    found: list[Any] = []
    listed = 0
    for root in directories:
        if budget and found and listed >= budget:
            break
        stack = [root]
        while stack:
            name = stack.pop()
            path = name if os.path.isabs(name) else os.path.join(cwd, name)
            listing = list_dir(path, sizes=True)
            found.append([name, listing.entries, listing.error, listing.errno])
            listed += len(listing.entries) + 1
            if budget and listed < budget:
                stack.extend(reversed(_subdirs(name, listing)))
            else:
                break  # the rest of this subtree: another task
    return found
