"""An object's storage class and restore, as --vault --json says them: read from a HEAD's
answer or a listing's entry, carried by a listing's row (inline, or spilled beside the
run) into the plan's answers, and turned into the row's JSON fields."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import boto3
import pytest
from botocore.stub import Stubber

from dmp_cli.cli.output import state_fields
from dmp_cli.errors import StoreError
from dmp_cli.layout import digest_key
from dmp_cli.listing import OP_NAME, listing_item, vault_list_op
from dmp_cli.ops import Context
from dmp_cli.options import Options, StoreSpec, Work
from dmp_cli.rows import Item
from dmp_cli.rules import Command
from dmp_cli.runs.planning import Answers, Checksums, Plan, _gather
from dmp_cli.store import ObjectState, Store, StorePool
from dmp_cli.store.local import FileStore
from dmp_cli.store.s3.backend import S3Store, _listed_state, _state
from dmp_cli.transfer import PackStates


def sha(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


# ------------------------------------------------------------------ reading states

LISTED = [
    ({"StorageClass": "STANDARD"}, True, ["STANDARD", None, None]),
    ({}, True, ["STANDARD", None, None]),
    ({"StorageClass": "GLACIER"}, True, ["GLACIER", None, None]),
    ({"StorageClass": "GLACIER"}, False, ["GLACIER", "unknown", None]),
    ({"StorageClass": "STANDARD_IA"}, False, ["STANDARD_IA", None, None]),
    (
        {"StorageClass": "DEEP_ARCHIVE", "RestoreStatus": {"IsRestoreInProgress": True}},
        True,
        ["DEEP_ARCHIVE", "ongoing", None],
    ),
    (
        {
            "StorageClass": "GLACIER",
            "RestoreStatus": {
                "IsRestoreInProgress": False,
                "RestoreExpiryDate": datetime(2100, 1, 1, tzinfo=UTC),
            },
        },
        True,
        ["GLACIER", "restored", "2100-01-01T00:00:00Z"],
    ),
]


@pytest.mark.parametrize(
    ("entry", "asked", "fields"),
    LISTED,
    ids=["standard", "no-class", "cold", "cold-unasked", "ia-unasked", "ongoing", "restored"],
)
def test_a_listings_entry_tells_the_state(
    entry: dict[str, Any], asked: bool, fields: list[Any]
) -> None:
    assert _listed_state(entry, asked).fields() == fields


def test_a_heads_restore_date_is_said_in_iso_8601() -> None:
    said = 'ongoing-request="false", expiry-date="Fri, 23 Dec 2012 00:00:00 GMT"'
    state = _state({"StorageClass": "GLACIER", "Restore": said})
    assert state.fields() == ["GLACIER", "restored", "2012-12-23T00:00:00Z"]
    assert _state({}).fields() == ["STANDARD", None, None]  # S3 leaves STANDARD out


@pytest.mark.parametrize(
    ("state", "fields"),
    [
        (None, {}),
        ([None, None, None], {"storage_class": None, "restore": None}),
        (["GLACIER", "ongoing", None], {"storage_class": "GLACIER", "restore": "ongoing"}),
        (
            ["GLACIER", "restored", "2100-01-01T00:00:00Z"],
            {
                "storage_class": "GLACIER",
                "restore": "restored",
                "restore_expiry": "2100-01-01T00:00:00Z",
            },
        ),
    ],
    ids=["none", "no-classes", "ongoing", "restored"],
)
def test_the_json_fields_of_a_row(state: list[Any] | None, fields: dict[str, Any]) -> None:
    row = {"status": "present"} if state is None else {"status": "present", "state": state}
    assert state_fields(row) == fields


# ------------------------------------------------------------------ a store that refuses


def test_a_store_that_refuses_to_list_restores_is_not_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("s3", region_name="us-east-1")
    store = S3Store(client, "vault", "v")
    asked = {"Bucket": "vault", "Prefix": "v/ab/", "MaxKeys": 1000}
    page = {
        "IsTruncated": False,
        "KeyCount": 1,
        "Contents": [{"Key": "v/ab/cd/x", "Size": 3, "StorageClass": "GLACIER"}],
    }
    with Stubber(client) as stub:
        stub.add_client_error(
            "list_objects_v2",
            service_error_code="InvalidArgument",
            http_status_code=400,
            expected_params={**asked, "OptionalObjectAttributes": ["RestoreStatus"]},
        )
        stub.add_response("list_objects_v2", page, expected_params=asked)
        stub.add_response("list_objects_v2", page, expected_params=asked)
        first = list(store.list_states("ab/"))
        again = list(store.list_states("ab/"))
        stub.assert_no_pending_responses()
    assert first == again == [("ab/cd/x", 3, ObjectState("GLACIER", "unknown"))]


# ------------------------------------------------------------------ carried into the plan


CLASSES = ["STANDARD", "GLACIER", "DEEP_ARCHIVE"]


def _state_of(digest: str) -> ObjectState:
    """The state these tests give a checksum's object: by its last hex digit."""
    n = int(digest[-1], 16)
    if n == 15:
        return ObjectState("GLACIER", "restored", "2100-01-01T00:00:00Z")
    return ObjectState(CLASSES[n % 3], "ongoing" if n == 14 else None)


