"""Put-if-absent (``If-None-Match: *``): whether a store refuses one for a key it has.

Some stores accept the header and overwrite all the same, so dmp trusts it only on a store
that has shown it refuses: ``probe`` puts a tiny object twice and deletes it, and
``ConditionalPuts`` keeps each store's answer for the process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from dmp_cli.errors import FatalStoreError, StoreError
from dmp_cli.retry import with_retries
from dmp_cli.store.s3.errors import PRECONDITION_FAILED, error_code, retried, translated

log = logging.getLogger("dmp_cli.store.s3")  # the S3 backend's one logger

# Below this size a put-if-absent replaces the HEAD that would precede the PUT: one
# request instead of two. The PUT goes with "Expect: 100-continue", so a store that
# already has the object refuses it (412) before the body is sent. Only on a store that
# has shown it refuses (see ConditionalPuts): some accept the header and overwrite.
CONDITIONAL_PUT_MAX = 1 << 20
PROBE_NAME = ".dmp-conditional-put-probe"

_TAKEN, _REFUSED, _REFUSED_ON_RETRY = "taken", "refused", "refused on a retry"


class ConditionalPuts:
    """What each store (endpoint and bucket) has shown of put-if-absent, learned once per
    process, whichever thread asks first; the others wait for its answer."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], bool] = {}
        self._lock = threading.Lock()

    def learn(self, where: tuple[str, str], probe: Callable[[], bool]) -> bool:
        known = self._known.get(where)
        if known is not None:
            return known
        with self._lock:
            known = self._known.get(where)
            if known is None:
                known = self._known[where] = probe()
            return known


LEARNED = ConditionalPuts()  # the process's


def probe(client: Any, bucket: str, key: str, url: str, store_url: str) -> bool:
    """Whether this store refuses a conditional PUT of a key that exists: a tiny object
    (the full ``key``) put twice with If-None-Match, the second must be refused (412). An
    answer that cannot tell (an error, the first refused although the key is new) is a no:
    then ask first. A store that cannot be used at all (credentials rejected) is said now,
    as the failure of the object ``url`` that was to be put. Each request is tried again
    as a file's would be, and the probe's object deleted in the end."""
    lost = False  # an attempt failed transiently: its answer may have been lost

    def put() -> str:
        nonlocal lost
        try:
            with translated(url):
                return _put(client, bucket, key)
        except StoreError as exc:
            lost = lost or exc.transient
            raise

    try:
        return _ask(put, lambda: lost)
    finally:
        _delete(client, bucket, key, url, store_url)


def _ask(put: Callable[[], str], lost: Callable[[], bool]) -> bool:
    try:
        first = with_retries(put)
    except FatalStoreError:
        raise
    except (StoreError, OSError):
        return False
    # A 412 that answered a retry refused the object an earlier attempt wrote (its
    # answer lost): that is the refusal sought, early.
    if first == _REFUSED_ON_RETRY or (first == _REFUSED and lost()):
        return True
    if first != _TAKEN:
        return False
    try:
        return with_retries(put) != _TAKEN
    except (StoreError, OSError):  # refused, as a write-once policy might: cannot tell
        return False


def _delete(client: Any, bucket: str, key: str, url: str, store_url: str) -> None:
    def delete() -> None:
        with translated(url):
            client.delete_object(Bucket=bucket, Key=key)

    try:
        with_retries(delete)
    except StoreError as exc:  # refused, or failing past the retries: a 4-byte object
        log.debug("%s: the probe object %s is left: %s", store_url, key, exc)


def _put(client: Any, bucket: str, key: str) -> str:
    """How a conditional PUT of ``key`` was answered: taken, or refused (412) at once or
    on a retry."""
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"dmp\n", IfNoneMatch="*")
    except ClientError as exc:
        if error_code(exc) in PRECONDITION_FAILED:
            return _REFUSED_ON_RETRY if retried(exc) else _REFUSED
        raise
    return _TAKEN
