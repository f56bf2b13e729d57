"""Packing vaults on the fleet and under faults, on moto's S3 server.

A mixed tree archived and fetched back by workers, attached and detached: the tree comes
back identical, and each pack, downloaded and listed by GNU tar, holds exactly the members
its index objects name. A run with a tenth of its requests faulted (embedded, and on a
worker), rerun until it ends well, loses no file, fetches no wrong one, and never says a
file is archived whose content a fault-free --vault cannot find; an index object's read
that fails once is tried again. The worker that packs SIGKILLed twice, while it uploads
the pack or once its first index object is written: the run done again leaves the vault
exact, no index naming a pack that is not there, and no upload left incomplete.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from dmp_cli.layout import digest_key
from dmp_cli.packs.catalog import IndexReader
from dmp_cli.packs.config import CONFIG_KEY, VaultConfig, parse_index_key, parse_pack_key
from tests.integration.fleet import Vault, fleet_env, new_vault, run, worker
from tests.integration.s3proxy import Aim, FaultProxy, fault_proxy
from tests.integration.vaultkit import dmp, incomplete, make_tree, sha
from tests.servers import Service, dmp_env, redis_server, stop

pytestmark = pytest.mark.integration

KiB, MiB = 1 << 10, 1 << 20
BELOW = 64 * KiB  # files under this are packed, in the mixed tree's vaults
TARGET = 32 * MiB  # the smallest target a config allows
FAST = {"DMP_RETRY_DELAYS": "0.01,0.02"}

MODES = ["attached", "detached"]


def mixed_tree() -> dict[str, bytes]:
    """Empty and 1-byte files, files just under, at and just over the threshold, one
    content under several names (packed and plain), and a name with a newline."""
    seed = os.urandom(BELOW + 2)
    files = {
        "empty": b"",
        "also empty": b"",
        "one": b"x",
        "another one": b"y",
        "under": seed[: BELOW - 1],
        "at": seed[1 : BELOW + 1],  # at the threshold: a plain object
        "over": seed[: BELOW + 1],
        "line\nbreak": b"a name with a newline\n",
        "copies/first": b"the same content\n",
        "copies/second": b"the same content\n",
        "copies/under": seed[: BELOW - 1],
        "copies/over": seed[: BELOW + 1],
    }
    for i in range(30):
        files[f"many/f{i:03}"] = os.urandom(1 + i * 1999)
    return files


def packing_vault(s3_url: str, tmp_path: Path, below: int = BELOW) -> Vault:
    """A new bucket's vault with a config object: a packing vault."""
    vault = new_vault("s3", tmp_path, s3_url)
    bucket, _, prefix = vault.url.removeprefix("s3://").partition("/")
    s3 = vault._client()
    try:
        config = VaultConfig(pack_below=below, pack_target=TARGET).encode()
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{CONFIG_KEY}", Body=config)
    finally:
        s3.close()
    return vault


def keys(vault: Vault) -> list[str]:
    """The keys of the vault's objects, under its prefix, without it."""
    bucket, _, prefix = vault.url.removeprefix("s3://").partition("/")
    s3 = vault._client()
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/")
        return sorted(
            obj["Key"][len(prefix) + 1 :] for page in pages for obj in page.get("Contents", [])
        )
    finally:
        s3.close()


def download(vault: Vault, key: str) -> bytes:
    bucket, _, prefix = vault.url.removeprefix("s3://").partition("/")
    s3 = vault._client()
    try:
        return bytes(s3.get_object(Bucket=bucket, Key=f"{prefix}/{key}")["Body"].read())
    finally:
        s3.close()


def catalog(vault: Vault) -> dict[str, set[tuple[str, int]]]:
    """What the index objects say each pack holds: pack -> {(member's name, size)}. Every
    pack an index object names, by its key or in its pack list, is in the vault."""
    listed = keys(vault)
    packs = {parse_pack_key(key) for key in listed} - {None}
    held: dict[str, set[tuple[str, int]]] = {}
    for key in listed:
        name = parse_index_key(key)
        if name is None:
            continue
        assert not name.merged and name.digest in packs, f"{key} names a pack not stored"
        reader = IndexReader(download(vault, key).splitlines(keepends=True), key, name.shard)
        assert set(reader.packs) <= packs, f"{key} lists a pack not stored"
        for entry in reader.entries():
            held.setdefault(entry.pack, set()).add((digest_key(entry.digest), entry.size))
    return held


