"""Restoring from cold storage without a server: what a HEAD's answer says of an object's
class and restore, the restore options and settings, and ``Restoring``'s rounds over a
store that the test restores by hand."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from dmp_cli.errors import RunStopped, StoreError, UsageError
from dmp_cli.options import Options, restore_days, restore_tier
from dmp_cli.rows import Item, Row
from dmp_cli.runs.restoring import Restoring, stop_cold, time_left, typical_time
from dmp_cli.settings import RESTORE_POLL, restore_poll
from dmp_cli.store import ObjectState
from dmp_cli.store.local import FileStore
from dmp_cli.store.s3.backend import _state


@pytest.mark.parametrize(
    ("reply", "cold", "readable", "restore"),
    [
        ({}, False, True, None),
        ({"StorageClass": "STANDARD_IA"}, False, True, None),
        ({"StorageClass": "GLACIER_IR"}, False, True, None),
        ({"StorageClass": "GLACIER"}, True, False, None),
        ({"StorageClass": "DEEP_ARCHIVE"}, True, False, None),
        ({"StorageClass": "GLACIER", "Restore": 'ongoing-request="true"'}, True, False, "ongoing"),
        (
            {
                "StorageClass": "DEEP_ARCHIVE",
                "Restore": 'ongoing-request="false", expiry-date="Fri, 23 Dec 2026 00:00:00 GMT"',
            },
            True,
            True,
            "restored",
        ),
        ({"StorageClass": "INTELLIGENT_TIERING"}, False, True, None),
        (
            {"StorageClass": "INTELLIGENT_TIERING", "ArchiveStatus": "DEEP_ARCHIVE_ACCESS"},
            True,
            False,
            None,
        ),
    ],
    ids=[
        "standard",
        "standard-ia",
        "glacier-ir",
        "glacier",
        "deep-archive",
        "restoring",
        "restored",
        "intelligent-tiering",
        "intelligent-tiering-archived",
    ],
)
def test_state_of_a_head(
    reply: dict[str, Any], cold: bool, readable: bool, restore: str | None
) -> None:
    state = _state(reply)
    assert (state.cold, state.readable, state.restore) == (cold, readable, restore)


def test_restored_copy_expiry() -> None:
    said = 'ongoing-request="false", expiry-date="Fri, 23 Dec 2026 00:00:00 GMT"'
    assert _state({"StorageClass": "GLACIER", "Restore": said}).expiry == (
        "Fri, 23 Dec 2026 00:00:00 GMT"
    )


def test_a_directory_has_no_cold_storage(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path))
    store.put_bytes("ab/x", b"x")
    assert store.object_state("ab/x") == ObjectState(None)
    assert store.object_state("ab/none") is None
    with pytest.raises(StoreError) as refused:
        store.request_restore("ab/x", 7, "Standard")
    assert (
        str(refused.value)
        == f"file://{tmp_path}/ab/x: a directory has no cold storage to restore from"
    )


def test_restore_options() -> None:
    assert restore_days("14") == 14 and restore_days(1) == 1
    for bad in ("0", "-3", "1.5", "x", "", 2.0, True):
        with pytest.raises(UsageError):
            restore_days(bad)
    assert restore_tier("bulk") == "Bulk" and restore_tier("EXPEDITED") == "Expedited"
    with pytest.raises(UsageError):
        restore_tier("Glacier")
    with pytest.raises(UsageError):
        Options(restore_days=0).validated()
    assert Options.from_json(Options(wait=False).to_json()).wait is False


def test_restore_poll_setting() -> None:
    assert restore_poll(None) == RESTORE_POLL == (60, 120, 300, 600)
    assert restore_poll("0.5, 2") == (0.5, 2.0)
    for bad in ("x", "1,,2", "-1", "inf"):
        with pytest.raises(UsageError):
            restore_poll(bad)


def test_typical_times() -> None:
    assert typical_time(["GLACIER"], "Expedited") == "1-5 minutes"
    assert typical_time(["DEEP_ARCHIVE"], "Bulk") == "within 48 hours"
    assert typical_time(["GLACIER", "DEEP_ARCHIVE"], "Standard") == "3-5 hours; within 12 hours"
    assert typical_time(["X"], "Standard") == "unknown"
    assert time_left(["GLACIER"], "Standard", 42 * 60) == (
        "42 min so far, typically done within 4.3 h"
    )
    assert time_left(["GLACIER", "DEEP_ARCHIVE"], "Bulk", 3600) == (
        "60 min so far, typically done within 47.0 h"
    )
    assert time_left(["GLACIER"], "Expedited", 600) == "10 min so far, longer than typical"
    assert time_left(["X"], "Standard", 0) == "0 min so far"


# ------------------------------------------------------------------ rounds


class ColdStore:
    """Objects in GLACIER whose restores finish when the test says."""

    url = "s3://b/v"

    def __init__(
        self, keys: Iterable[str], refuse: Iterable[str] = (), storage_class: str = "GLACIER"
    ) -> None:
        self.state: dict[str, str | None] = dict.fromkeys(keys)
        self.refuse = set(refuse)
        self.storage_class = storage_class
        self.heads: Counter[str] = Counter()
        self.restores: Counter[str] = Counter()
        self.days: list[int | None] = []

    def key_url(self, key: str) -> str:
        return f"{self.url}/{key}"

    def object_state(self, key: str) -> ObjectState | None:
        self.heads[key] += 1
        if key not in self.state:
            return None
        if self.storage_class == "INTELLIGENT_TIERING":
            return ObjectState(self.storage_class, self.state[key], None, "ARCHIVE_ACCESS")
        return ObjectState(self.storage_class, self.state[key])

    def request_restore(self, key: str, days: int | None, tier: str) -> str:
        self.restores[key] += 1
        self.days.append(days)
        if key in self.refuse:
            raise StoreError(f"{self.key_url(key)}: restore refused: access denied (AccessDenied)")
        if self.state[key] == "ongoing":
            return "ongoing"
        self.state[key] = "ongoing"
        return "requested"


class Fetcher:
    """A fetch's executor: an item is fetched if its object is restored, else handed back
    cold; ``on_round`` is called at each sleep (the test restores objects there)."""

    def __init__(self, store: ColdStore, on_sleep: Any = None) -> None:
        self.store = store
        self.fetched: list[str] = []
        self.failed: dict[str, str] = {}
        self.gets: list[str] = []
        self.cold_gets: Counter[int] = Counter()  # reads of objects still cold, by round
        self.on_sleep = on_sleep or (lambda n: None)
        self.sleeps = 0
        self.restoring: Restoring | None = None

    def run(self, items: Iterable[Item]) -> None:
        assert self.restoring is not None
        for item in items:
            if "cold_error" in item:
                self.failed[item["path"]] = item["cold_error"]
                continue
            key = item["digest"]
            self.gets.append(key)
            if self.store.state.get(key) == "restored":
                self.fetched.append(item["path"])
            else:
                self.cold_gets[self.sleeps] += 1
                row: Row = {"status": "failed", "path": item["path"], "cold": key}
                row["item"] = dict(item)
                assert self.restoring.took_back(row)

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.on_sleep(self.sleeps)


def _restoring(store: ColdStore, fetcher: Fetcher, wait: bool = True) -> Restoring:
    notes: list[str] = []
    restoring = Restoring(store, 7, "Standard", wait, (1.0,), notes.append, sleep=fetcher.sleep)  # type: ignore[arg-type]
    fetcher.restoring = restoring
    return restoring


def test_rounds_request_once_poll_one_in_a_hundred_and_fetch_when_ready() -> None:
    keys = [f"k{i:03}" for i in range(250)]
    store = ColdStore(keys)

    def on_sleep(n: int) -> None:
        if n == 4:  # the restores are done, in two lots
            for key in keys[:100]:
                store.state[key] = "restored"
        if n == 7:
            for key in keys[100:]:
                store.state[key] = "restored"

    fetcher = Fetcher(store, on_sleep)
    restoring = _restoring(store, fetcher)
    items: list[Item] = [{"path": f"f{i}", "digest": key} for i, key in enumerate(keys)]
    items.append({"path": "copy", "digest": keys[0]})
    fetcher.run(items)  # the fetch's first pass: all cold
    heads_before = sum(store.heads.values())
    counts = restoring.settle(fetcher.run)
    assert sorted(fetcher.fetched) == sorted(item["path"] for item in items)
    assert set(store.restores.values()) == {1} and len(store.restores) == 250
    assert counts.requested == 250 and counts.waiting == 0 and counts.refused == 0
    # 250 state HEADs, then at most 2 a round (1 % of 250), each round.
    polls = sum(store.heads.values()) - heads_before - 250
    assert polls == counts.polls <= 2 * counts.rounds
    # Not fetched before its restore was done: no GET of a cold object but one a round.
    assert counts.rounds >= 7


def test_no_wait_and_a_later_run() -> None:
    store = ColdStore(["a", "b", "c"])
    fetcher = Fetcher(store)
    restoring = _restoring(store, fetcher, wait=False)
    fetcher.run([{"path": p, "digest": p} for p in ("a", "b", "c")])
    counts = restoring.settle(fetcher.run)
    assert (counts.requested, counts.waiting, counts.waiting_files) == (3, 3, 3)
    assert fetcher.fetched == [] and fetcher.sleeps == 0
    store.state["b"] = "restored"
    later = Fetcher(store)
    restoring = _restoring(store, later, wait=False)
    later.run([{"path": p, "digest": p} for p in ("a", "b", "c")])
    counts = restoring.settle(later.run)
    assert later.fetched == ["b"]
    assert (counts.requested, counts.ongoing, counts.readable, counts.waiting) == (0, 2, 0, 2)
    assert set(store.restores.values()) == {1}


def test_a_refused_restore_and_a_missing_object_fail_their_files() -> None:
    store = ColdStore(["a", "b"], refuse=["b"])
    fetcher = Fetcher(store, on_sleep=lambda n: store.state.update(a="restored"))
    restoring = _restoring(store, fetcher)
    fetcher.run([{"path": p, "digest": p} for p in ("a", "b", "gone")])
    counts = restoring.settle(fetcher.run)
    assert fetcher.fetched == ["a"]
    assert fetcher.failed == {
        "b": "s3://b/v/b: restore refused: access denied (AccessDenied)",
        "gone": "s3://b/v/gone: not in the vault",
    }
    assert counts.refused == 2


def test_a_detached_fetch_stops_at_its_first_cold_file() -> None:
    with pytest.raises(RunStopped) as stopped:
        stop_cold({"status": "failed", "cold": "ab/cd", "error": "s3://b/ab/cd: in cold storage"})
    assert "dmp vault restore" in str(stopped.value)
    assert stop_cold({"status": "fetched"}) is False


def test_intelligent_tiering_restores_take_no_days() -> None:
    store = ColdStore(["a", "b"], storage_class="INTELLIGENT_TIERING")
    fetcher = Fetcher(store)
    restoring = _restoring(store, fetcher, wait=False)
    fetcher.run([{"path": p, "digest": p} for p in ("a", "b")])
    counts = restoring.settle(fetcher.run)
    assert counts.requested == 2 and store.days == [None, None]
    glacier = ColdStore(["a"])
    fetcher = Fetcher(glacier)
    restoring = _restoring(glacier, fetcher, wait=False)
    fetcher.run([{"path": "a", "digest": "a"}])
    restoring.settle(fetcher.run)
    assert glacier.days == [7]


def test_reads_of_objects_still_cold_are_few_a_round() -> None:
    """Restores that finish out of order (every other one first): each round's reads of
    objects not restored yet stay within its first lot (1 % of those waiting)."""
    keys = [f"k{i:03}" for i in range(400)]
    store = ColdStore(keys)

    def on_sleep(n: int) -> None:
        if n == 2:
            for key in keys[::2]:
                store.state[key] = "restored"
        if n == 6:
            for key in keys:
                store.state[key] = "restored"

    fetcher = Fetcher(store, on_sleep)
    restoring = _restoring(store, fetcher)
    items: list[Item] = [{"path": key, "digest": key} for key in keys]
    fetcher.run(items)
    first = fetcher.cold_gets[0]
    restoring.settle(fetcher.run)
    assert sorted(fetcher.fetched) == keys
    rounds = {n: count for n, count in fetcher.cold_gets.items() if n > 0}
    assert first == 400 and rounds and max(rounds.values()) <= 4, rounds


def test_a_detached_job_asks_once_then_polls_a_round_a_look() -> None:
    """A detached job's coordinator asks about the cold objects met (a restore each) and
    waits no longer; a later one, from what the first saved, makes one round: 1 % of the
    objects HEADed, the files of those restored fetched, in lots, until one is cold."""
    keys = [f"k{i:03}" for i in range(200)]
    store = ColdStore(keys)
    first = Fetcher(store)
    restoring = _restoring(store, first)
    for i, key in enumerate(keys):
        restoring.resume(key, {"path": f"f{i}", "digest": key, "line": i}, None)
    assert restoring.to_ask
    restoring.ask(first.run)
    assert not restoring.to_ask and first.fetched == [] and first.sleeps == 0
    assert set(store.restores.values()) == {1} and len(store.restores) == 200
    orders = {cold.key: cold.order for cold in restoring.waiting_objects()}
    assert sorted(orders, key=orders.__getitem__) == keys
    for key in keys[:50]:
        store.state[key] = "restored"
    later = Fetcher(store)
    again = _restoring(store, later)
    for i, key in enumerate(keys):
        again.resume(key, {"path": f"f{i}", "digest": key, "line": i}, orders[key])
    assert not again.to_ask
    heads = sum(store.heads.values())
    assert again.poll_once(later.run, 0) == 2
    assert sum(store.heads.values()) - heads == 2  # 1 % of 200
    assert sorted(later.fetched) == sorted(f"f{i}" for i in range(50))
    assert [cold.key for cold in again.waiting_objects()] == keys[50:]
    assert later.sleeps == 0 and set(store.restores.values()) == {1}
