"""Incomplete multipart uploads against moto's S3 server: two uploads of one object at
once, and `dmp vault uploads` listing and aborting what killed uploaders left."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config
from s3transfer.manager import TransferConfig

from dmp_cli.errors import ObjectExists
from dmp_cli.layout import digest_key
from dmp_cli.store.s3 import S3Store
from tests.integration.vaultkit import dmp, incomplete, one_error, sha, wait_for_a_part
from tests.servers import Service, dmp_env, moto_client

pytestmark = pytest.mark.integration
MiB = 1 << 20


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


# ---------------------------------------------------------------- same key, at once


class _Gated:
    """A file read as s3transfer reads a non-seekable stream, which stops once ``at``
    bytes have been read until the gate opens: its first part is sent, the rest waits."""

    def __init__(self, path: Path, at: int, gate: threading.Event) -> None:
        self._stream = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._at = at
        self._gate = gate

    def read(self, amount: int = -1) -> bytes:
        if self._stream.tell() >= self._at:
            assert self._gate.wait(60), "the gate was never opened"
        return self._stream.read(amount)

    def close(self) -> None:
        self._stream.close()


def test_two_uploads_of_one_object_at_once_both_end_well(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    """Two batches archive the same content (two files, one key) at once. The first has
    sent a part when the second begins; the second finds its upload, finishes, and aborts
    it; the first, cut short, finds the object there, written by the second (another
    upload's token): its file was already archived, uploaded by the other batch."""
    parts = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    first, second = (S3Store(s3, bucket, "object", parts) for _ in range(2))
    data = os.urandom(12 * MiB)  # three parts
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    digest = sha(data)
    key = digest_key(digest)
    gate = threading.Event()
    source = _Gated(path, 5 * MiB, gate)
    try:
        with ThreadPoolExecutor(1) as pool:
            put = first._put_multipart
            slow = pool.submit(put, key, source, len(data), digest, "first", None)  # type: ignore[arg-type]
            try:
                wait_for_a_part(s3, bucket, f"object/{key}")
                assert second.put_file(key, str(path), digest, len(data)) == len(data)
                assert incomplete(s3, bucket, f"object/{key}") == []  # the first's, aborted
            finally:
                gate.set()
            with pytest.raises(ObjectExists):
                slow.result(timeout=120)
    finally:
        source.close()
        first.close()
        second.close()
    assert incomplete(s3, bucket) == []
    body = s3.get_object(Bucket=bucket, Key=f"object/{key}")["Body"].read()
    assert sha(body) == digest


# ---------------------------------------------------------------- dmp vault uploads


def _begin(s3: Any, bucket: str, *keys: str) -> dict[str, str]:
    """Incomplete uploads of ``keys``, as killed uploaders leave them: key -> upload id."""
    ids = {}
    for key in keys:
        reply = s3.create_multipart_upload(Bucket=bucket, Key=key)
        s3.upload_part(Bucket=bucket, Key=key, UploadId=reply["UploadId"], PartNumber=1, Body=b"x")
        ids[key] = reply["UploadId"]
    return ids


def _uploads(
    s3_server: Service, bucket: str, *args: str, cwd: Path, json: bool = False, **env: str
) -> Any:
    """`dmp vault uploads ARGS` (`dmp --json ...` with ``json``) on the bucket's vault."""
    environment = dmp_env(
        **{"AWS_ENDPOINT_URL": s3_server.url, "DMP_VAULT": f"s3://{bucket}/object", **env}
    )
    where = ["--json"] if json else []
    return dmp(*where, "vault", "uploads", *args, cwd=cwd, env=environment)


KEYS = [f"object/{digest_key(sha(name.encode()))}" for name in ("one", "two")]


def test_listed_with_key_id_and_age(
    s3: Any, s3_server: Service, bucket: str, tmp_path: Path
) -> None:
    ids = _begin(s3, bucket, *KEYS, "elsewhere/not-the-vault")
    result = _uploads(s3_server, bucket, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.decode().splitlines()
    assert header.split() == ["INITIATED", "AGE", "KEY", "UPLOAD", "ID"]
    assert sorted(row.split()[-2:] for row in rows) == sorted(
        [f"s3://{bucket}/{key}", ids[key]] for key in KEYS
    )
    assert result.stderr.decode() == f"dmp: 2 incomplete uploads under s3://{bucket}/object\n"
    assert len(incomplete(s3, bucket)) == 3  # a listing aborts nothing

    listed = _uploads(s3_server, bucket, cwd=tmp_path, json=True)
    *objects, summary = map(json.loads, listed.stdout.splitlines())
    assert sorted((o["key"], o["upload_id"], o["state"]) for o in objects) == sorted(
        (key.removeprefix("object/"), ids[key], "incomplete") for key in KEYS
    )
    assert all(o["age"] > 0 and o["initiated"].endswith("Z") for o in objects)
    assert summary == {
        "type": "summary",
        "vault": f"s3://{bucket}/object",
        "uploads": 2,
        "aborted": 0,
        "ended": 0,
        "younger": 0,
        "older_than": 0,
    }


def test_abort_spares_the_younger_ones(
    s3: Any, s3_server: Service, bucket: str, tmp_path: Path
) -> None:
    """moto says every upload began on 2010-11-10, so each is some 16 years old: a limit
    of a century spares them all, and --abort's default limit of a day does not."""
    _begin(s3, bucket, *KEYS, "elsewhere/not-the-vault")
    century = _uploads(s3_server, bucket, "--abort", "--older-than", "36500d", cwd=tmp_path)
    assert century.returncode == 0, century.stderr
    assert century.stdout == b""
    assert century.stderr.decode() == (
        f"dmp: aborted 0 incomplete uploads under s3://{bucket}/object; "
        "2 younger than 36500d left alone\n"
    )
    assert len(incomplete(s3, bucket)) == 3

    aborted = _uploads(s3_server, bucket, "--abort", cwd=tmp_path)
    assert aborted.returncode == 0, aborted.stderr
    assert len(aborted.stdout.splitlines()) == 3  # the header and the two aborted
    assert aborted.stderr.decode() == (
        f"dmp: aborted 2 incomplete uploads under s3://{bucket}/object\n"
    )
    assert incomplete(s3, bucket, "object/") == []
    assert len(incomplete(s3, bucket, "elsewhere/")) == 1  # not the vault's to abort

    again = _uploads(s3_server, bucket, "--abort", "--older-than", "0", cwd=tmp_path)
    assert (again.returncode, again.stdout) == (0, b"")
    assert (
        again.stderr == f"dmp: aborted 0 incomplete uploads under s3://{bucket}/object\n".encode()
    )


def test_no_such_bucket(s3_server: Service, tmp_path: Path) -> None:
    result = _uploads(s3_server, f"dmp-absent-{uuid.uuid4().hex[:8]}", "--abort", cwd=tmp_path)
    one_error(result, 1, "no such bucket")


def test_access_denied(strict_s3: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    url, keys = strict_s3
    env = dmp_env(AWS_ENDPOINT_URL=url, DMP_VAULT="s3://locked/object", **keys)
    result = dmp("vault", "uploads", cwd=tmp_path, env=env)
    one_error(result, 1, "s3://locked/object: access denied")


def test_a_directory_vault_has_none(tmp_path: Path) -> None:
    env = dmp_env(DMP_VAULT=f"file://{tmp_path}")
    result = dmp("vault", "uploads", "--abort", cwd=tmp_path, env=env)
    assert (result.returncode, result.stdout) == (0, b"")
    assert b"a directory vault writes objects whole" in result.stderr


@pytest.mark.parametrize(
    "value", ["soon", "1y", "-1d", ""], ids=["word", "unit", "negative", "empty"]
)
def test_a_bad_duration_is_a_usage_error(value: str, tmp_path: Path) -> None:
    env = dmp_env(DMP_VAULT=f"file://{tmp_path}")
    result = dmp("vault", "uploads", "--older-than", value, cwd=tmp_path, env=env)
    one_error(result, 2, "Invalid value for '--older-than'")
