"""Incomplete multipart uploads under the vault: listed with their age, aborted if old.

A process killed mid-upload (a worker SIGKILLed, a node lost) leaves its parts in the
bucket, billed until the upload is aborted. The next upload of the same object aborts
them (dmp_cli/store/s3/tidy.py); what no upload comes back for is found here. An upload is
aborted only when older than a limit, since a young one may be alive and sending.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dmp_cli.errors import StoreError
from dmp_cli.retry import with_retries
from dmp_cli.store import Store, Upload

# Younger than this, an upload may still be in progress: --abort leaves it alone.
ABORT_AGE = timedelta(days=1)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:\d+[smhdw])+\Z")


def parse_duration(text: str) -> timedelta:
    """``0``, ``90s``, ``30m``, ``12h``, ``1d``, ``2w``, or several (``1d12h``); a bare
    number is seconds. ValueError for anything else."""
    text = text.strip().lower()
    if text.isdigit():
        return timedelta(seconds=int(text))
    if not _DURATION.match(text):
        raise ValueError(f"{text!r} is not a duration such as 0, 90s, 30m, 12h, 1d or 2w")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in re.findall(r"(\d+)([smhdw])", text))
    return timedelta(seconds=seconds)


@dataclass
class UploadsReport:
    """What a sweep found: uploads old enough to be listed (and aborted), and the rest."""

    older: int = 0  # as old as the limit, or older: listed, and aborted if asked
    younger: int = 0  # left alone
    aborted: int = 0
    ended: int = 0  # completed or aborted by someone else meanwhile


# Called for each upload as old as the limit: the upload, its age, and what became of it
# ("incomplete" when only listed, "aborted", or "ended" meanwhile).
OnUpload = Callable[[Upload, timedelta, str], None]


def sweep(
    store: Store,
    older_than: timedelta,
    on_upload: OnUpload,
    abort: bool = False,
    now: datetime | None = None,
) -> UploadsReport:
    """List the store's incomplete uploads at least ``older_than`` old, and with ``abort``
    abort them. Each request is tried again, as a file's is, while it fails transiently;
    a lasting store error (no bucket, access denied) is raised as it comes."""
    now = now or datetime.now(UTC)
    report = UploadsReport()
    # Listed whole before any is aborted: a listing tried again starts over, and there
    # are few (each is a file's upload cut short).
    for upload in with_retries(lambda: list(store.uploads())):
        age = max(now - upload.initiated, timedelta(0))
        if age < older_than:
            report.younger += 1
            continue
        report.older += 1
        state = "incomplete"
        if abort:
            state = "aborted" if _abort(store, upload) else "ended"
            report.aborted += state == "aborted"
            report.ended += state == "ended"
        on_upload(upload, age, state)
    return report


def _abort(store: Store, upload: Upload) -> bool:
    """Abort, tried again as a file's request is. An upload gone when tried again after
    an attempt failed transiently was most likely aborted by that attempt (its answer
    lost): counted as aborted, not as ended by someone else."""
    lost = False

    def abort() -> bool:
        nonlocal lost
        try:
            return store.abort_upload(upload)
        except StoreError as exc:
            lost = lost or exc.transient
            raise

    return with_retries(abort) or lost