@pytest.fixture
def vault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[str]]]:
    """A directory vault of 120 checksums' objects, told in classes by ``_state_of``."""
    root = tmp_path / "vault"
    root.mkdir()
    store = FileStore(str(root))
    digests = [sha(i) for i in range(120)]
    for digest in digests:
        store.put_bytes(digest_key(digest), b"x")

    def list_states(self: FileStore, prefix: str) -> Iterator[tuple[str, int, ObjectState]]:
        for key, size in self.list_keys(prefix):
            yield key, size, _state_of(key.replace("/", ""))

    monkeypatch.setattr(FileStore, "list_states", list_states)
    yield f"file://{root}", digests


@pytest.mark.parametrize(
    ("spill", "whole"),
    [(False, False), (True, False), (True, True)],
    ids=["inline", "spilled", "spilled-whole-vault"],
)
def test_a_listings_states_reach_the_plans_items(
    vault: tuple[str, list[str]], spill: bool, whole: bool
) -> None:
    url, digests = vault
    wanted = digests[:80] + [sha(1000 + i) for i in range(5)]  # 5 not in the vault
    checksums = Checksums(spill_at=1 if spill else 10_000)
    for digest in wanted:
        checksums.add(digest)
    checksums.finish()
    assert (checksums.spilled is not None) == spill
    spec = StoreSpec(vault=url)
    pool = StorePool()
    ctx = Context(Work.of(OP_NAME, spec, Options()), pool)
    try:
        firsts = sorted(checksums.counts)
        if whole:
            items = [listing_item("", spill=checksums.spilled, states=True)]
        elif spill:
            items = [
                listing_item(f"{first}/", spill=checksums.spilled, states=True) for first in firsts
            ]
        else:
            items = [
                listing_item(f"{first}/", want=checksums.block(first), states=True)
                for first in firsts
            ]
        rows = [vault_list_op(item, ctx) for item in items]
        plan = Plan("list", "", Command.VAULT, Answers(checksums.spilled), checksums=checksums)
        _gather(plan, rows, lambda note: None)
        annotated = list(plan.annotate(Item(digest=d, path=d) for d in wanted))
    finally:
        plan.close()
        pool.close()
    for item in annotated:
        got: dict[str, Any] = dict(item)
        if item["digest"] in digests:
            assert got["listed"] == 1
            assert got["listed_state"] == _state_of(item["digest"]).fields(), item["digest"]
        else:
            assert got["listed"] == -1 and "listed_state" not in got


# ------------------------------------------------------------------ a pack's state


class CountingStore:
    """A store that tells one pack's state, counting the HEADs; ``fail`` raises each
    time (a transient or a lasting StoreError)."""

    url = "s3://counted/vault"

    def __init__(self, fail: StoreError | None = None) -> None:
        self.heads = 0
        self.fail = fail
        self._lock = threading.Lock()

    def object_state(self, key: str) -> ObjectState | None:
        with self._lock:
            self.heads += 1
        time.sleep(0.01)  # the other threads ask meanwhile
        if self.fail is not None:
            raise self.fail
        return ObjectState("DEEP_ARCHIVE")


def _ask(states: PackStates, store: CountingStore, times: int) -> list[ObjectState | None]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: states.get(cast(Store, store), "packs/p.tar"), range(times)))


def test_a_packs_state_is_asked_once_for_all_its_members() -> None:
    store = CountingStore()
    states = PackStates()
    assert _ask(states, store, 64) == [ObjectState("DEEP_ARCHIVE")] * 64
    assert store.heads == 1


def test_a_packs_state_is_asked_again_once_old() -> None:
    store = CountingStore()
    states = PackStates(ttl=0.0)
    states.get(cast(Store, store), "packs/p.tar")
    time.sleep(0.01)
    states.get(cast(Store, store), "packs/p.tar")
    assert store.heads == 2


def test_a_refused_head_says_no_state_and_is_not_made_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DMP_RETRY_DELAYS", "0")
    store = CountingStore(StoreError("s3://counted/vault/packs/p.tar: access denied"))
    states = PackStates()
    assert _ask(states, store, 16) == [None] * 16
    assert store.heads == 1


def test_a_head_that_failed_transiently_is_made_again_for_the_next_member(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DMP_RETRY_DELAYS", "")  # no retries: one HEAD a question
    store = CountingStore(StoreError("s3://counted/vault/packs/p.tar: reset", transient=True))
    states = PackStates()
    for _ in range(3):
        assert states.get(cast(Store, store), "packs/p.tar") is None
    assert store.heads == 3
