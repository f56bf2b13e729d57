"""The object stores: file:// on tmp_path, s3:// on moto's in-process mock."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)
from s3transfer.exceptions import RetriesExceededError, S3DownloadFailedError
from s3transfer.manager import TransferConfig

from dmp_cli.errors import (
    FatalStoreError,
    IntegrityError,
    ObjectExists,
    ObjectMissing,
    StoreError,
    UsageError,
)
from dmp_cli.layout import digest_key
from dmp_cli.options import StoreSpec
from dmp_cli.store import open_store
from dmp_cli.store.local import FileStore
from dmp_cli.store.s3 import ConditionalPuts, S3Store, client_error, translated
from dmp_cli.urls import Location, parse_url, same_kind

MiB = 1 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


# ---------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("s3://bucket/a/prefix/", Location("s3", "bucket", "a/prefix")),
        ("s3://bucket", Location("s3", "bucket", "")),
        ("file:///srv/vault/", Location("file", "", "/srv/vault")),
        ("file:///a%20b", Location("file", "", "/a b")),
    ],
    ids=["s3-prefix", "s3-bucket-only", "file", "file-quoted"],
)
def test_parse_url(url: str, location: Location) -> None:
    assert parse_url(url) == location


@pytest.mark.parametrize(
    "url",
    ["s3:///nobucket", "file://host/dir", "http://x/y", "/plain"],
    ids=["s3-no-bucket", "file-host", "http", "no-scheme"],
)
def test_parse_url_refuses(url: str) -> None:
    with pytest.raises(UsageError):
        parse_url(url)


def test_same_kind() -> None:
    assert same_kind("s3://a/b", "s3://c")
    assert not same_kind("s3://a/b", "file:///c")


# ---------------------------------------------------------------- file://


@pytest.fixture
def fstore(tmp_path: Path) -> FileStore:
    root = tmp_path / "vault"
    root.mkdir()
    store = open_store(f"file://{root}", StoreSpec(f"file://{root}"))
    assert isinstance(store, FileStore)
    return store


def test_file_put_head_get(fstore: FileStore, tmp_path: Path) -> None:
    data = os.urandom(3000)
    digest = sha(data)
    key = digest_key(digest)
    assert fstore.head(key) is None
    assert fstore.put_file(key, write(tmp_path / "f", data), digest, len(data)) == len(data)
    info = fstore.head(key)
    assert info is not None and info.size == len(data)
    assert fstore.has(key, digest)
    out = BytesIO()
    assert fstore.get_file(key, out) == len(data)
    assert out.getvalue() == data
    assert os.path.isfile(os.path.join(fstore.root, *key.split("/")))


def test_file_put_refuses_changed_content(fstore: FileStore, tmp_path: Path) -> None:
    path = write(tmp_path / "f", b"new content")
    digest = sha(b"old content")
    with pytest.raises(IntegrityError, match="changed since the manifest"):
        fstore.put_file(digest_key(digest), path, digest, 11)
    leftovers = [f for _, _, files in os.walk(fstore.root) for f in files]
    assert leftovers == []  # neither the object nor its temporary file


def test_file_get_missing(fstore: FileStore) -> None:
    with pytest.raises(ObjectMissing):
        fstore.get_file(digest_key(sha(b"x")), BytesIO())


def test_file_copy(fstore: FileStore, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    other = FileStore(str(tmp_path / "other"))
    data = b"payload"
    other.put_file("run/a.txt", write(tmp_path / "f", data), sha(data), len(data))
    fstore.copy(other, "run/a.txt", digest_key(sha(data)), sha(data))
    assert fstore.has(digest_key(sha(data)), sha(data))
    assert not fstore.has("run/a.txt", sha(data))


def test_file_check_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FatalStoreError, match="no such directory"):
        FileStore(str(tmp_path / "absent")).check()


# ---------------------------------------------------------------- s3://


def small_parts() -> TransferConfig:
    # 5 MiB: the smallest part S3 (and moto) accept, so multipart is tested cheaply.
    return TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)


def test_s3_single_put_carries_checksum_and_metadata(s3: object, tmp_path: Path) -> None:
    sent: list[dict[str, str]] = []
    s3.meta.events.register(  # type: ignore[attr-defined]
        "before-send.s3.PutObject", lambda request, **_: sent.append(dict(request.headers))
    )
    store = S3Store(s3, "vault", "object")
    data = os.urandom(1000)
    digest = sha(data)
    key = digest_key(digest)
    store.put_file(key, write(tmp_path / "f", data), digest, len(data))
    reply = s3.head_object(Bucket="vault", Key=f"object/{key}")  # type: ignore[attr-defined]
    assert reply["Metadata"]["sha256"] == digest
    assert re.fullmatch(r"[0-9a-f]{32}", reply["Metadata"]["dmp-upload"])  # the upload's token
    [headers] = sent
    assert headers["x-amz-checksum-sha256"] == base64.b64encode(bytes.fromhex(digest))
    info = store.head(key)
    assert info is not None and info.digest == digest and info.size == 1000


def test_s3_multipart_round_trip(s3: object, tmp_path: Path) -> None:
    store = S3Store(s3, "vault", "object", small_parts())
    data = os.urandom(12 * MiB)
    digest = sha(data)
    key = digest_key(digest)
    store.put_file(key, write(tmp_path / "f", data), digest, len(data))
    reply = s3.head_object(Bucket="vault", Key=f"object/{key}")  # type: ignore[attr-defined]
    assert reply["ETag"].endswith('-3"')  # three parts: it really went multipart
    assert reply["Metadata"]["sha256"] == digest
    out = BytesIO()
    store.get_file(key, out)
    assert sha(out.getvalue()) == digest


@pytest.mark.parametrize("size", [1000, 12 * MiB], ids=["single-put", "multipart"])
def test_s3_changed_file_is_never_stored(s3: object, tmp_path: Path, size: int) -> None:
    """moto accepts a wrong ChecksumSHA256, so this is dmp's own check at work."""
    store = S3Store(s3, "vault", "object", small_parts())
    old = os.urandom(size)
    new = bytearray(old)
    new[-1] ^= 1
    digest = sha(old)
    with pytest.raises(IntegrityError, match="changed since the manifest"):
        store.put_file(digest_key(digest), write(tmp_path / "f", bytes(new)), digest, size)
    assert store.head(digest_key(digest)) is None
    uploads = s3.list_multipart_uploads(Bucket="vault")  # type: ignore[attr-defined]
    assert uploads.get("Uploads", []) == []  # the multipart upload was aborted
    assert store._big_files.acquire(blocking=False)  # its turn was given back


