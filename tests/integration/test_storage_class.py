"""--archive's storage class on moto's S3 server: the content objects (plain, multipart,
packs, server-side copies) in the class asked for, what every run reads (vault.json, the
index objects, the companion file) in the standard class; DMP_STORAGE_CLASS and the vault
config's default; a class the store refuses stops the run in one line."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest

from dmp_cli.layout import digest_key
from tests.integration.vaultkit import dmp, one_error, sha
from tests.servers import Service, dmp_env, moto_client

pytestmark = pytest.mark.integration

KiB, MiB = 1 << 10, 1 << 20


def tree() -> dict[str, bytes]:
    """Small files (packed in a packing vault), files over the threshold (plain objects),
    and one over the multipart threshold the tests set (5 MiB)."""
    files = {f"data/small/s{i:02}": os.urandom(100 + i * 500) for i in range(12)}
    files["data/small/copy"] = files["data/small/s03"]
    files["data/mid/m1"] = os.urandom(100 * KiB)
    files["data/mid/m2"] = os.urandom(200 * KiB)
    files["data/big"] = os.urandom(6 * MiB)
    return files


@dataclass
class Site:
    work: Path
    bucket: str
    env: dict[str, str]
    s3: Any
    files: dict[str, bytes]

    def run(self, *args: str, **env: str) -> CompletedProcess[bytes]:
        return dmp(*args, cwd=self.work, env={**self.env, **env})

    def archive(self, *args: str, **env: str) -> CompletedProcess[bytes]:
        return self.run("manifest", "--archive", "-m", "manifest.sha256", *args, **env)

    def init(self, *args: str) -> None:
        made = self.run("vault", "init", "--pack-below", "64KiB", "--pack-target", "32MiB", *args)
        assert made.returncode == 0, made.stderr

    def classes(self, bucket: str | None = None) -> dict[str, str]:
        """Every object's storage class, as the bucket's listing says."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket or self.bucket)
        return {
            obj["Key"]: obj["StorageClass"] for page in pages for obj in page.get("Contents", [])
        }

    def head_class(self, key: str) -> str:
        """The storage class a HEAD says (S3 leaves out the header for STANDARD)."""
        return str(self.s3.head_object(Bucket=self.bucket, Key=key).get("StorageClass", "STANDARD"))

    def plain_keys(self) -> set[str]:
        """The vault keys of the content stored one object per checksum."""
        return {f"vault/{digest_key(sha(d))}" for d in self.files.values() if len(d) >= 64 * KiB}

    def companion_key(self) -> str:
        return f"vault/{digest_key(sha((self.work / 'manifest.sha256.meta').read_bytes()))}"


@pytest.fixture
def site(s3_server: Service, tmp_path: Path) -> Iterator[Site]:
    s3 = moto_client(s3_server.url)
    bucket = f"dmp-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=bucket)
    work = tmp_path / "work"
    work.mkdir()
    files = tree()
    for name, data in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(data)
    env = dmp_env(
        AWS_ENDPOINT_URL=s3_server.url,
        DMP_VAULT=f"s3://{bucket}/vault",
        DMP_MULTIPART_THRESHOLD=str(5 * MiB),
        DMP_MULTIPART_CHUNKSIZE=str(5 * MiB),
    )
    site = Site(work, bucket, env, s3, files)
    create = ("manifest", "--create", "--dir", "data", "-r", "-m", "manifest.sha256", "--meta")
    made = site.run(*create)
    assert made.returncode == 0, made.stderr
    yield site
    s3.close()


def test_content_goes_to_the_class_and_what_runs_read_stays_standard(site: Site) -> None:
    site.init()
    archived = site.archive("--storage-class", "glacier")
    assert archived.returncode == 0, archived.stderr
    classes = site.classes()
    packs = [key for key in classes if key.startswith("vault/packs/")]
    indexes = [key for key in classes if key.startswith("vault/index/")]
    companion = site.companion_key()
    assert packs and indexes and site.plain_keys() <= set(classes) and companion in classes
    expected = {
        key: "GLACIER" if key in packs or key in site.plain_keys() else "STANDARD"
        for key in classes
    }
    assert classes == expected
    assert set(expected) == {"vault/vault.json", companion, *packs, *indexes, *site.plain_keys()}
    # As HEAD says it too: the multipart upload of the big file, a pack, and the rest.
    big = f"vault/{digest_key(sha(site.files['data/big']))}"
    assert site.head_class(big) == site.head_class(packs[0]) == "GLACIER"
    for key in ("vault/vault.json", indexes[0], companion):
        assert site.head_class(key) == "STANDARD", key
    # A rerun reads the config and the index objects, and HEADs what is in GLACIER.
    again = site.archive("--storage-class", "GLACIER")
    assert again.returncode == 0, again.stderr
    assert b"uploaded (" not in again.stdout
    assert site.classes() == classes


def test_a_plain_vault_takes_the_setting(site: Site) -> None:
    archived = site.archive(DMP_STORAGE_CLASS="standard_ia")
    assert archived.returncode == 0, archived.stderr
    companion = site.companion_key()
    classes = site.classes()
    assert classes.pop(companion) == "STANDARD"
    content = {f"vault/{digest_key(sha(data))}" for data in site.files.values()}
    assert classes == dict.fromkeys(content, "STANDARD_IA")


