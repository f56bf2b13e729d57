"""Incomplete multipart uploads under the vault: listed with their age, aborted if old.

A process killed mid-upload (a worker SIGKILLed, a node lost) leaves its parts in the
bucket, billed until the upload is aborted. The next upload of the same object aborts
them (dmp_cli/store/s3.py); what no upload comes back for is found here. An upload is
aborted only when older than a limit, since a young one may be alive and sending.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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
    abort them. A store error (no bucket, access denied) is raised as it comes."""
    now = now or datetime.now(UTC)
    report = UploadsReport()
    for upload in store.uploads():
        age = max(now - upload.initiated, timedelta(0))
        if age < older_than:
            report.younger += 1
            continue
        report.older += 1
        state = "incomplete"
        if abort:
            state = "aborted" if store.abort_upload(upload) else "ended"
            report.aborted += state == "aborted"
            report.ended += state == "ended"
        on_upload(upload, age, state)
    return report