def test_s3_shrunk_file_is_never_stored(s3: object, tmp_path: Path) -> None:
    store = S3Store(s3, "vault", "object", small_parts())
    data = os.urandom(12 * MiB)
    path = write(tmp_path / "f", data)
    digest = sha(data)
    reader_size = len(data)
    os.truncate(path, 7 * MiB)
    # The size seen when the upload began; the file shrinks while it is read.
    with open(path, "rb") as source, pytest.raises(IntegrityError, match="shrank"):
        store._put_multipart(digest_key(digest), source, reader_size, digest, "token", None)
    assert store.head(digest_key(digest)) is None


def test_s3_multipart_upload_aborts_the_stale_uploads_of_its_key_only(
    s3: Any, tmp_path: Path
) -> None:
    store = S3Store(s3, "vault", "object", small_parts())
    data = os.urandom(6 * MiB)
    key = digest_key(sha(data))
    others = [f"object/{key}.longer", f"object/{digest_key(sha(b'other'))}"]
    for name in [f"object/{key}", f"object/{key}", *others]:  # two killed uploaders, and others
        s3.create_multipart_upload(Bucket="vault", Key=name)
    store.put_file(key, write(tmp_path / "f", data), sha(data), len(data))
    left = s3.list_multipart_uploads(Bucket="vault")["Uploads"]
    assert sorted(upload["Key"] for upload in left) == sorted(others)
    assert store.has(key, sha(data))


