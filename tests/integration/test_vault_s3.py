"""`dmp manifest --vault/--archive/--fetch` against moto's S3 server (a real HTTP endpoint)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dmp_cli.layout import digest_key
from tests.integration.manifest_helpers import without_pace
from tests.integration.vaultkit import FILES, distinct, dmp, make_tree, one_error, sha
from tests.servers import Service, dmp_env, free_port, moto_client

pytestmark = pytest.mark.integration
MiB = 1 << 20


@dataclass
class Site:
    work: Path
    bucket: str
    env: dict[str, str]
    s3: Any

    def keys(self, bucket: str | None = None, prefix: str = "") -> list[str]:
        reply = self.s3.list_objects_v2(Bucket=bucket or self.bucket, Prefix=prefix)
        return sorted(obj["Key"] for obj in reply.get("Contents", []))

    def vault_key(self, data: bytes) -> str:
        return f"object/{digest_key(sha(data))}"

    def new_bucket(self) -> str:
        name = f"dmp-{uuid.uuid4().hex[:16]}"
        self.s3.create_bucket(Bucket=name)
        return name


@pytest.fixture
def site(s3_server: Service, tmp_path: Path) -> Iterator[Site]:
    s3 = moto_client(s3_server.url)
    work = tmp_path / "work"
    work.mkdir()
    make_tree(work)
    site = Site(work, "", {}, s3)
    site.bucket = site.new_bucket()  # one bucket per test: tests never see each other
    site.env = dmp_env(AWS_ENDPOINT_URL=s3_server.url, DMP_VAULT=f"s3://{site.bucket}/object")
    yield site
    s3.close()


def run(
    site: Site, *args: str, cwd: Path | None = None, subprocess: bool = False, **env: str
) -> Any:
    return dmp(
        "manifest", *args, cwd=cwd or site.work, env={**site.env, **env}, subprocess=subprocess
    )


def test_archive_vault_fetch(site: Site, tmp_path: Path) -> None:
    before = run(site, "--vault", "-m", "manifest.sha256")
    assert before.returncode == 0
    assert before.stdout.count(b"NOT in the vault") == len(FILES)
    assert "dmp: WARNING: 4 of 4 files are not in the vault" in before.stderr.decode()

    archived = run(site, "--archive", "-m", "manifest.sha256")
    assert archived.returncode == 0, archived.stderr
    assert without_pace(archived.stderr.decode().splitlines()[-1]) == (
        "dmp: 3 files (100.0 KiB) uploaded, 1 skipped as already archived, 0 failed"
    )
    assert site.keys() == sorted(site.vault_key(d) for d in set(FILES.values()))
    for data in FILES.values():
        head = site.s3.head_object(Bucket=site.bucket, Key=site.vault_key(data))
        assert head["Metadata"]["sha256"] == sha(data)  # and the upload's token

    again = run(site, "--archive", "-m", "manifest.sha256")
    assert "0 files (0 B) uploaded, 4 skipped as already archived" in again.stderr.decode()

    after = run(site, "--vault", "-m", "manifest.sha256")
    assert after.stdout.count(b": in the vault\n") == len(FILES) and b"WARNING" not in after.stderr

    restore = tmp_path / "restore"
    restore.mkdir()
    fetched = run(site, "--fetch", "-m", str(site.work / "manifest.sha256"), cwd=restore)
    assert fetched.returncode == 0, fetched.stderr
    for name, data in FILES.items():
        assert (restore / name).read_bytes() == data
    again = run(site, "--fetch", "-m", str(site.work / "manifest.sha256"), cwd=restore)
    assert "0 files (0 B) fetched, 4 already present, 0 failed" in again.stderr.decode()


def test_multipart_round_trip(site: Site, tmp_path: Path) -> None:
    big = os.urandom(17 * MiB)  # above the 16 MiB multipart threshold
    manifest = make_tree(site.work, {"big.bin": big})
    result = run(site, "--archive", "-m", str(manifest))
    assert result.returncode == 0, result.stderr
    head = site.s3.head_object(Bucket=site.bucket, Key=site.vault_key(big))
    assert head["ETag"].endswith('-2"') and head["Metadata"]["sha256"] == sha(big)
    restore = tmp_path / "restore"
    restore.mkdir()
    result = run(site, "--fetch", "-m", str(manifest), cwd=restore)
    assert result.returncode == 0 and (restore / "big.bin").read_bytes() == big


@pytest.mark.parametrize("size", [1000, 17 * MiB], ids=["single-put", "multipart"])
def test_changed_file_is_never_stored(site: Site, size: int) -> None:
    """moto accepts a wrong ChecksumSHA256: this is dmp's own hash of what it sends."""
    old = os.urandom(size)
    manifest = make_tree(site.work, {"f.bin": old})
    (site.work / "f.bin").write_bytes(old[:-1] + bytes([old[-1] ^ 1]))
    result = run(site, "--archive", "-m", str(manifest))
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert lines[0].startswith("dmp: f.bin: changed since the manifest was made")
    assert lines[-1].endswith("0 failed") is False and "1 failed" in lines[-1]
    assert site.keys() == []
    assert site.s3.list_multipart_uploads(Bucket=site.bucket).get("Uploads", []) == []