@pytest.mark.parametrize(
    ("option", "setting", "expected"),
    [
        ((), None, "GLACIER_IR"),
        ((), "STANDARD_IA", "STANDARD_IA"),
        (("--storage-class", "DEEP_ARCHIVE"), "STANDARD_IA", "DEEP_ARCHIVE"),
    ],
    ids=["config", "setting-over-config", "option-over-both"],
)
def test_the_vault_config_s_default_comes_last(
    site: Site, option: tuple[str, ...], setting: str | None, expected: str
) -> None:
    site.init("--storage-class", "glacier_ir")
    config = site.s3.get_object(Bucket=site.bucket, Key="vault/vault.json")["Body"].read()
    assert b'"storage_class": "GLACIER_IR"' in config
    env = {"DMP_STORAGE_CLASS": setting} if setting else {}
    archived = site.archive(*option, **env)
    assert archived.returncode == 0, archived.stderr
    classes = site.classes()
    content = [key for key in classes if key.startswith("vault/packs/")] + list(site.plain_keys())
    assert {classes[key] for key in content} == {expected}
    assert {classes[key] for key in classes if key not in content} == {"STANDARD"}


@pytest.mark.parametrize("packing", [False, True], ids=["plain-vault", "packing-vault"])
def test_a_class_the_store_refuses_stops_the_run_in_one_line(site: Site, packing: bool) -> None:
    if packing:
        site.init()
    refused = site.archive("--storage-class", "COLDEST_OF_ALL")
    one_error(refused, 1, "InvalidStorageClass: The storage class you specified is not valid")
    assert f"s3://{site.bucket}/vault/" in refused.stderr.decode()  # the object refused
    assert refused.stdout == b""  # no file said archived, nor failed one by one
    left = set(site.classes()) - {"vault/vault.json"}
    assert left == set()


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (("--storage-class", "GLACIER-IR"), {}, "--storage-class"),
        ((), {"DMP_STORAGE_CLASS": "deep archive"}, "DMP_STORAGE_CLASS"),
    ],
    ids=["option", "setting"],
)
def test_a_name_that_is_no_class_name_is_a_usage_error(
    site: Site, args: tuple[str, ...], env: dict[str, str], named: str
) -> None:
    one_error(site.archive(*args, **env), 2, f"{named} must be a storage class name")
    assert site.classes() == {}


def test_a_copy_into_the_vault_keeps_the_class(site: Site) -> None:
    other = f"dmp-{uuid.uuid4().hex[:16]}"
    site.s3.create_bucket(Bucket=other)
    archived = site.archive(
        "--no-meta", "--path", f"s3://{other}/by-path", "--storage-class", "GLACIER"
    )
    assert archived.returncode == 0, archived.stderr
    # The copies in the vault take the class; the objects under --path, from which they
    # were copied (S3 copies no GLACIER object unrestored), stay standard.
    assert set(site.classes().values()) == {"GLACIER"}
    assert set(site.classes(other).values()) == {"STANDARD"}


def test_a_directory_vault_ignores_the_class_and_says_so_with_v(site: Site, tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    vault.mkdir()
    env = {"DMP_VAULT": f"file://{vault}"}
    archived = site.run(
        "-v", "manifest", "--archive", "-m", "manifest.sha256", "--storage-class", "GLACIER", **env
    )
    assert archived.returncode == 0, archived.stderr
    said = [line for line in archived.stderr.decode().splitlines() if "storage class" in line]
    assert said == [
        f"dmp: storage class GLACIER ignored: file://{vault} is a directory, "
        "which has no storage classes"
    ]
    quiet = site.run(
        "manifest", "--archive", "-m", "manifest.sha256", "--storage-class", "GLACIER", **env
    )
    assert quiet.returncode == 0 and b"storage class" not in quiet.stderr


def test_vault_init_writes_the_default_and_says_it(site: Site) -> None:
    bad = site.run("vault", "init", "--storage-class", "GLACIER IR")
    one_error(bad, 2, "--storage-class must be a storage class name")
    assert site.classes() == {}
    made = site.run("--json", "vault", "init", "--storage-class", "deep_archive")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["storage_class"] == "DEEP_ARCHIVE"
    # Refused again without --force, naming what is there; replaced with it.
    one_error(site.run("vault", "init"), 2, "storage class DEEP_ARCHIVE; --force to replace it")
    said = site.run("vault", "init", "--force", "--storage-class", "GLACIER_IR")
    assert said.stderr.decode().rstrip().endswith("storage class GLACIER_IR")
    assert site.classes() == {"vault/vault.json": "STANDARD"}


def test_the_python_api_takes_a_class(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """api.archive(storage_class=...) as --storage-class: the content objects in that
    class, its name given in any case."""
    from dmp_cli import api

    for name, value in site.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(site.work)
    report = api.archive("manifest.sha256", storage_class="glacier_ir", jobs=1)
    assert report.status == 0
    assert {site.head_class(key) for key in site.plain_keys()} == {"GLACIER_IR"}