@pytest.mark.parametrize("finished", [True, False], ids=["same-content", "other-content"])
def test_s3_multipart_upload_aborted_underneath(s3: Any, tmp_path: Path, finished: bool) -> None:
    """Another uploader of the key finished first and aborted this upload (S3 answers its
    next part NoSuchUpload): with this content there, written by that uploader, the file
    was already there (its uploader says uploaded, not this one); with other content
    there (a key named by path), the failure is one to try again."""
    store = S3Store(s3, "vault", "object", small_parts())
    data = os.urandom(6 * MiB)
    key = digest_key(sha(data))
    there = data if finished else b"other content"
    s3.put_object(Bucket="vault", Key=f"object/{key}", Body=there, Metadata={"sha256": sha(there)})

    def aborted(**kwargs: Any) -> tuple[AWSResponse, dict[str, Any]]:
        error = {"Code": "NoSuchUpload", "Message": "The specified upload does not exist."}
        return AWSResponse("https://s3", 404, {}, None), {
            "Error": error,
            "ResponseMetadata": {"HTTPStatusCode": 404},
        }

    s3.meta.events.register("before-call.s3.UploadPart", aborted)
    path = write(tmp_path / "f", data)
    if finished:
        with pytest.raises(ObjectExists):
            store.put_file(key, path, sha(data), len(data))
    else:
        with pytest.raises(StoreError, match="NoSuchUpload") as raised:
            store.put_file(key, path, sha(data), len(data))
        assert raised.value.transient
    assert s3.list_multipart_uploads(Bucket="vault").get("Uploads", []) == []


@pytest.mark.parametrize(
    ("operation", "code", "status"),
    [
        ("ListMultipartUploads", "AccessDenied", 403),
        ("ListMultipartUploads", "NotImplemented", 501),
        ("AbortMultipartUpload", "AccessDenied", 403),
    ],
    ids=["list-denied", "list-not-implemented", "abort-denied"],
)
def test_s3_store_that_refuses_upload_upkeep_still_takes_big_files(
    s3: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    operation: str,
    code: str,
    status: int,
) -> None:
    """Stale uploads are left to the lifecycle rule, said once at debug level, and the
    store is not asked again."""
    asked: list[str] = []

    def refuse(**kwargs: Any) -> tuple[AWSResponse, dict[str, Any]]:
        asked.append(operation)
        error = {"Code": code, "Message": "refused"}
        return AWSResponse("https://s3", status, {}, None), {
            "Error": error,
            "ResponseMetadata": {"HTTPStatusCode": status},
        }

    s3.meta.events.register(f"before-call.s3.{operation}", refuse)
    store = S3Store(s3, "vault", "object", small_parts())
    caplog.set_level("DEBUG", logger="dmp_cli.store.s3")
    for name in ("one", "two"):
        data = os.urandom(6 * MiB)
        key = digest_key(sha(data))
        s3.create_multipart_upload(Bucket="vault", Key=f"object/{key}")  # a killed one's
        assert store.put_file(key, write(tmp_path / name, data), sha(data), len(data)) == len(data)
        assert store.has(key, sha(data))
    assert asked == [operation]
    [record] = [r for r in caplog.records if r.name == "dmp_cli.store.s3"]
    assert record.levelname == "DEBUG" and code in record.getMessage()


def test_s3_copy_between_buckets(s3: object, tmp_path: Path) -> None:
    s3.create_bucket(Bucket="staging")  # type: ignore[attr-defined]
    dest = S3Store(s3, "staging", "run1", small_parts())
    vault = S3Store(s3, "vault", "object", small_parts())
    data = os.urandom(6 * MiB)
    digest = sha(data)
    dest.put_file("data/a.bin", write(tmp_path / "f", data), digest, len(data))
    vault.copy(dest, "data/a.bin", digest_key(digest), digest)
    assert vault.has(digest_key(digest), digest)


def test_s3_copy_of_a_missing_source_names_the_source(s3: object) -> None:
    s3.create_bucket(Bucket="staging")  # type: ignore[attr-defined]
    dest = S3Store(s3, "staging", "run1", small_parts())
    vault = S3Store(s3, "vault", "object", small_parts())
    digest = sha(b"never uploaded")
    with pytest.raises(StoreError) as raised:
        vault.copy(dest, "data/gone.bin", digest_key(digest), digest)
    assert not isinstance(raised.value, ObjectMissing)  # the vault lacks nothing: it failed
    assert str(raised.value) == (
        f"s3://staging/run1/data/gone.bin: no such object to copy to "
        f"s3://vault/object/{digest_key(digest)}"
    )


