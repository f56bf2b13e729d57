"""Packing vaults: small files archived into packs, found by the catalog, fetched back out
of them, on a directory vault and on S3 (moto's server, behind the counting proxy)."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dmp_cli.layout import digest_key
from dmp_cli.packs.config import CONFIG_KEY, VaultConfig
from dmp_cli.store.local import FileStore
from tests.integration.manifest_helpers import without_pace
from tests.integration.s3proxy import FaultProxy, fault_proxy
from tests.integration.vaultkit import dmp, make_tree, sha
from tests.servers import Service, dmp_env, moto_client

pytestmark = pytest.mark.integration

KiB, MiB = 1 << 10, 1 << 20
BELOW = 64 * KiB  # files under this are packed, in these tests
TARGET = 32 * MiB  # the smallest target a config allows


def mixed_tree() -> dict[str, bytes]:
    """Empty and 1-byte files, files just under, at and just over the threshold, copies
    of one content under other names, and names with a newline and a quote."""
    seed = os.urandom(BELOW + 2)
    files = {
        "empty": b"",
        "also empty": b"",
        "one": b"x",
        "under": seed[: BELOW - 1],
        "at": seed[1 : BELOW + 1],  # at the threshold: a plain object
        "over": seed[: BELOW + 1],
        "big": os.urandom(300 * KiB),
        "line\nbreak": b"a name with a newline\n",
        'quote "d"': b"quoted\n",
        "copies/first": b"the same content\n",
        "copies/second": b"the same content\n",
    }
    for i in range(40):
        files[f"many/f{i:03}"] = os.urandom(1 + i * 997)
    return files


def packing_config() -> bytes:
    return VaultConfig(pack_below=BELOW, pack_target=TARGET).encode()


def small(files: dict[str, bytes]) -> set[str]:
    """The distinct checksums of the files that go into packs."""
    return {sha(data) for data in files.values() if len(data) < BELOW}


def tar_members(pack: Path) -> list[str]:
    """The member names `tar -tf` lists (GNU tar, as a user would run it)."""
    listed = subprocess.run(["tar", "-tf", str(pack)], capture_output=True, check=True)
    return listed.stdout.decode().splitlines()


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, Path, dict[str, str], dict[str, bytes]]:
    vault = tmp_path / "vault"
    vault.mkdir()
    FileStore(str(vault)).put_bytes(CONFIG_KEY, packing_config())
    work = tmp_path / "work"
    work.mkdir()
    files = mixed_tree()
    make_tree(work, files)
    return work, vault, dmp_env(DMP_VAULT=f"file://{vault}"), files


def test_round_trip_on_a_directory_vault(
    site: tuple[Path, Path, dict[str, str], dict[str, bytes]], tmp_path: Path
) -> None:
    work, vault, env, files = site
    archived = dmp("-v", "manifest", "--archive", "-m", "manifest.sha256", cwd=work, env=env)
    assert archived.returncode == 0, archived.stderr
    stderr = archived.stderr.decode()
    packed = small(files)
    assert f"dmp: packed {len(packed)} small files into 1 pack\n" in stderr
    packs = sorted((vault / "packs").iterdir())
    assert len(packs) == 1
    # Each member is named by its checksum's key; tar lists exactly the packed checksums.
    assert sorted(tar_members(packs[0])) == sorted(digest_key(d) for d in packed)
    assert packs[0].name == sha(packs[0].read_bytes()) + ".tar"
    # The rest are plain objects, under the seed's keys; no small file is one.
    for data in files.values():
        plain = vault / digest_key(sha(data))
        assert plain.exists() == (len(data) >= BELOW)
    lines = archived.stdout.decode()
    assert "\nunder: uploaded (64.0 KiB)\n" in lines  # packed: counted as uploaded
    assert "\nat: uploaded (64.0 KiB)\n" in lines

    # --json says how each checksum is stored.
    rows = dmp("--json", "manifest", "--vault", "-m", "manifest.sha256", cwd=work, env=env)
    assert rows.returncode == 0, rows.stderr
    by_path = {r["path"]: r for r in map(json.loads, rows.stdout.splitlines()) if "path" in r}
    assert by_path["under"]["stored"] == "packed"
    assert by_path["under"]["pack"] + ".tar" == packs[0].name
    assert by_path["at"]["stored"] == "plain" and "pack" not in by_path["at"]
    assert {r["status"] for r in by_path.values()} == {"present"}

    again = dmp("manifest", "--archive", "-m", "manifest.sha256", cwd=work, env=env)
    assert again.returncode == 0, again.stderr
    assert f"dmp: 0 files (0 B) uploaded, {len(files)} skipped" in again.stderr.decode()
    assert sorted((vault / "packs").iterdir()) == packs  # nothing packed twice

    restore = tmp_path / "restore"
    restore.mkdir()
    manifest = str(work / "manifest.sha256")
    fetched = dmp("manifest", "--fetch", "-m", manifest, cwd=restore, env=env)
    assert fetched.returncode == 0, fetched.stderr
    for name, data in files.items():
        assert (restore / name).read_bytes() == data, name
    checked = dmp("manifest", "--check", "-m", manifest, cwd=restore, env=env)
    assert checked.returncode == 0, checked.stderr


def test_a_pack_extracted_by_tar_is_a_vault(
    site: tuple[Path, Path, dict[str, str], dict[str, bytes]], tmp_path: Path
) -> None:
    work, vault, env, files = site
    assert dmp("manifest", "--archive", "-m", "manifest.sha256", cwd=work, env=env).returncode == 0
    (pack,) = (vault / "packs").iterdir()
    plain = tmp_path / "from-tar"
    plain.mkdir()
    subprocess.run(["tar", "-xf", str(pack), "-C", str(plain)], check=True)
    # A manifest of the packed files alone, fetched from what tar wrote: a plain vault.
    small_files = {name: data for name, data in files.items() if len(data) < BELOW}
    only = tmp_path / "only"
    only.mkdir()
    manifest = make_tree(only, small_files)
    restore = tmp_path / "restore"
    restore.mkdir()
    fetched = dmp(
        "manifest",
        "--fetch",
        "-m",
        str(manifest),
        cwd=restore,
        env=dmp_env(DMP_VAULT=f"file://{plain}"),
    )
    assert fetched.returncode == 0, fetched.stderr
    for name, data in small_files.items():
        assert (restore / name).read_bytes() == data


def test_a_changed_file_fails_alone_and_is_packed_by_the_rerun(
    site: tuple[Path, Path, dict[str, str], dict[str, bytes]],
) -> None:
    work, vault, env, files = site
    (work / "many/f003").write_bytes(b"changed since the manifest")
    archived = dmp("manifest", "--archive", "-m", "manifest.sha256", cwd=work, env=env)
    assert archived.returncode == 1
    errors = [line for line in archived.stderr.decode().splitlines() if "many/f003" in line]
    assert len(errors) == 1 and "changed since the manifest was made" in errors[0], errors
    assert "0 failed" not in archived.stderr.decode()
    (pack,) = (vault / "packs").iterdir()
    assert digest_key(sha(files["many/f003"])) not in tar_members(pack)
    assert len(tar_members(pack)) == len(small(files)) - 1

    (work / "many/f003").write_bytes(files["many/f003"])
    rerun = dmp("manifest", "--archive", "-m", "manifest.sha256", cwd=work, env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert "dmp: 1 file (2.9 KiB) uploaded" in without_pace(rerun.stderr.decode().splitlines()[-1])
    second = [p for p in (vault / "packs").iterdir() if p != pack]
    assert len(second) == 1 and tar_members(second[0]) == [digest_key(sha(files["many/f003"]))]


def test_a_config_this_dmp_does_not_know_is_one_line(
    site: tuple[Path, Path, dict[str, str], dict[str, bytes]],
) -> None:
    work, vault, env, _ = site
    (vault / CONFIG_KEY).write_text('{"format": "dmp-vault", "version": 99}\n')
    for command in ("--vault", "--archive", "--fetch"):
        result = dmp("manifest", command, "-m", "manifest.sha256", cwd=work, env=env)
        assert result.returncode != 0
        lines = result.stderr.decode().splitlines()
        assert len(lines) == 1, lines
        assert "vault.json" in lines[0] and "version 99" in lines[0], lines
    assert not (vault / "packs").exists()


# ------------------------------------------------------------------ on S3


@pytest.fixture
def s3_site(
    s3_server: Service, tmp_path: Path
) -> Iterator[tuple[Path, str, FaultProxy, dict[str, bytes], object]]:
    s3 = moto_client(s3_server.url)
    bucket = f"dmp-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=bucket)
    config = VaultConfig(pack_below=MiB, pack_target=TARGET).encode()
    s3.put_object(Bucket=bucket, Key=f"vault/{CONFIG_KEY}", Body=config)
    work = tmp_path / "work"
    work.mkdir()
    files = mixed_tree()
    # Enough small files for two packs: 100 of 600 KiB, under a threshold of 1 MiB.
    for i in range(100):
        files[f"bulk/b{i:03}"] = os.urandom(600 * KiB)
    for i in range(3):  # plain objects, in this vault
        files[f"large/l{i}"] = os.urandom(MiB + i)
    make_tree(work, files)
    with fault_proxy(s3_server.url) as proxy:
        yield work, bucket, proxy, files, s3
    s3.close()


def test_round_trip_on_s3_costs_a_get_per_pack(
    s3_site: tuple[Path, str, FaultProxy, dict[str, bytes], object], tmp_path: Path
) -> None:
    work, bucket, proxy, files, s3 = s3_site
    env = dmp_env(AWS_ENDPOINT_URL=proxy.url, DMP_VAULT=f"s3://{bucket}/vault")
    archived = dmp("-v", "manifest", "--archive", "-m", "manifest.sha256", cwd=work, env=env)
    assert archived.returncode == 0, archived.stderr
    counts = proxy.reset()
    packed = {sha(data) for data in files.values() if len(data) < MiB}
    assert f"dmp: packed {len(packed)} small files into 2 packs\n" in archived.stderr.decode()
    keys = [
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)  # type: ignore[attr-defined]
        for obj in page.get("Contents", [])
    ]
    packs = [key for key in keys if key.startswith("vault/packs/")]
    assert len(packs) == 2
    # One object a pack and at most one index object a shard a pack, not one a file.
    kinds = counts.kinds()
    assert kinds["put"] + kinds["create-multipart"] <= 2 + 2 * 16 + 5
    assert sum(1 for key in keys if key.startswith("vault/index/")) <= 2 * 16

    restore = tmp_path / "restore"
    restore.mkdir()
    manifest = str(work / "manifest.sha256")
    fetched = dmp("manifest", "--fetch", "-m", manifest, cwd=restore, env=env)
    assert fetched.returncode == 0, fetched.stderr
    for name, data in files.items():
        assert (restore / name).read_bytes() == data, name
    seen = proxy.reset().seen
    gets = [t for (m, t), n in seen.items() for _ in range(n) if m == "GET"]
    heads = [t for (m, t), n in seen.items() for _ in range(n) if m == "HEAD"]
    pack_gets = [t for t in gets if "/packs/" in t]
    assert len(pack_gets) == 2, pack_gets  # each pack read once, whole
    plain_gets = [
        t for t in gets if "/packs/" not in t and "/index/" not in t and "list-type" not in t
    ]
    plain = {sha(data) for data in files.values() if len(data) >= MiB}
    assert len(plain_gets) <= len(plain) + 1  # + the config
    # A plain object costs one HEAD (dmp's own: its size, its class) and its GETs: the
    # download is given the size and ETag, and asks for neither again.
    object_heads = [t for t in heads if t.count("/") > 2]
    assert len(object_heads) == len(plain), object_heads

    # A packing vault and a plain one that hold the same checksums answer alike.
    other = f"dmp-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=other)  # type: ignore[attr-defined]
    plain_env = dmp_env(AWS_ENDPOINT_URL=proxy.url, DMP_VAULT=f"s3://{other}/vault")
    assert (
        dmp("manifest", "--archive", "-m", "manifest.sha256", cwd=work, env=plain_env).returncode
        == 0
    )
    answers = [
        dmp("manifest", "--vault", "-m", "manifest.sha256", cwd=work, env=e)
        for e in (env, plain_env)
    ]
    assert answers[0].stdout == answers[1].stdout
    summaries = [without_pace(a.stderr.decode().splitlines()[-1]) for a in answers]
    assert summaries[0] == summaries[1]


def test_an_index_that_does_not_parse_is_one_line_naming_it(
    site: tuple[Path, Path, dict[str, str], dict[str, bytes]],
) -> None:
    work, vault, env, _ = site
    assert dmp("manifest", "--archive", "-m", "manifest.sha256", cwd=work, env=env).returncode == 0
    index = sorted((vault / "index").rglob("*.idx"))[0]
    index.write_bytes(b"dmp-index 1\npack nonsense\n")
    for command in ("--vault", "--archive", "--fetch"):
        result = dmp("manifest", command, "-m", "manifest.sha256", cwd=work, env=env)
        assert result.returncode == 1
        lines = result.stderr.decode().splitlines()
        assert len(lines) == 1 and str(index.relative_to(vault)) in lines[0], lines


def test_a_member_that_does_not_hash_to_its_name_is_not_fetched(
    site: tuple[Path, Path, dict[str, str], dict[str, bytes]], tmp_path: Path
) -> None:
    work, vault, env, files = site
    assert dmp("manifest", "--archive", "-m", "manifest.sha256", cwd=work, env=env).returncode == 0
    (pack,) = (vault / "packs").iterdir()
    spoiled = sha(files["many/f010"])
    index = next(
        line
        for path in (vault / "index").rglob("*.idx")
        for line in path.read_text().splitlines()
        if line.startswith(spoiled)
    )
    offset = int(index.split()[2])
    original = pack.read_bytes()
    data = bytearray(original)
    data[offset] ^= 1
    pack.write_bytes(bytes(data))
    restore = tmp_path / "restore"
    restore.mkdir()
    fetched = dmp("manifest", "--fetch", "-m", str(work / "manifest.sha256"), cwd=restore, env=env)
    assert fetched.returncode == 1
    errors = [line for line in fetched.stderr.decode().splitlines() if "f010" in line]
    assert len(errors) == 1, errors
    assert pack.name in errors[0] and digest_key(spoiled) in errors[0]
    assert "not fetched" in errors[0]
    assert not (restore / "many/f010").exists()  # nothing unverified put in place
    for name, content in files.items():
        if name != "many/f010":
            assert (restore / name).read_bytes() == content, name
    # The pack mended: the next fetch (in this process, whose reads of packs are kept for
    # the members to come) reads the range again rather than its spoiled bytes.
    pack.write_bytes(original)
    again = dmp("manifest", "--fetch", "-m", str(work / "manifest.sha256"), cwd=restore, env=env)
    assert again.returncode == 0, again.stderr
    assert (restore / "many/f010").read_bytes() == files["many/f010"]
