"""The Celery apps of a dmp fleet.

``app`` is the workers' app: `celery -A dmp_tasks worker` (or `dmp worker`) runs it,
configured from DMP_* variables once, at import. A process that submits work makes an
app of its own for the broker it was given (``client_app``), so that no submitter
changes the configuration the workers' app was made with (nor needs DMP_BROKER_URL set).
"""

from __future__ import annotations

import os
import threading

from celery import Celery

from dmp_tasks import idle
from dmp_tasks.config import celery_config

app = Celery("dmp_tasks", include=["dmp_tasks.tasks", "dmp_tasks.coordinator"])
app.conf.update(celery_config())
idle.install(app)

_clients: dict[str, Celery] = {}
_lock = threading.Lock()


def client_app(broker_url: str) -> Celery:
    """An app that sends to ``broker_url`` (results to DMP_RESULT_BACKEND, else there
    too), made once per process and URL."""
    with _lock:
        client = _clients.get(broker_url)
        if client is None:
            config = celery_config({**os.environ, "DMP_BROKER_URL": broker_url})
            # The current app of this process: results that Celery makes inside a chord
            # take the current app's backend, which must be this one.
            client = _clients[broker_url] = Celery("dmp_client")
            client.conf.update(config)
        return client
