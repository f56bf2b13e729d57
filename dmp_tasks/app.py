"""The Celery app of a dmp fleet: `celery -A dmp_tasks worker` (or `dmp worker`) runs it."""

from __future__ import annotations

from celery import Celery

from dmp_tasks.config import celery_config

app = Celery("dmp_tasks", include=["dmp_tasks.tasks"])
app.conf.update(celery_config())