def test_s3_get_missing(s3: object) -> None:
    with pytest.raises(ObjectMissing):
        open_store("s3://vault/object", StoreSpec("s3://vault/object")).get_file(
            digest_key(sha(b"x")), BytesIO()
        )


def test_s3_check_no_such_bucket(s3: object) -> None:
    with pytest.raises(FatalStoreError, match=r"^s3://absent: no such bucket$"):
        open_store("s3://absent/object", StoreSpec("s3://absent/object")).check()
    open_store("s3://vault/object", StoreSpec("s3://vault/object")).check()


def _client_error(code: str, status: int, attempts: int = 0) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": "msg"},
            "ResponseMetadata": {"HTTPStatusCode": status, "RetryAttempts": attempts},
        },
        "HeadObject",
    )


@pytest.mark.parametrize(
    ("code", "status", "kind", "message"),
    [
        ("NoSuchBucket", 404, FatalStoreError, "s3://b: no such bucket"),
        ("AccessDenied", 403, FatalStoreError, "s3://b/k: access denied"),
        ("InvalidAccessKeyId", 403, FatalStoreError, "credentials rejected"),
        ("SlowDown", 503, StoreError, "throttled by the server (SlowDown) after 5 attempts"),
        ("NoSuchKey", 404, StoreError, "s3://b/k: NoSuchKey: msg"),
        ("InternalError", 500, StoreError, "s3://b/k: InternalError: msg"),
    ],
    ids=["no-bucket", "denied", "bad-key", "throttled", "missing", "other"],
)
def test_client_error_translation(code: str, status: int, kind: type, message: str) -> None:
    """A 404 is ObjectMissing only where absence is the answer (see the GET tests)."""
    error = client_error(_client_error(code, status, attempts=4), "s3://b/k")
    assert type(error) is kind
    assert message in str(error)
    assert "\n" not in str(error)


@pytest.mark.parametrize(
    ("code", "status", "transient"),
    [
        ("SlowDown", 503, True),
        ("InternalError", 500, True),
        ("ServiceUnavailable", 503, True),
        ("NoSuchKey", 404, False),
        ("AccessDenied", 403, False),
        ("InvalidRequest", 400, False),
    ],
    ids=["throttled", "500", "503", "404", "denied", "400"],
)
def test_transient_server_answers_are_marked(code: str, status: int, transient: bool) -> None:
    assert client_error(_client_error(code, status), "s3://b/k").transient is transient


@pytest.mark.parametrize(
    ("raised", "kind", "transient", "text"),
    [
        (
            RetriesExceededError(ConnectionResetError(104, "Connection reset by peer")),
            StoreError,
            True,
            "s3://b/k: Connection reset by peer",
        ),
        (S3DownloadFailedError("body cut short"), StoreError, True, "s3://b/k: body cut short"),
        (ConnectionResetError(104, "Connection reset by peer"), StoreError, True, "reset"),
        (TimeoutError("timed out"), StoreError, True, "s3://b/k: timed out"),
        (ReadTimeoutError(endpoint_url="http://x"), StoreError, True, "Read timeout"),
        (
            EndpointConnectionError(endpoint_url="http://x"),
            FatalStoreError,
            True,
            "cannot connect to the S3 endpoint http://x",
        ),
        (ParamValidationError(report="bad"), StoreError, False, "s3://b/k: Parameter"),
    ],
    ids=[
        "retries-exceeded",
        "download-failed",
        "reset",
        "timeout",
        "read-timeout",
        "no-endpoint",
        "invalid",
    ],
)
def test_transfer_and_socket_errors_become_store_errors(
    raised: Exception, kind: type, transient: bool, text: str
) -> None:
    """s3transfer's and the sockets' errors, not only botocore's, are translated, and
    marked transient where a later attempt may succeed."""
    with pytest.raises(kind) as caught, translated("s3://b/k"):
        raise raised
    assert caught.value.transient is transient
    assert text in str(caught.value) and "\n" not in str(caught.value)


