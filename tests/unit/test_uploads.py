"""Incomplete uploads: which ones a sweep lists and aborts, by age, and how ages are said."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest

from dmp_cli.cli.vault import age_text
from dmp_cli.store import Store, Upload
from dmp_cli.uploads import ABORT_AGE, parse_duration, sweep

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class UploadsTwin:
    """The uploads of an S3 store, in memory; ``ended`` ones end before they are aborted."""

    multipart = True

    def __init__(self, *uploads: Upload, ended: tuple[str, ...] = ()) -> None:
        self.live = list(uploads)
        self.ended = set(ended)

    def uploads(self) -> Iterator[Upload]:
        yield from list(self.live)

    def abort_upload(self, upload: Upload) -> bool:
        self.live.remove(upload)
        return upload.upload_id not in self.ended


def as_store(twin: UploadsTwin) -> Store:
    return cast(Store, twin)  # the twin has only what a sweep asks of a store


def upload(name: str, age: timedelta) -> Upload:
    return Upload(f"ab/cd/{name}", f"id-{name}", NOW - age)


def test_abort_spares_uploads_younger_than_the_limit() -> None:
    old = upload("old", ABORT_AGE + timedelta(seconds=1))
    young = upload("young", timedelta(hours=23))
    store = UploadsTwin(old, young)
    seen: list[tuple[str, timedelta, str]] = []
    report = sweep(
        as_store(store),
        ABORT_AGE,
        lambda u, age, state: seen.append((u.key, age, state)),
        abort=True,
        now=NOW,
    )
    assert store.live == [young]
    assert seen == [("ab/cd/old", ABORT_AGE + timedelta(seconds=1), "aborted")]
    assert (report.older, report.aborted, report.ended, report.younger) == (1, 1, 0, 1)


def test_an_upload_that_ended_meanwhile_is_counted_apart() -> None:
    gone, stale = upload("gone", timedelta(days=3)), upload("stale", timedelta(days=2))
    store = UploadsTwin(gone, stale, ended=("id-gone",))
    states: list[str] = []
    report = sweep(
        as_store(store), timedelta(0), lambda u, age, state: states.append(state), True, NOW
    )
    assert states == ["ended", "aborted"]
    assert (report.older, report.aborted, report.ended) == (2, 1, 1)


def test_a_listing_aborts_nothing() -> None:
    uploads = [upload("a", timedelta(days=9)), upload("b", timedelta(0))]
    store = UploadsTwin(*uploads)
    states: list[str] = []
    report = sweep(as_store(store), timedelta(0), lambda u, a, state: states.append(state), now=NOW)
    assert store.live == uploads
    assert states == ["incomplete", "incomplete"] and report.aborted == 0


def test_a_clock_behind_the_store_makes_no_negative_age() -> None:
    ahead = Upload("k", "id", NOW + timedelta(minutes=5))
    ages: list[timedelta] = []
    sweep(as_store(UploadsTwin(ahead)), timedelta(0), lambda u, age, s: ages.append(age), now=NOW)
    assert ages == [timedelta(0)]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        ("3600", 3600),
        ("90s", 90),
        ("30m", 1800),
        ("12h", 43200),
        ("1d", 86400),
        ("2w", 1209600),
        ("1d12h", 129600),
        (" 1D ", 86400),
    ],
    ids=["zero", "bare", "s", "m", "h", "d", "w", "several", "spaced-upper"],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "d", "1y", "-1d", "1.5h", "1 d", "h1"], ids=str)
def test_not_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (59, "59s"),
        (250, "4m 10s"),
        (11100, "3h 05m"),
        (86400, "1d"),
        (5864 * 86400 + 22 * 3600 + 59, "5864d 22h"),
    ],
    ids=["zero", "seconds", "minutes", "hours", "a-day", "years"],
)
def test_ages_said_in_two_units(seconds: int, text: str) -> None:
    assert age_text(timedelta(seconds=seconds)) == text