def tar_listing(data: bytes, where: Path) -> set[tuple[str, int]]:
    """The members GNU tar lists (`tar -tvf`, as a user would run it): (name, size)."""
    where.write_bytes(data)
    listed = subprocess.run(["tar", "-tvf", str(where)], capture_output=True, check=True)
    members = set()
    for line in listed.stdout.decode().splitlines():
        _mode, _owner, size, _day, _time, name = line.split(maxsplit=5)
        members.add((name, int(size)))
    assert len(members) == len(listed.stdout.splitlines()), "a member listed twice"
    return members


def check_packs(
    vault: Vault, files: dict[str, bytes], tmp_path: Path, below: int = BELOW, exact: bool = True
) -> int:
    """Each pack is stored under its own sha256, and tar lists exactly the members its
    index objects name; every small content is indexed in one pack, every other one a
    plain object. The number of packs. Not ``exact``: tar lists at least the members
    named, as a pack whose index objects were not all written holds members that the
    next run packed again (and indexed there)."""
    held = catalog(vault)
    listed = keys(vault)
    packs = [key for key in listed if key.startswith("packs/")]
    assert sorted(f"packs/{pack}.tar" for pack in held) == packs  # no pack without an index
    for key in packs:
        data = download(vault, key)
        pack = parse_pack_key(key)
        assert pack == sha(data)
        members = tar_listing(data, tmp_path / "pack.tar")
        assert members == held[pack] if exact else members >= held[pack], key
    indexed = [name for named in held.values() for name, _ in named]
    small = {sha(data) for data in files.values() if len(data) < below}
    assert sorted(indexed) == sorted(digest_key(digest) for digest in small)
    plain = {sha(data) for data in files.values() if len(data) >= below}
    assert {digest_key(digest) for digest in plain} <= set(listed)
    assert not {digest_key(digest) for digest in small} & set(listed)
    return len(packs)


def same_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        assert (root / name).read_bytes() == data, name
    written = sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and path.name != "manifest.sha256"
    )
    assert written == sorted(files)


# ------------------------------------------------------------------ on the fleet


