"""Backoff: the pauses before what failed transiently is tried again, a file or a request.

``dmp_cli.ops.run_batch`` tries a file again, with backoff, when its failure was marked
transient. The requests a run makes besides its files (the bucket check before any work,
the metadata companion's upload, the conditional-PUT probe and its DELETE, the sweep of
stale multipart uploads) go through ``with_retries``: the same pauses, the same rule.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import TypeVar

from dmp_cli.errors import StoreError

T = TypeVar("T")

# Pauses before the attempts after the first, for files whose failure was transient;
# DMP_RETRY_DELAYS (seconds, comma-separated) changes them.
RETRY_DELAYS = (0.5, 2.0, 8.0)


def retry_delays() -> tuple[float, ...]:
    raw = os.environ.get("DMP_RETRY_DELAYS")
    if raw is None:
        return RETRY_DELAYS
    return tuple(float(part) for part in raw.split(",") if part.strip())


def pause(delay: float) -> None:
    time.sleep(delay * random.uniform(0.75, 1.25))  # jitter: retries of a fleet spread out


def with_retries(call: Callable[[], T]) -> T:
    """``call``, tried again after each of a file's pauses while it fails transiently;
    the last failure, or a lasting one at once, is raised."""
    for delay in retry_delays():
        try:
            return call()
        except StoreError as exc:
            if not exc.transient:
                raise
        pause(delay)
    return call()