def test_archive_to_path_copies_into_vault(site: Site) -> None:
    # moto's server answers 404 to a PUT of a key with a newline (S3 takes it), so
    # this tree leaves that name out.
    make_tree(site.work, {k: v for k, v in FILES.items() if "\n" not in k})
    dest = site.new_bucket()
    result = run(site, "--archive", "--path", f"s3://{dest}/run1", "-m", "manifest.sha256")
    assert result.returncode == 0, result.stderr
    # One upload per missing checksum, under its manifest path; the vault by copy.
    assert site.keys(dest) == ["run1/data/a.txt", "run1/data/sub/b.bin"]
    assert site.keys() == sorted(
        site.vault_key(d) for d in set(FILES.values()) if d != FILES['data/odd "name"\n.txt']
    )
    head = site.s3.head_object(Bucket=site.bucket, Key=site.vault_key(FILES["data/a.txt"]))
    assert head["Metadata"]["sha256"] == sha(FILES["data/a.txt"])
    again = run(site, "--archive", "--path", f"s3://{dest}/run1", "-m", "manifest.sha256")
    assert "0 files (0 B) uploaded" in again.stderr.decode()

    result = run(site, "--archive", "--all", "--path", f"s3://{dest}/run1", "-m", "manifest.sha256")
    assert result.returncode == 0
    assert len(site.keys(dest)) == 3  # --all: every file, in the vault or not
    assert "1 file (6 B) uploaded, 2 skipped" in result.stderr.decode()
    result = run(site, "--archive", "--all", "--path", f"s3://{dest}/run1", "-m", "manifest.sha256")
    assert "0 files (0 B) uploaded, 3 skipped" in result.stderr.decode()


def test_archive_default_destination(site: Site) -> None:
    staging = site.new_bucket()
    result = run(
        site, "--archive", "-m", "manifest.sha256", DMP_ARCHIVE_DEFAULT=f"s3://{staging}/incoming"
    )
    assert result.returncode == 0, result.stderr
    assert site.keys(staging) == sorted(f"incoming/{sha(d)}" for d in set(FILES.values()))
    assert site.keys() == []
    result = run(
        site, "--archive", "-m", "manifest.sha256", DMP_ARCHIVE_DEFAULT=f"s3://{staging}/incoming"
    )
    assert "0 files (0 B) uploaded" in result.stderr.decode()


def test_dry_run_and_json(site: Site, tmp_path: Path) -> None:
    result = run(site, "--archive", "--dry-run", "-m", "manifest.sha256")
    assert result.returncode == 0
    assert f"to s3://{site.bucket}/object/".encode() in result.stdout
    assert "3 files (100.0 KiB) would be uploaded" in result.stderr.decode()
    assert site.keys() == []
    result = dmp(
        "--json", "manifest", "--archive", "-m", "manifest.sha256", cwd=site.work, env=site.env
    )
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["status"] for r in rows[:-1]} == {"uploaded", "skipped"}
    assert rows[-1]["uploaded"] == 3 and rows[-1]["bytes"] == 102_413
    restore = tmp_path / "restore"
    restore.mkdir()
    result = run(site, "--fetch", "-n", "-m", str(site.work / "manifest.sha256"), cwd=restore)
    assert result.returncode == 0 and os.listdir(restore) == []
    assert b"would fetch" in result.stdout


def test_fetch_missing_and_mismatched(site: Site) -> None:
    run(site, "--archive", "-m", "manifest.sha256")
    site.s3.delete_object(Bucket=site.bucket, Key=site.vault_key(FILES["data/sub/b.bin"]))
    (site.work / "data/sub/b.bin").unlink()
    (site.work / "data/a.txt").write_bytes(b"mine\n")
    result = run(site, "--fetch", "-m", "manifest.sha256")
    assert result.returncode == 1
    text = result.stderr.decode()
    assert "dmp: data/sub/b.bin: not in the vault" in text
    assert "dmp: data/a.txt: exists with another checksum" in text
    result = run(site, "--fetch", "--overwrite", "-m", "manifest.sha256")
    assert (site.work / "data/a.txt").read_bytes() == FILES["data/a.txt"]
    assert result.returncode == 1


def test_checksum_calculation_when_required(site: Site) -> None:
    result = run(
        site, "--archive", "-m", "manifest.sha256", AWS_REQUEST_CHECKSUM_CALCULATION="when_required"
    )
    assert result.returncode == 0, result.stderr
    assert len(site.keys()) == distinct()


