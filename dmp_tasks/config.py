"""The Celery configuration of a dmp fleet, made from DMP_* variables.

Kept apart from the app so that the CLI and the tests can read it without starting Celery.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from kombu.utils.url import maybe_sanitize_url

from dmp_cli.errors import BrokerError

DEFAULT_REDELIVERY_TIMEOUT = 3600

# Queues: hashing and transfers are sized separately by a site; a huge file gets a queue
# of its own so that a worker with prefetch 1 takes one at a time.
HASH_QUEUE = "dmp.hash"
TRANSFER_QUEUE = "dmp.transfer"
BIG_QUEUE = "dmp.big"
# Detached jobs' coordinators: long tasks that mostly wait on Redis (dmp_tasks.coordinator).
COORD_QUEUE = "dmp.coord"
QUEUES = (HASH_QUEUE, TRANSFER_QUEUE, BIG_QUEUE, COORD_QUEUE)


def safe_url(url: str) -> str:
    """The URL with any password masked, fit for messages and logs."""
    return str(maybe_sanitize_url(url))


def redelivery_timeout(env: Mapping[str, str]) -> int:
    raw = env.get("DMP_REDELIVERY_TIMEOUT") or str(DEFAULT_REDELIVERY_TIMEOUT)
    try:
        value = int(raw)
    except ValueError:
        raise BrokerError(
            f"DMP_REDELIVERY_TIMEOUT must be a number of seconds, not {raw!r}"
        ) from None
    if value < 1:
        raise BrokerError("DMP_REDELIVERY_TIMEOUT must be at least 1 second")
    return value


def transport_options(timeout: int) -> dict[str, Any]:
    """Redis transport options: a task unacknowledged for ``timeout`` seconds is redelivered.

    Kombu only looks for such tasks every ``unacked_restore_interval`` seconds times its
    throttle (10 s x 10 by default); scan at a tenth of the timeout instead, with no
    throttle, so that recovery follows the timeout rather than a fixed minute and a half.
    """
    return {
        "visibility_timeout": timeout,
        "unacked_restore_interval": max(1, min(60, timeout // 10)),
        "unacked_restore_throttle": 1,
        # Fail fast when Redis is gone rather than hang a user's terminal.
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
    }


def celery_config(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if env is None else env
    broker = env.get("DMP_BROKER_URL") or "redis://localhost:6379/0"
    backend = env.get("DMP_RESULT_BACKEND") or broker
    options = transport_options(redelivery_timeout(env))
    return {
        "broker_url": broker,
        "result_backend": backend,
        "broker_transport_options": options,
        "result_backend_transport_options": options,
        "redis_socket_connect_timeout": 5,
        "redis_socket_timeout": 120,
        "redis_retry_on_timeout": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 5,
        # JSON only: a pickle payload from the broker would run code on every worker.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # A task whose worker dies is delivered again; tasks are idempotent.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Batches are long: a worker takes one per process and no more, so that a huge
        # file never waits behind another on a busy worker while others idle.
        "worker_prefetch_multiplier": 1,
        "task_default_queue": HASH_QUEUE,
        "task_create_missing_queues": True,
        "task_publish_retry_policy": {
            "max_retries": 3,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 2,
        },
        "result_expires": 24 * 3600,
        "result_extended": False,
        # Task events off until a monitor asks for them, as Celery's default: they cost
        # a worker's main process about 1.4 ms a batch, four in ten of what it spends on
        # one, published to no one when no one watches. Flower turns them on when it
        # starts (and Prometheus reads them through Flower's /metrics); for `celery
        # events`, `celery control enable_events` or workers started with -E. Sent
        # events would come from every submitter.
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "worker_hijack_root_logger": True,
        "worker_redirect_stdouts": True,
        "broker_channel_error_retry": True,
    }