@pytest.fixture(scope="module")
def fleet(
    redis: Service, s3_server: Service, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Two workers on the session's Redis, both able to reach the S3 server."""
    logdir = tmp_path_factory.mktemp("packs-fleet-logs")
    env: dict[str, Any] = {"AWS_ENDPOINT_URL": s3_server.url}
    with worker(redis.url, "p1", logdir, **env), worker(redis.url, "p2", logdir, **env):
        yield redis.url


def on_fleet(fleet: str, vault: Vault, cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env: dict[str, Any] = vault.env
    result = run(*args, cwd=cwd, broker_url=fleet, **env)
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    return result


def detached(fleet: str, vault: Vault, cwd: Path, *args: str) -> tuple[int, str, dict[str, int]]:
    """`dmp manifest ARGS --detach`, then `dmp job watch` to its end: the exit status, the
    watch's stderr, and the job's counts."""
    submitted = on_fleet(fleet, vault, cwd, "manifest", *args, "--detach", "-m", "manifest.sha256")
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.decode().strip()
    watched = on_fleet(fleet, vault, cwd, "job", "watch", job)
    status = on_fleet(fleet, vault, cwd, "--json", "job", "status", job)
    record = json.loads(status.stdout.splitlines()[0])
    assert status.returncode == watched.returncode
    return watched.returncode, watched.stderr.decode(), record["counts"]


@pytest.mark.parametrize("mode", MODES)
def test_mixed_tree_round_trip_on_the_fleet(
    fleet: str, s3_server: Service, tmp_path: Path, mode: str
) -> None:
    vault = packing_vault(s3_server.url, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    files = mixed_tree()
    make_tree(work, files)
    small = {sha(data) for data in files.values() if len(data) < BELOW}
    distinct = len({sha(data) for data in files.values()})
    restore = tmp_path / "restore"
    restore.mkdir()
    shutil.copy(work / "manifest.sha256", restore)
    if mode == "attached":
        archived = on_fleet(
            fleet, vault, work, "-v", "manifest", "--archive", "-m", "manifest.sha256"
        )
        assert archived.returncode == 0, archived.stderr
        assert f"dmp: packed {len(small)} small files into 1 pack\n" in archived.stderr.decode()
    else:
        code, err, counts = detached(fleet, vault, work, "--archive")
        assert code == 0, err
        assert counts == {"uploaded": distinct, "skipped": len(files) - distinct}
    assert check_packs(vault, files, tmp_path) == 1

    if mode == "attached":
        fetched = on_fleet(fleet, vault, restore, "manifest", "--fetch", "-m", "manifest.sha256")
        assert fetched.returncode == 0, fetched.stderr
    else:
        code, err, counts = detached(fleet, vault, restore, "--fetch")
        assert code == 0, err
        assert counts == {"fetched": len(files)}
    same_tree(restore, files)

    # A second archive packs nothing again.
    again = on_fleet(fleet, vault, work, "manifest", "--archive", "-m", "manifest.sha256")
    assert again.returncode == 0, again.stderr
    assert "packed" not in again.stderr.decode()
    assert check_packs(vault, files, tmp_path) == 1


# ------------------------------------------------------------------ faults


def file_rows(result: subprocess.CompletedProcess[bytes]) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    return [row for row in rows if row.get("type") == "file"]


def present(vault: Vault, work: Path) -> set[str]:
    """The paths a fault-free --vault finds in the vault (straight to moto's server)."""
    answered = dmp(
        "--json", "manifest", "--vault", "-m", "manifest.sha256", cwd=work, env=dmp_env(**vault.env)
    )
    assert answered.returncode == 0, answered.stderr
    return {row["path"] for row in file_rows(answered) if row["status"] == "present"}


@pytest.mark.parametrize("mode", ["embedded", "fleet"])
def test_a_tenth_of_requests_faulted_loses_nothing_and_claims_nothing(
    s3_server: Service, tmp_path: Path, mode: str
) -> None:
    """Every request to S3 (the workers' too, on the fleet) meets a fault one time in
    ten; --archive is run until it ends well, then --fetch likewise."""
    vault = packing_vault(s3_server.url, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    files = mixed_tree()
    for i in range(40):  # more small files: more requests to fault, a bigger pack
        files[f"more/m{i:03}"] = os.urandom(100 + i * 1500)
    make_tree(work, files)
    with ExitStack() as stack:
        proxy = stack.enter_context(fault_proxy(s3_server.url, rate=0.1, seed=7, latency=0.05))
        env: dict[str, Any] = {**vault.env, "AWS_ENDPOINT_URL": proxy.url, **FAST}
        broker = None
        if mode == "fleet":  # a Redis and a worker of its own: all its requests faulted
            broker = stack.enter_context(redis_server()).url
            stack.enter_context(worker(broker, "faulted", tmp_path, concurrency=2, **env))

        def dmp_faulted(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
            result = run(*args, cwd=cwd, broker_url=broker, **env)
            assert b"Traceback" not in result.stderr, result.stderr.decode()
            return result

        faulted = _archive_until_done(dmp_faulted, proxy, vault, work)
        restore = tmp_path / "restore"
        restore.mkdir()
        faulted += _fetch_until_done(dmp_faulted, proxy, files, work, restore)
    assert faulted > 0
    same_tree(restore, files)  # none lost
    check_packs(vault, files, tmp_path, exact=False)  # a pack not all indexed, packed again


Runner = Callable[..., subprocess.CompletedProcess[bytes]]
RUNS = 10  # at most, each of --archive and --fetch


def _archive_until_done(dmp_faulted: Runner, proxy: FaultProxy, vault: Vault, work: Path) -> int:
    """--archive until it ends well; after each run, each file it said archived (uploaded,
    or there already) is found by a --vault that meets no fault. The faults met."""
    faulted = 0
    for _ in range(RUNS):
        archived = dmp_faulted("--json", "manifest", "--archive", "-m", "manifest.sha256", cwd=work)
        faulted += sum(proxy.reset().faulted.values())
        claimed = {
            row["path"] for row in file_rows(archived) if row["status"] in ("uploaded", "skipped")
        }
        found = present(vault, work)
        assert claimed <= found, sorted(claimed - found)
        if archived.returncode == 0:
            assert found == {row["path"] for row in file_rows(archived)}
            return faulted
    pytest.fail(f"--archive still failing after {RUNS} runs: {archived.stderr.decode()}")


def _fetch_until_done(
    dmp_faulted: Runner, proxy: FaultProxy, files: dict[str, bytes], work: Path, restore: Path
) -> int:
    """--fetch until it ends well; after each run, no file is wrong, however far it went,
    and no temporary is left. The faults met."""
    faulted = 0
    manifest = str(work / "manifest.sha256")
    for _ in range(RUNS):
        fetched = dmp_faulted("manifest", "--fetch", "-m", manifest, cwd=restore)
        faulted += sum(proxy.reset().faulted.values())
        for name, data in files.items():
            path = restore / name
            assert not path.exists() or path.read_bytes() == data, name
        assert not [p for p in restore.rglob("*") if ".dmp-tmp" in p.name]
        if fetched.returncode == 0:
            return faulted
    pytest.fail(f"--fetch still failing after {RUNS} runs: {fetched.stderr.decode()}")


@pytest.mark.parametrize(
    "kind",
    [
        "cut",
        "headers-cut",
        "reset-before",
        "reset-after",
    ],
)
def test_an_index_read_that_fails_is_tried_again(
    s3_server: Service, tmp_path: Path, kind: str
) -> None:
    """The first GET of an index object fails (its answer cut short, or the connection
    reset): the read is tried again and the fetch ends well, with no unexpected error."""
    vault = packing_vault(s3_server.url, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    files = mixed_tree()
    make_tree(work, files)
    archived = dmp(
        "manifest", "--archive", "-m", "manifest.sha256", cwd=work, env=dmp_env(**vault.env)
    )
    assert archived.returncode == 0, archived.stderr
    restore = tmp_path / "restore"
    restore.mkdir()
    with fault_proxy(s3_server.url) as proxy:
        proxy.arm(Aim(kind="get", key="/index/", first=1), (kind,))
        env = dmp_env(**{**vault.env, "AWS_ENDPOINT_URL": proxy.url, **FAST})
        manifest = str(work / "manifest.sha256")
        fetched = dmp("manifest", "--fetch", "-m", manifest, cwd=restore, env=env)
        assert sum(proxy.counts.faulted.values()) == 1
    assert fetched.returncode == 0, fetched.stderr
    same_tree(restore, files)


# ------------------------------------------------------------------ killed mid-pack


def wait_for_aimed(
    proxy: FaultProxy, count: int, command: subprocess.Popen[bytes] | None, timeout: float = 60.0
) -> None:
    """Until the proxy has held back the answers to ``count`` requests its aim met (each
    reached the server); the attached ``command`` ending first is a failure of its own."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proxy.counts.faulted["latency"] >= count:
            return
        if command is not None and command.poll() is not None:
            _, err = command.communicate()
            raise AssertionError(f"the archive ended before its pack went: {err.decode()}")
        time.sleep(0.02)
    raise AssertionError(f"no part of a pack reached the server within {timeout} s")


# Where a worker is killed: once a part of its pack has reached the server (the pack's
# upload left incomplete), or once its first index object has (the pack stored, one of its
# shards indexed, the others not).
KILLS = {
    "pack-part": (Aim(kind="upload-part", key="/packs/", first=1, fresh=True), 1),
    "index-put": (Aim(kind="put", key="/index/", first=1, fresh=True), 0),
}


@pytest.mark.parametrize("at", list(KILLS))
@pytest.mark.parametrize("mode", MODES)
def test_a_worker_killed_mid_pack_twice(
    s3_server: Service, tmp_path: Path, mode: str, at: str
) -> None:
    """The worker that packs (attached: the one that took the pack's batch; detached: the
    job's coordinator) is SIGKILLed once a request of its pack has reached the server, the
    proxy holding the answer back; then the next one likewise; the third one finishes.
    The vault is exact, its catalog names only packs it holds, and no upload is left."""
    vault = packing_vault(s3_server.url, tmp_path, below=MiB)
    bucket, _, prefix = vault.url.removeprefix("s3://").partition("/")
    work = tmp_path / "work"
    work.mkdir()
    files = {f"bulk/b{i:03}": os.urandom(600 * KiB) for i in range(80)}  # one pack, 48 MiB
    files["big"] = os.urandom(2 * MiB)
    files["tiny"] = b"t"
    files["empty"] = b""
    make_tree(work, files)
    aim, left_by_each = KILLS[at]
    s3 = vault._client()
    with fault_proxy(s3_server.url, latency=30.0) as proxy, redis_server() as server:
        env: dict[str, Any] = {
            **vault.env,
            "AWS_ENDPOINT_URL": proxy.url,
            "DMP_REDELIVERY_TIMEOUT": "3",
            "DMP_LEASE_SECONDS": "2",
            **FAST,
        }
        proxy.arm(aim, ("latency",))
        command = job = None
        if mode == "attached":
            command = subprocess.Popen(
                [sys.executable, "-m", "dmp_cli", "manifest", "--archive", "-m", "manifest.sha256"],
                cwd=work,
                env=fleet_env(server.url, **env),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        else:
            args = ["manifest", "--archive", "--detach", "-m", "manifest.sha256"]
            submitted = run(*args, cwd=work, broker_url=server.url, **env)
            assert submitted.returncode == 0, submitted.stderr
            job = submitted.stdout.decode().strip()
        try:
            for count, name in enumerate(("first", "second"), 1):
                with worker(server.url, name, tmp_path, concurrency=2, **env) as doomed:
                    wait_for_aimed(proxy, count, command)
                    os.killpg(doomed.pid, signal.SIGKILL)
                    doomed.wait()
                proxy.arm(aim, ("latency",))  # the next worker's first part, likewise
            left = incomplete(s3, bucket, f"{prefix}/packs/")
            assert len(left) == 2 * left_by_each  # each killed worker's upload of the pack
            proxy.arm(None)
            with worker(server.url, "third", tmp_path, concurrency=2, **env):
                if command is not None:
                    _, err = command.communicate(timeout=120)
                    code = command.returncode
                else:
                    assert job is not None
                    watched = run("job", "watch", job, cwd=work, broker_url=server.url, timeout=120)
                    code, err = watched.returncode, watched.stderr
        finally:
            if command is not None:
                stop(command)
        assert code == 0, err.decode()
        rerun = run(
            "manifest", "--archive", "-m", "manifest.sha256", cwd=work, broker_url=None, **env
        )
    try:
        assert rerun.returncode == 0, rerun.stderr
        assert "dmp: 0 files (0 B) uploaded" in rerun.stderr.decode()  # nothing left to do

        # The vault is exact: every file present by a fault-free --vault, and fetched back;
        # no index object names a pack that is not there; one pack, listed by tar.
        assert present(vault, work) == set(files)
        # Attached, the batch of the pack is run again as it was: the same pack. Detached,
        # each new coordinator plans anew: the files of the shards indexed before are in
        # the vault, the others go into a new pack; the packs indexed in part hold those
        # members still (tar lists them), which no index names.
        again = mode == "detached" and at == "index-put"
        assert check_packs(vault, files, tmp_path, MiB, exact=not again) == (3 if again else 1)
        restore = tmp_path / "restore"
        restore.mkdir()
        manifest = str(work / "manifest.sha256")
        fetched = dmp("manifest", "--fetch", "-m", manifest, cwd=restore, env=dmp_env(**vault.env))
        assert fetched.returncode == 0, fetched.stderr
        same_tree(restore, files)

        vault_env = dmp_env(**vault.env)
        cleared = dmp("vault", "uploads", "--abort", "--older-than", "0", cwd=work, env=vault_env)
        assert cleared.returncode == 0, cleared.stderr
        assert incomplete(s3, bucket) == []
    finally:
        s3.close()
