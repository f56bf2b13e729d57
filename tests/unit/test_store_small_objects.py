"""The stores' small objects (get_range, get_bytes, put_bytes, delete, list_dated) and a
vault's config read from its store: file:// on tmp_path, s3:// on moto's in-process mock,
and S3 answers that a real store may give (a Range ignored, other bytes sent) made by hand."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from botocore.response import StreamingBody

from dmp_cli.errors import FatalStoreError, ObjectMissing, StoreError
from dmp_cli.packs.config import CONFIG_KEY, VaultConfig, VaultConfigError
from dmp_cli.store import Store
from dmp_cli.store.config import read_config
from dmp_cli.store.local import FileStore
from dmp_cli.store.s3 import S3Store

DATA = bytes(range(256)) * 40  # 10,240 bytes, each byte telling its place modulo 256


@pytest.fixture
def fstore(tmp_path: Path) -> FileStore:
    root = tmp_path / "vault"
    root.mkdir()
    return FileStore(str(root))


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest) -> Store:
    if request.param == "file":
        made: Store = request.getfixturevalue("fstore")
        return made
    return S3Store(request.getfixturevalue("s3"), "vault", "object")


# ---------------------------------------------------------------- both stores


def test_put_bytes_then_get_bytes_and_head(store: Store) -> None:
    assert store.get_bytes("index/a/x.idx") is None
    store.put_bytes("index/a/x.idx", DATA)
    assert store.get_bytes("index/a/x.idx") == DATA
    info = store.head("index/a/x.idx")
    assert info is not None and info.size == len(DATA)


def test_put_bytes_replaces(store: Store) -> None:
    store.put_bytes(CONFIG_KEY, b"first")
    store.put_bytes(CONFIG_KEY, b"second, longer")
    assert store.get_bytes(CONFIG_KEY) == b"second, longer"


def test_put_bytes_of_nothing(store: Store) -> None:
    store.put_bytes("empty", b"")
    assert store.get_bytes("empty") == b""


@pytest.mark.parametrize(
    ("start", "length"),
    [(0, 1), (0, len(DATA)), (300, 700), (len(DATA) - 5, 5)],
    ids=["first-byte", "whole", "middle", "last-bytes"],
)
def test_get_range(store: Store, start: int, length: int) -> None:
    store.put_bytes("packs/p.tar", DATA)
    assert store.get_range("packs/p.tar", start, length) == DATA[start : start + length]


def test_get_range_of_nothing_asks_nothing(store: Store) -> None:
    # Not even whether the object is there.
    assert store.get_range("packs/absent.tar", 10, 0) == b""


def test_get_range_of_a_missing_object(store: Store) -> None:
    with pytest.raises(ObjectMissing, match=r"packs/absent\.tar: not in the vault"):
        store.get_range("packs/absent.tar", 0, 10)


@pytest.mark.parametrize(
    ("start", "length"),
    [(len(DATA) - 5, 10), (len(DATA), 1), (len(DATA) + 100, 1)],
    ids=["past-the-end", "at-the-end", "beyond-the-end"],
)
def test_get_range_beyond_the_object(store: Store, start: int, length: int) -> None:
    store.put_bytes("packs/p.tar", DATA)
    with pytest.raises(StoreError) as caught:
        store.get_range("packs/p.tar", start, length)
    message = str(caught.value)
    assert message.startswith(store.key_url("packs/p.tar") + ": ")
    assert "shorter" in message and "\n" not in message
    assert not caught.value.transient


def test_get_range_refuses_a_negative_range(store: Store) -> None:
    with pytest.raises(ValueError):
        store.get_range("packs/p.tar", -1, 10)


def test_delete(store: Store) -> None:
    store.put_bytes("index/a/x.idx", b"x")
    store.delete("index/a/x.idx")
    assert store.get_bytes("index/a/x.idx") is None
    store.delete("index/a/x.idx")  # gone already: nothing
    store.delete("never/there")


def test_list_dated(store: Store) -> None:
    before = datetime.now(UTC) - timedelta(minutes=5)
    store.put_bytes("index/a/one.idx", b"1")
    store.put_bytes("index/a/two.idx", b"22")
    store.put_bytes("index/b/three.idx", b"333")
    store.put_bytes("packs/p.tar", b"4444")
    listed = sorted(store.list_dated("index/"))
    assert [(key, size) for key, size, _ in listed] == [
        ("index/a/one.idx", 1),
        ("index/a/two.idx", 2),
        ("index/b/three.idx", 3),
    ]
    for _, _, written in listed:
        assert written.tzinfo is not None
        assert before < written < datetime.now(UTC) + timedelta(minutes=5)
    assert sorted(key for key, _, _ in store.list_dated("index/a/t")) == ["index/a/two.idx"]
    assert sorted(store.list_keys("index/")) == [(key, size) for key, size, _ in listed]


def test_read_config(store: Store) -> None:
    assert read_config(store) is None
    config = VaultConfig(pack_below=512 << 10, pack_target=32 << 20)
    store.put_bytes(CONFIG_KEY, config.encode())
    assert read_config(store) == config


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b"{not json", "unreadable JSON"),
        (b'{"format": "dmp-vault", "version": 2}\n', "version 2 is not one this dmp knows"),
        (b'{"format": "something else", "version": 1}\n', "not a dmp vault config"),
    ],
    ids=["not-json", "unknown-version", "not-a-config"],
)
def test_read_config_refuses_what_it_cannot_read(store: Store, data: bytes, said: str) -> None:
    store.put_bytes(CONFIG_KEY, data)
    with pytest.raises(VaultConfigError) as caught:
        read_config(store)
    message = str(caught.value)
    assert message.startswith(store.key_url(CONFIG_KEY) + ": ")
    assert said in message and "\n" not in message


# ---------------------------------------------------------------- file://


def test_file_put_bytes_leaves_no_temporary(fstore: FileStore) -> None:
    fstore.put_bytes("index/a/x.idx", b"x" * 1000)
    fstore.put_bytes("index/a/x.idx", b"y" * 10)
    assert os.listdir(os.path.join(fstore.root, "index", "a")) == ["x.idx"]
    mode = os.stat(os.path.join(fstore.root, "index", "a", "x.idx")).st_mode
    assert stat.S_IMODE(mode) == 0o600  # as put_file's objects


def test_file_put_bytes_with_named_temporaries(
    fstore: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DMP_NAMED_TEMPORARIES", "1")
    fstore.put_bytes(CONFIG_KEY, b"a config")
    fstore.put_bytes(CONFIG_KEY, b"another")
    assert os.listdir(fstore.root) == [CONFIG_KEY]
    assert fstore.get_bytes(CONFIG_KEY) == b"another"


def test_file_put_bytes_where_it_cannot_write(fstore: FileStore) -> None:
    Path(fstore.root, "index").write_bytes(b"a file where a directory should be")
    with pytest.raises(StoreError, match=r"/index/a/x\.idx: "):
        fstore.put_bytes("index/a/x.idx", b"x")


def test_file_a_directory_is_no_object(fstore: FileStore) -> None:
    os.makedirs(os.path.join(fstore.root, "index", "a"))
    assert fstore.get_bytes("index/a") is None
    with pytest.raises(ObjectMissing):
        fstore.get_range("index/a", 0, 1)
    fstore.delete("index/a")
    assert os.path.isdir(os.path.join(fstore.root, "index", "a"))


def test_file_list_dated_is_the_files_mtime(fstore: FileStore) -> None:
    fstore.put_bytes("index/a/x.idx", b"x")
    then = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    os.utime(os.path.join(fstore.root, "index", "a", "x.idx"), (then.timestamp(),) * 2)
    assert list(fstore.list_dated("")) == [("index/a/x.idx", 1, then)]


# ---------------------------------------------------------------- s3://: the answers


class _Client:
    """A client whose GET answers as it is told: a status, a Content-Range, a body."""

    def __init__(self, status: int, body: bytes, content_range: str | None = None) -> None:
        self.status, self.body, self.content_range = status, body, content_range
        self.asked: list[dict[str, Any]] = []
        self.stream: _Counted | None = None

    def get_object(self, **args: Any) -> dict[str, Any]:
        self.asked.append(args)
        self.stream = _Counted(self.body)
        reply: dict[str, Any] = {
            "ResponseMetadata": {"HTTPStatusCode": self.status},
            "Body": StreamingBody(self.stream, len(self.body)),
        }
        if self.content_range is not None:
            reply["ContentRange"] = self.content_range
        return reply


class _Counted(BytesIO):
    """A body that notes the most bytes one read asked for, and how far it was read when
    it was closed."""

    largest = 0
    read_to: int | None = None

    def read(self, amount: int | None = -1) -> bytes:
        self.largest = max(self.largest, amount if amount and amount > 0 else len(self.getvalue()))
        return super().read(amount)

    def close(self) -> None:
        if not self.closed:
            self.read_to = self.tell()
        super().close()


def _store(client: _Client) -> S3Store:
    return S3Store(client, "vault", "object")


def test_s3_get_range_asks_for_its_bytes() -> None:
    client = _Client(206, DATA[100:150], "bytes 100-149/10240")
    assert _store(client).get_range("packs/p.tar", 100, 50) == DATA[100:150]
    assert client.asked == [
        {"Bucket": "vault", "Key": "object/packs/p.tar", "Range": "bytes=100-149"}
    ]


def test_s3_get_range_cuts_the_bytes_from_a_whole_object() -> None:
    """A store that ignores Range answers 200 with the whole object: the bytes asked for
    are cut from it, read a chunk at a time, and what follows them is never read."""
    big = os.urandom(5 << 20)
    client = _Client(200, big)
    start = (3 << 20) + 17
    assert _store(client).get_range("packs/p.tar", start, 1000) == big[start : start + 1000]
    assert client.stream is not None
    assert client.stream.largest <= 1 << 20  # never the whole body at once
    assert client.stream.read_to == start + 1000  # nor what follows the bytes asked for


def test_s3_get_range_cuts_the_bytes_from_a_wider_range() -> None:
    client = _Client(206, DATA[0:4096], "bytes 0-4095/10240")
    assert _store(client).get_range("packs/p.tar", 1000, 24) == DATA[1000:1024]


@pytest.mark.parametrize(
    ("content_range", "said"),
    [
        ("bytes 200-249/10240", "bytes 100-149 asked for, bytes 200-249/10240 sent"),
        (None, "bytes 100-149 asked for, no Content-Range sent"),
        ("items 100-149", "bytes 100-149 asked for, bytes items 100-149 sent"),
    ],
    ids=["other-bytes", "no-content-range", "not-bytes"],
)
def test_s3_get_range_refuses_other_bytes(content_range: str | None, said: str) -> None:
    client = _Client(206, DATA[200:250], content_range)
    with pytest.raises(StoreError) as caught:
        _store(client).get_range("packs/p.tar", 100, 50)
    assert str(caught.value) == f"s3://vault/object/packs/p.tar: {said}"


def test_s3_get_range_refuses_a_short_whole_object() -> None:
    client = _Client(200, DATA[:120])
    with pytest.raises(StoreError) as caught:
        _store(client).get_range("packs/p.tar", 100, 50)
    assert str(caught.value) == (
        "s3://vault/object/packs/p.tar: 20 of the 50 bytes at 100 came (the object is shorter)"
    )


def test_s3_get_range_refuses_an_answer_cut_short() -> None:
    """A body shorter than its Content-Length: botocore says so, a transient error."""

    class Cut(_Client):
        def get_object(self, **args: Any) -> dict[str, Any]:
            reply = super().get_object(**args)
            reply["Body"] = StreamingBody(BytesIO(self.body[:10]), len(self.body))
            return reply

    with pytest.raises(StoreError) as caught:
        _store(Cut(206, DATA[100:150], "bytes 100-149/10240")).get_range("packs/p.tar", 100, 50)
    assert caught.value.transient
    assert str(caught.value).startswith("s3://vault/object/packs/p.tar: ")


def test_s3_missing_bucket_is_fatal(s3: Any) -> None:
    absent = S3Store(s3, "absent", "object")
    with pytest.raises(FatalStoreError, match="s3://absent: no such bucket"):
        absent.get_bytes(CONFIG_KEY)
    with pytest.raises(FatalStoreError, match="s3://absent: no such bucket"):
        absent.get_range("packs/p.tar", 0, 10)
    with pytest.raises(FatalStoreError, match="s3://absent: no such bucket"):
        absent.put_bytes(CONFIG_KEY, b"x")
    with pytest.raises(FatalStoreError, match="s3://absent: no such bucket"):
        absent.delete(CONFIG_KEY)
    with pytest.raises(FatalStoreError, match="s3://absent: no such bucket"):
        list(absent.list_dated(""))


def test_s3_put_bytes_records_its_sha256(s3: Any) -> None:
    store = S3Store(s3, "vault", "object")
    store.put_bytes(CONFIG_KEY, b"a config")
    info = store.head(CONFIG_KEY)
    assert info is not None and info.digest is not None and len(info.digest) == 64
