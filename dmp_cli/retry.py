"""A request that is no file's, tried again as a file is.

``dmp_cli.ops.run_batch`` tries a file again, with backoff, when its failure was marked
transient. The requests a run makes besides its files (the bucket check before any work,
the metadata companion's upload, the conditional-PUT probe and its DELETE, the sweep of
stale multipart uploads) go through ``with_retries``: the same pauses, the same rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from dmp_cli import ops
from dmp_cli.errors import StoreError

T = TypeVar("T")


def with_retries(call: Callable[[], T]) -> T:
    """``call``, tried again after each of a file's pauses while it fails transiently;
    the last failure, or a lasting one at once, is raised."""
    for delay in ops.retry_delays():
        try:
            return call()
        except StoreError as exc:
            if not exc.transient:
                raise
        ops._sleep(delay)
    return call()