def test_s3_small_put_if_absent_asks_nothing_first(s3: object, tmp_path: Path) -> None:
    sent: list[str] = []
    s3.meta.events.register(  # type: ignore[attr-defined]
        "before-send.s3", lambda request, **_: sent.append(request.method)
    )
    learned = ConditionalPuts()
    store = S3Store(s3, "vault", "object", learned=learned)
    data = b"small"
    key = digest_key(sha(data))
    path = write(tmp_path / "f", data)
    assert store.put_file(key, path, sha(data), 5, if_absent=True) == 5
    assert sent == ["PUT", "PUT", "DELETE", "PUT"]  # the probe first, once
    with pytest.raises(ObjectExists):
        store.put_file(key, path, sha(data), 5, if_absent=True)
    other = S3Store(s3, "vault", "object", learned=learned)  # same endpoint and bucket
    with pytest.raises(ObjectExists):
        other.put_file(key, path, sha(data), 5, if_absent=True)
    assert sent[4:] == ["PUT", "PUT"]  # one request each: no HEAD before, no probe again
    listed = s3.list_objects_v2(Bucket="vault")["Contents"]  # type: ignore[attr-defined]
    assert [obj["Key"] for obj in listed] == [f"object/{key}"]  # no probe left


def _strip_if_none_match(params: dict[str, Any], **_: object) -> None:
    params["headers"].pop("If-None-Match", None)  # a store that accepts it and overwrites


@pytest.mark.parametrize(
    ("mode", "overwrites", "heads"),
    [("auto", True, 1), ("auto", False, 0), ("on", True, 0), ("off", False, 1)],
    ids=["auto-overwriting-store", "auto-honouring-store", "on-trusts", "off-asks"],
)
def test_s3_put_if_absent_trusted_only_where_shown(
    s3: object, tmp_path: Path, mode: str, overwrites: bool, heads: int
) -> None:
    """auto: a store that overwrites despite If-None-Match is asked first (HEAD), and
    the second put of an object finds it there; on: trusted without a probe."""
    if overwrites:
        s3.meta.events.register("before-call.s3.PutObject", _strip_if_none_match)  # type: ignore[attr-defined]
    sent: list[str] = []
    s3.meta.events.register(  # type: ignore[attr-defined]
        "before-send.s3", lambda request, **_: sent.append(request.method)
    )
    store = S3Store(s3, "vault", "object", conditional_put=mode, learned=ConditionalPuts())
    data = b"small"
    key = digest_key(sha(data))
    path = write(tmp_path / "f", data)
    store.put_file(key, path, sha(data), 5, if_absent=True)
    sent.clear()
    if mode == "on" and overwrites:  # what was asked for: the store's word is taken
        assert store.put_file(key, path, sha(data), 5, if_absent=True) == 5
    else:
        with pytest.raises(ObjectExists):
            store.put_file(key, path, sha(data), 5, if_absent=True)
    assert sent == ["HEAD"] * heads + ["PUT"] * (1 - heads)


