"""with_retries: a request that is no file's, tried again as a file is; and the sweep of
incomplete uploads, whose listing and aborts go through it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest

from dmp_cli.errors import StoreError
from dmp_cli.retry import with_retries
from dmp_cli.store import Store, Upload
from dmp_cli.uploads import sweep


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DMP_RETRY_DELAYS", "0,0,0")


def failing(times: int, transient: bool = True) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise StoreError("s3://b: Connection reset by peer", transient=transient)
        return "done"

    return calls, call


def test_a_transient_failure_is_tried_again_after_each_pause() -> None:
    calls, call = failing(3)
    assert with_retries(call) == "done" and len(calls) == 4
    calls, call = failing(4)
    with pytest.raises(StoreError, match="reset"):
        with_retries(call)
    assert len(calls) == 4


def test_a_lasting_failure_is_raised_at_once() -> None:
    calls, call = failing(1, transient=False)
    with pytest.raises(StoreError):
        with_retries(call)
    assert len(calls) == 1


class Flaky:
    """Uploads whose listing fails once; whose abort is done but its answer lost once."""

    def __init__(self, *uploads: Upload) -> None:
        self.left = {u.upload_id: u for u in uploads}
        self.listings = 0
        self.lost = True

    def uploads(self) -> Iterator[Upload]:
        self.listings += 1
        yield from list(self.left.values())[:1]
        if self.listings == 1:
            raise StoreError("s3://b: Connection was closed", transient=True)
        yield from list(self.left.values())[1:]

    def abort_upload(self, upload: Upload) -> bool:
        there = self.left.pop(upload.upload_id, None) is not None
        if self.lost:
            self.lost = False
            raise StoreError("s3://b: Connection reset by peer", transient=True)
        return there


def test_the_sweep_is_tried_again_and_counts_an_abort_whose_answer_was_lost() -> None:
    old = datetime.now(UTC) - timedelta(days=2)
    store = Flaky(Upload("a", "1", old), Upload("b", "2", old))
    seen: list[tuple[str, str]] = []
    report = sweep(
        cast(Store, store), timedelta(days=1), lambda u, _, s: seen.append((u.key, s)), abort=True
    )
    assert store.listings == 2 and store.left == {}
    assert seen == [("a", "aborted"), ("b", "aborted")]
    assert report.aborted == 2 and report.ended == 0