def test_endpoint_option(site: Site, s3_server: Service) -> None:
    env = {k: v for k, v in site.env.items() if k != "AWS_ENDPOINT_URL"}
    result = dmp(
        "--endpoint-url",
        s3_server.url,
        "manifest",
        "--archive",
        "-m",
        "manifest.sha256",
        cwd=site.work,
        env=env,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("mode", ["--vault", "--archive", "--fetch"])
def test_no_such_bucket(site: Site, mode: str) -> None:
    one_error(
        run(
            site,
            mode,
            "-m",
            "manifest.sha256",
            DMP_VAULT="s3://dmp-absent-bucket/o",
        ),
        1,
        "dmp: s3://dmp-absent-bucket: no such bucket",
    )


@pytest.mark.parametrize("mode", ["--vault", "--archive", "--fetch"])
def test_no_credentials(site: Site, mode: str) -> None:
    env = {
        k: v for k, v in site.env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    one_error(
        dmp("manifest", mode, "-m", "manifest.sha256", cwd=site.work, env=env),
        1,
        "no AWS credentials found",
    )


def test_unreachable_endpoint(site: Site) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    one_error(
        run(site, "--vault", "-m", "manifest.sha256", AWS_ENDPOINT_URL=url, AWS_MAX_ATTEMPTS="1"),
        1,
        f"cannot connect to the S3 endpoint {url}",
    )


def test_missing_manifest(site: Site) -> None:
    one_error(
        run(site, "--archive", "-m", "absent.sha256"),
        1,
        "dmp: absent.sha256: No such file or directory",
    )
    # The manifest is looked at before the store is asked anything.
    one_error(
        run(site, "--vault", "-m", "absent.sha256", DMP_VAULT="s3://dmp-absent-b/o"),
        1,
        "dmp: absent.sha256: No such file or directory",
    )


def test_all_without_path(site: Site) -> None:
    one_error(run(site, "--archive", "--all", "-m", "manifest.sha256"), 2, "--all needs --path")
    assert site.keys() == []


@pytest.mark.parametrize("mode", ["--vault", "--archive", "--fetch"])
def test_access_denied(
    site: Site, strict_s3: tuple[str, dict[str, str]], mode: str, tmp_path: Path
) -> None:
    url, keys = strict_s3
    empty = tmp_path / "empty"  # so that --fetch has files to ask for
    empty.mkdir()
    result = run(
        site,
        mode,
        "-m",
        str(site.work / "manifest.sha256"),
        cwd=empty,
        AWS_ENDPOINT_URL=url,
        DMP_VAULT="s3://locked/object",
        **keys,
    )
    one_error(result, 1, "s3://locked/object/")
    assert "access denied" in result.stderr.decode()


def test_credentials_rejected(site: Site, strict_s3: tuple[str, dict[str, str]]) -> None:
    url, _ = strict_s3
    # A PUT, since the answer to a HEAD has no body to name the cause (a bare 403).
    result = run(
        site,
        "--archive",
        "-m",
        "manifest.sha256",
        AWS_ENDPOINT_URL=url,
        DMP_VAULT="s3://locked/object",
    )
    one_error(result, 1, "credentials rejected (InvalidAccessKeyId)")


def test_fetch_through_a_network_that_cuts_every_body_short(
    site: Site, s3_server: Service, tmp_path: Path
) -> None:
    """Each file fails on its own, with one line naming it, after the retries; the run
    goes on to the summary, and no partial file is left (it once ended the whole run
    with `KeyError: 'digest'`, no file named)."""
    from dmp_cli.quoting import quote_name
    from tests.integration.s3proxy import spoiling_proxy

    assert dmp("manifest", "--archive", "-m", "manifest.sha256", cwd=site.work, env=site.env)
    restore = tmp_path / "restore"
    restore.mkdir()
    manifest = str(site.work / "manifest.sha256")
    with spoiling_proxy(s3_server.url) as (url, proxy):
        env = {
            **site.env,
            "AWS_ENDPOINT_URL": url,
            "AWS_MAX_ATTEMPTS": "2",
            "DMP_RETRY_DELAYS": "0.01",
        }
        result = dmp("manifest", "--fetch", "-m", manifest, cwd=restore, env=env)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.decode("utf-8", "surrogateescape").splitlines()
    assert without_pace(lines[-1]) == (
        f"dmp: 0 files (0 B) fetched, 0 already present, {len(FILES)} failed"
    )
    for name in FILES:
        shown = quote_name(name).decode("utf-8", "surrogateescape")
        assert sum(line.startswith(f"dmp: {shown}: s3://") for line in lines) == 1, lines
    assert len(lines) == len(FILES) + 1
    assert proxy.spoiled >= 2 * len(FILES)  # every body was cut, and tried again
    assert [p for p in restore.rglob("*") if p.is_file()] == []