def test_s3_probe_that_cannot_tell_means_asking_first(s3: object, tmp_path: Path) -> None:
    """An error during the probe (here the second PUT is denied, as a write-once
    policy might) is not a yes; the probe object is deleted all the same."""
    puts: list[int] = []

    def deny_second(params: dict[str, Any], **_: object) -> tuple[Any, dict[str, Any]] | None:
        puts.append(1)
        if len(puts) != 2:
            return None
        reply = {"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}
        return AWSResponse(params["url"], 403, {}, None), reply

    s3.meta.events.register("before-call.s3.PutObject", deny_second)  # type: ignore[attr-defined]
    store = S3Store(s3, "vault", "object", learned=ConditionalPuts())
    data = b"small"
    path = write(tmp_path / "f", data)
    assert store.put_file(digest_key(sha(data)), path, sha(data), 5, if_absent=True) == 5
    keys = [obj["Key"] for obj in s3.list_objects_v2(Bucket="vault")["Contents"]]  # type: ignore[attr-defined]
    assert keys == [f"object/{digest_key(sha(data))}"]
    assert store._trusts_conditional_put("k") is False


def test_s3_put_if_absent_without_conditional_writes(s3: object, tmp_path: Path) -> None:
    """A store that answers 501 to If-None-Match: dmp asks with a HEAD from then on."""
    refused: list[bool] = []

    def refuse(params: dict[str, Any], **_: object) -> tuple[Any, dict[str, Any]] | None:
        if "If-None-Match" not in params["headers"]:
            return None
        refused.append(True)
        reply = {
            "Error": {"Code": "NotImplemented", "Message": "no"},
            "ResponseMetadata": {"HTTPStatusCode": 501},
        }
        return AWSResponse(params["url"], 501, {}, None), reply

    s3.meta.events.register("before-call.s3.PutObject", refuse)  # type: ignore[attr-defined]
    store = S3Store(s3, "vault", "object", conditional_put="on")
    data = b"small"
    key = digest_key(sha(data))
    path = write(tmp_path / "f", data)
    assert store.put_file(key, path, sha(data), 5, if_absent=True) == 5
    with pytest.raises(ObjectExists):
        store.put_file(key, path, sha(data), 5, if_absent=True)
    assert store.has(key, sha(data))
    assert refused == [True]  # asked once; from then on HEAD, then a plain PUT


def test_s3_big_put_if_absent_asks_first(s3: object, tmp_path: Path) -> None:
    store = S3Store(s3, "vault", "object", small_parts())
    data = os.urandom(6 * MiB)
    key = digest_key(sha(data))
    path = write(tmp_path / "f", data)
    store.put_file(key, path, sha(data), len(data), if_absent=True)
    with pytest.raises(ObjectExists):
        store.put_file(key, path, sha(data), len(data), if_absent=True)


def test_file_put_if_absent(fstore: FileStore, tmp_path: Path) -> None:
    data = b"x"
    path = write(tmp_path / "f", data)
    fstore.put_file(digest_key(sha(data)), path, sha(data), 1, if_absent=True)
    with pytest.raises(ObjectExists):
        fstore.put_file(digest_key(sha(data)), path, sha(data), 1, if_absent=True)


@pytest.mark.parametrize("mode", ["on", "off"], ids=["conditional-put", "asking-first"])
def test_s3_put_whose_answer_was_lost_counts_as_uploaded(
    s3: Any, tmp_path: Path, mode: str
) -> None:
    """The server wrote the object but its answer never came (a reset), past botocore's
    retries: dmp's own retry finds the object this run wrote (a 412, or a HEAD) and says
    uploaded; a later put of it is refused as already there."""
    data = b"small"
    key = digest_key(sha(data))
    lost: list[bool] = [True]
    tokens: list[str] = []

    def write_then_drop(request: Any, **_: object) -> None:
        if lost[0] and request.method == "PUT" and key in request.url:
            tokens.append(request.headers["x-amz-meta-dmp-upload"].decode())
            raise ConnectionClosedError(endpoint_url=request.url)

    s3.meta.events.register("before-send.s3", write_then_drop)
    store = S3Store(s3, "vault", "object", conditional_put=mode)
    path = write(tmp_path / "f", data)
    with pytest.raises(StoreError) as caught:
        store.put_file(key, path, sha(data), 5, if_absent=True)
    assert caught.value.transient
    lost[0] = False
    assert len(set(tokens)) == 1  # botocore's attempts, one upload
    metadata = {"sha256": sha(data), "dmp-upload": tokens[0]}
    s3.put_object(Bucket="vault", Key=f"object/{key}", Body=data, Metadata=metadata)  # as it did
    assert store.put_file(key, path, sha(data), 5, if_absent=True) == 5
    with pytest.raises(ObjectExists):
        store.put_file(key, path, sha(data), 5, if_absent=True)


@pytest.mark.parametrize("mode", ["on", "off"], ids=["conditional-put", "asking-first"])
def test_s3_put_refused_after_an_attempt_that_wrote_nothing_is_skipped(
    s3: Any, tmp_path: Path, mode: str
) -> None:
    """An attempt failed transiently (a 503, a reset: the client cannot tell whether the
    store wrote) and the next is refused, the object being there: written before this
    run (another token), it is already archived, not uploaded."""
    data = b"small"
    key = digest_key(sha(data))
    s3.put_object(Bucket="vault", Key=f"object/{key}", Body=data, Metadata={"sha256": sha(data)})
    failing: list[bool] = [True]

    def slow_down(request: Any, **_: object) -> None:
        if failing[0] and request.method in ("PUT", "HEAD") and key in request.url:
            raise ConnectionClosedError(endpoint_url=request.url)

    s3.meta.events.register("before-send.s3", slow_down)
    store = S3Store(s3, "vault", "object", conditional_put=mode)
    path = write(tmp_path / "f", data)
    with pytest.raises(StoreError) as caught:
        store.put_file(key, path, sha(data), 5, if_absent=True)
    assert caught.value.transient
    failing[0] = False
    with pytest.raises(ObjectExists):
        store.put_file(key, path, sha(data), 5, if_absent=True)


def test_s3_probe_whose_first_answer_was_lost(s3: Any, tmp_path: Path) -> None:
    """The probe's first PUT wrote its object but botocore tried again (the answer was
    lost): the retry's 412 is the refusal sought, and the store is trusted."""
    retried: list[bool] = []

    def retry_first(attempts: int, **_: object) -> float | None:
        if not retried:
            retried.append(True)
            return 0.0  # as if the first answer had never come
        return None

    s3.meta.events.register("needs-retry.s3.PutObject", retry_first)
    learned = ConditionalPuts()
    store = S3Store(s3, "vault", "object", learned=learned)
    data = b"small"
    path = write(tmp_path / "f", data)
    assert store.put_file(digest_key(sha(data)), path, sha(data), 5, if_absent=True) == 5
    assert retried and store._trusts_conditional_put("k") is True
    listed = s3.list_objects_v2(Bucket="vault")["Contents"]
    assert [obj["Key"] for obj in listed] == [f"object/{digest_key(sha(data))}"]


def test_s3_bucket_check_is_tried_again_with_backoff(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection closed on the bucket check, past botocore's attempts, is tried again
    as a file's request is; one that lasts is a transient failure, said once."""
    monkeypatch.setenv("DMP_RETRY_DELAYS", "0,0,0")
    sent: list[int] = []
    failing = [4]  # botocore's three attempts, and the first of dmp's next try

    def close(request: Any, **_: object) -> None:
        sent.append(1)
        if len(sent) <= failing[0]:
            raise ConnectionClosedError(endpoint_url=request.url)

    s3.meta.events.register("before-send.s3.HeadBucket", close)
    store = S3Store(s3, "vault", "object")
    store.check()
    assert len(sent) == 5
    sent.clear()
    failing[0] = 100
    with pytest.raises(StoreError, match="Connection was closed") as caught:
        store.check()
    assert caught.value.transient and len(sent) == 4 * 3


def test_s3_answer_cut_inside_its_headers_is_transient(s3: Any, tmp_path: Path) -> None:
    """A HEAD whose Content-Length was cut off, and a GET that brought fewer bytes than
    the object holds (its headers cut before their Content-Length): tried again."""
    data = b"some content\n"
    key = digest_key(sha(data))
    store = S3Store(s3, "vault", "object")
    store.put_file(key, write(tmp_path / "f", data), sha(data), len(data))

    def no_length(parsed: dict[str, Any], **_: object) -> None:
        parsed.pop("ContentLength", None)

    s3.meta.events.register("after-call.s3.HeadObject", no_length)
    with pytest.raises(StoreError, match="without its Content-Length") as caught:
        store.head(key)
    assert caught.value.transient
    s3.meta.events.unregister("after-call.s3.HeadObject", no_length)

    def short_body(parsed: dict[str, Any], **_: object) -> None:
        parsed["Body"] = BytesIO(b"")
        parsed.pop("ContentLength", None)

    s3.meta.events.register("after-call.s3.GetObject", short_body)
    with pytest.raises(StoreError, match="0 bytes of 13 came") as caught:
        store.get_file(key, BytesIO())
    assert caught.value.transient
