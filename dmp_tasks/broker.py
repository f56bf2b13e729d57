"""The broker's Redis, reached from a command or a worker: a client that fails in seconds
when Redis is away, and redis-py's exceptions said in one line that names the broker,
never its password."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import redis

from dmp_cli.errors import BrokerError, BrokerUnreachable
from dmp_tasks.config import safe_url


def connect(url: str, **options: Any) -> redis.Redis:
    """A Redis client for ``url`` that fails in seconds, not minutes, when Redis is away."""
    options.setdefault("socket_connect_timeout", 5)
    options.setdefault("socket_timeout", 30)
    options.setdefault("health_check_interval", 30)
    return redis.Redis.from_url(url, **options)


def _auth_error(url: str) -> BrokerError:
    if urlsplit(url).password is None:
        return BrokerError(
            f"the broker at {safe_url(url)} needs a password (redis://:PASSWORD@host:port/db)"
        )
    return BrokerError(
        f"the broker at {safe_url(url)} refused the password (check the password in DMP_BROKER_URL)"
    )


@contextmanager
def broker_errors(url: str, doing: str) -> Iterator[None]:
    """Turn redis-py's exceptions into one line that names the broker, never its password."""
    try:
        yield
    except redis.AuthenticationError:
        raise _auth_error(url) from None
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            raise _auth_error(url) from None
        raise BrokerError(f"the broker at {safe_url(url)} failed {doing}: {exc}") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        reason = str(exc).split("\n")[0] or type(exc).__name__
        raise BrokerUnreachable(
            f"cannot reach the broker at {safe_url(url)} ({doing}): {reason}"
        ) from None
