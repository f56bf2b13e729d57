"""S3Store's small objects (get_range, get_bytes, put_bytes, delete, list_dated) against
moto's S3 server, a real HTTP endpoint: straight, through a proxy that drops the Range of
every GET (a store that ignores it), and refused for want of a bucket or of rights."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.config import Config

from dmp_cli.errors import FatalStoreError, ObjectMissing, StoreError
from dmp_cli.packs.config import CONFIG_KEY, VaultConfig
from dmp_cli.store.config import read_config
from dmp_cli.store.s3 import S3Store
from tests.integration.s3proxy import fault_proxy
from tests.servers import Service, moto_client

pytestmark = pytest.mark.integration
MiB = 1 << 20
DATA = os.urandom(3 * MiB + 123)


@pytest.fixture
def s3(s3_server: Service) -> Iterator[Any]:
    client = moto_client(
        s3_server.url, config=Config(retries={"mode": "standard", "max_attempts": 2})
    )
    yield client
    client.close()


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"dmp-{uuid.uuid4().hex[:16]}"  # one per test: tests never see each other
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def store(s3: Any, bucket: str) -> S3Store:
    return S3Store(s3, bucket, "object")


def test_small_objects_round_trip(store: S3Store, s3: Any, bucket: str) -> None:
    assert store.get_bytes("index/a/pack-x.idx") is None
    store.put_bytes("index/a/pack-x.idx", b"an index\n")
    store.put_bytes("packs/p.tar", DATA)
    keys = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert sorted(k["Key"] for k in keys) == ["object/index/a/pack-x.idx", "object/packs/p.tar"]
    assert store.get_bytes("index/a/pack-x.idx") == b"an index\n"
    assert store.get_range("packs/p.tar", 2 * MiB + 5, 70_000) == DATA[2 * MiB + 5 :][:70_000]
    assert store.get_range("packs/p.tar", len(DATA) - 1, 1) == DATA[-1:]
    store.delete("index/a/pack-x.idx")
    store.delete("index/a/pack-x.idx")  # already gone: nothing
    assert store.get_bytes("index/a/pack-x.idx") is None


def test_get_range_of_a_missing_object(store: S3Store) -> None:
    with pytest.raises(ObjectMissing) as caught:
        store.get_range("packs/absent.tar", 0, 10)
    assert str(caught.value) == f"{store.key_url('packs/absent.tar')}: not in the vault"


@pytest.mark.parametrize(
    ("start", "length", "said"),
    [
        (
            len(DATA) - 10,
            20,
            f"10 of the 20 bytes at {len(DATA) - 10} came (the object is shorter)",
        ),
        (len(DATA), 1, f"no byte {len(DATA)} (the object is shorter)"),
    ],
    ids=["past-the-end", "beyond-the-end"],
)
def test_get_range_beyond_the_object(store: S3Store, start: int, length: int, said: str) -> None:
    store.put_bytes("packs/p.tar", DATA)
    with pytest.raises(StoreError) as caught:
        store.get_range("packs/p.tar", start, length)
    assert str(caught.value) == f"{store.key_url('packs/p.tar')}: {said}"


def test_list_dated(store: S3Store) -> None:
    before = datetime.now(UTC) - timedelta(minutes=5)
    store.put_bytes("index/a/one.idx", b"1")
    store.put_bytes("index/b/two.idx", b"22")
    store.put_bytes("packs/p.tar", b"333")
    listed = sorted(store.list_dated("index/"))
    assert [(key, size) for key, size, _ in listed] == [
        ("index/a/one.idx", 1),
        ("index/b/two.idx", 2),
    ]
    for _, _, written in listed:
        assert written.tzinfo is not None
        assert before < written < datetime.now(UTC) + timedelta(minutes=5)


def test_list_dated_page_by_page(store: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dmp_cli.store.s3.listing.PAGE_KEYS", 2)
    for n in range(5):
        store.put_bytes(f"index/0/pack-{n}.idx", b"x" * n)
    assert sorted((key, size) for key, size, _ in store.list_dated("index/0/")) == [
        (f"index/0/pack-{n}.idx", n) for n in range(5)
    ]


def test_read_config(store: S3Store) -> None:
    assert read_config(store) is None
    config = VaultConfig(pack_below=256 << 10, pack_target=128 * MiB)
    store.put_bytes(CONFIG_KEY, config.encode())
    assert read_config(store) == config


def test_get_range_from_a_store_that_ignores_range(
    s3_server: Service, s3: Any, bucket: str
) -> None:
    """Every GET reaches the store without its Range, and the store answers 200 with the
    whole object: the bytes asked for are cut from it all the same."""
    S3Store(s3, bucket, "object").put_bytes("packs/p.tar", DATA)
    with fault_proxy(s3_server.url, ignore_range=True) as proxy:
        client = moto_client(proxy.url)
        try:
            store = S3Store(client, bucket, "object")
            for start, length in [(0, 10), (MiB + 3, 4096), (len(DATA) - 100, 100)]:
                assert store.get_range("packs/p.tar", start, length) == DATA[start:][:length]
            with pytest.raises(StoreError) as caught:
                store.get_range("packs/p.tar", len(DATA) - 10, 20)
            assert str(caught.value) == (
                f"{store.key_url('packs/p.tar')}: 10 of the 20 bytes at {len(DATA) - 10} came "
                "(the object is shorter)"
            )
        finally:
            client.close()
    assert proxy.counts.kinds()["get"] == 4


def test_the_proxy_does_drop_the_range(s3_server: Service, s3: Any, bucket: str) -> None:
    """What the test above stands on: through the proxy, a ranged GET gets the whole object."""
    s3.put_object(Bucket=bucket, Key="whole", Body=b"0123456789")
    with fault_proxy(s3_server.url, ignore_range=True) as proxy:
        client = moto_client(proxy.url)
        try:
            reply = client.get_object(Bucket=bucket, Key="whole", Range="bytes=2-4")
            assert reply["ResponseMetadata"]["HTTPStatusCode"] == 200
            assert reply["Body"].read() == b"0123456789"
        finally:
            client.close()


def test_no_such_bucket_is_fatal(s3: Any) -> None:
    absent = S3Store(s3, f"dmp-absent-{uuid.uuid4().hex[:8]}", "object")
    calls = [
        lambda: absent.get_bytes(CONFIG_KEY),
        lambda: absent.get_range("packs/p.tar", 0, 10),
        lambda: absent.put_bytes(CONFIG_KEY, b"x"),
        lambda: absent.delete(CONFIG_KEY),
        lambda: list(absent.list_dated("index/")),
    ]
    for call in calls:
        with pytest.raises(FatalStoreError) as caught:
            call()
        assert str(caught.value) == f"s3://{absent.bucket}: no such bucket"


def _client_of(url: str, key_id: str, secret: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )


def test_access_denied_is_fatal(strict_s3: tuple[str, dict[str, str]]) -> None:
    url, keys = strict_s3
    client = _client_of(url, keys["AWS_ACCESS_KEY_ID"], keys["AWS_SECRET_ACCESS_KEY"])
    try:
        store = S3Store(client, "locked", "object")
        for call in (
            lambda: store.get_bytes(CONFIG_KEY),
            lambda: store.get_range("packs/p.tar", 0, 10),
            lambda: store.put_bytes(CONFIG_KEY, b"x"),
            lambda: store.delete(CONFIG_KEY),
        ):
            with pytest.raises(FatalStoreError, match="access denied"):
                call()
    finally:
        client.close()


def test_credentials_rejected_are_fatal(strict_s3: tuple[str, dict[str, str]]) -> None:
    url, _ = strict_s3
    client = _client_of(url, "AKIANOBODY0000000000", "testing")
    try:
        with pytest.raises(FatalStoreError, match="credentials rejected"):
            S3Store(client, "locked", "object").get_bytes(CONFIG_KEY)
    finally:
        client.close()
