"""Whether a live worker takes from a queue: what a command or `dmp job watch` tells a
person whose job waits for workers that are not there."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dmp_tasks.config import QUEUES, safe_url
from dmp_tasks.routing import callback_queue

if TYPE_CHECKING:
    from celery import Celery


class _Answered(Exception):
    """A worker for the queue asked about has answered."""


def no_worker_message(app: Celery, broker_url: str, job: str, op: str) -> str | None:
    """What to tell the user if no live worker takes from the queue of ``op``'s batches
    (or from queue ``op`` itself, for a queue's name), else None. Asking costs a round
    trip to the workers, and a second if none of them takes from that queue."""
    queue = op if op in QUEUES else callback_queue(op)
    queues = _worker_queues(app, queue)
    if queues is None or queue in queues:
        return None
    where = safe_url(broker_url)
    if not queues:
        return f"no worker answers at {where}; job {job} waits in Redis until a `dmp worker` starts"
    return (
        f"no worker at {where} takes from {queue} (the live ones take from "
        f"{', '.join(sorted(queues))}); job {job} waits in Redis until a `dmp worker` "
        f"for {queue} starts"
    )


def _worker_queues(app: Celery, wanted: str) -> set[str] | None:
    """The queues the live workers take from, as far as needed to find ``wanted``
    (empty if no worker answers); None if the question could not be asked, and then
    nothing is said rather than something wrong."""
    found: set[str] = set()

    def on_reply(reply: dict[str, list[dict[str, Any]]]) -> None:
        for queues in reply.values():
            found.update(str(queue.get("name")) for queue in queues or [])
        if wanted in found:
            raise _Answered  # no need to wait out the others

    try:
        app.control.broadcast("active_queues", reply=True, timeout=1.0, callback=on_reply)
    except _Answered:
        pass
    except Exception:
        return None
    return found
