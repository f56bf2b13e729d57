"""--fetch from cold storage, and `dmp vault restore`: on moto's server (whose restores of
GLACIER objects are done at once), and behind the fault proxy's ``ColdStorage``, which
holds each restore "ongoing" until the test releases it, and refuses some."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dmp_cli.errors import StoreError
from dmp_cli.layout import digest_key
from dmp_cli.packs.config import CONFIG_KEY, VaultConfig
from dmp_cli.store.s3 import S3Store
from tests.integration.fleet import new_vault, run, worker
from tests.integration.s3proxy import ColdStorage, FaultProxy, fault_proxy
from tests.integration.vaultkit import dmp, make_tree, sha, small_tree, stderr_lines
from tests.servers import Service, dmp_env, moto_client

pytestmark = pytest.mark.integration

MiB = 1 << 20
POLL = 0.3  # seconds between polls (DMP_RESTORE_POLL)
# 1,000 files take about 20 s here (archive, fetch, fetch again); the round's 1 % is 10.
MANY = 1000


@dataclass
class Site:
    work: Path
    bucket: str
    files: dict[str, bytes]
    proxy: FaultProxy
    cold: ColdStorage
    env: dict[str, str]
    s3: Any

    def fetch(self, target: Path, *args: str) -> Any:
        target.mkdir(exist_ok=True)
        manifest = str(self.work / "manifest.sha256")
        return dmp("manifest", "--fetch", "-m", manifest, *args, cwd=target, env=self.env)

    def fetched_all(self, target: Path) -> bool:
        return all(
            (target / name).exists() and (target / name).read_bytes() == data
            for name, data in self.files.items()
        )


def _site(
    s3_server: Service, tmp_path: Path, files: dict[str, bytes], packing: bool, **cold: Any
) -> Iterator[Site]:
    s3 = moto_client(s3_server.url)
    bucket = f"dmp-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=bucket)
    if packing:
        config = VaultConfig(pack_below=MiB, pack_target=32 * MiB).encode()
        s3.put_object(Bucket=bucket, Key=f"vault/{CONFIG_KEY}", Body=config)
    work = tmp_path / "work"
    work.mkdir()
    make_tree(work, files)
    # Archived straight to moto: the objects then go "cold" behind the proxy.
    straight = dmp_env(AWS_ENDPOINT_URL=s3_server.url, DMP_VAULT=f"s3://{bucket}/vault")
    archived = dmp("manifest", "--archive", "-m", "manifest.sha256", cwd=work, env=straight)
    assert archived.returncode == 0, archived.stderr
    storage = ColdStorage(**cold)
    with fault_proxy(s3_server.url, cold=storage) as proxy:
        env = dmp_env(
            AWS_ENDPOINT_URL=proxy.url,
            DMP_VAULT=f"s3://{bucket}/vault",
            DMP_RESTORE_POLL=str(POLL),
        )
        yield Site(work, bucket, files, proxy, storage, env, s3)
    s3.close()


@pytest.fixture
def many(s3_server: Service, tmp_path: Path) -> Iterator[Site]:
    yield from _site(s3_server, tmp_path, small_tree(MANY, seed=7), packing=False)


@pytest.fixture
def few(s3_server: Service, tmp_path: Path) -> Iterator[Site]:
    yield from _site(s3_server, tmp_path, small_tree(30, seed=8), packing=False)


def _objects(files: dict[str, bytes]) -> set[str]:
    return {digest_key(sha(data)) for data in files.values()}


def _release_when(cold: ColdStorage, requested: int, polls: int) -> tuple[threading.Thread, list]:
    """A thread that releases every restore once ``requested`` were asked for and
    ``polls`` HEADs came after the last of them; its list gets the release's time."""
    released: list[float] = []

    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            asked = [when for when, kind, _ in list(cold.log) if kind == "restore"]
            if len(asked) >= requested:
                later = [when for when, _ in cold.heads() if when > max(asked)]
                if len(later) >= polls:
                    released.append(time.monotonic())
                    cold.release()
                    return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, released


def _rounds(heads: list[float], gap: float) -> list[int]:
    """HEADs grouped into rounds: those closer together than ``gap`` are one round."""
    rounds: list[int] = []
    last = None
    for when in sorted(heads):
        if last is None or when - last > gap:
            rounds.append(0)
        rounds[-1] += 1
        last = when
    return rounds


def test_an_attached_fetch_waits_for_the_restores_and_polls_sparingly(
    many: Site, tmp_path: Path
) -> None:
    objects = _objects(many.files)
    thread, released = _release_when(many.cold, len(objects), polls=25)
    target = tmp_path / "restore"
    fetched = many.fetch(target)
    thread.join()
    assert fetched.returncode == 0, fetched.stderr
    assert many.fetched_all(target)
    # One restore a distinct object, none asked twice.
    restores = many.cold.restores
    assert set(restores) == {f"/{many.bucket}/vault/{key}" for key in objects}
    assert set(restores.values()) == {1}
    # No file fetched before the restores were done: every GET came after the release.
    gets = [when for when, kind, _ in many.cold.log if kind == "get"]
    assert released and gets and min(gets) >= released[0]
    # Between the last restore requested and the release, only polls: each round HEADs at
    # most 1 % of the objects waiting (10 of 1,000).
    last_request = max(when for when, kind, _ in many.cold.log if kind == "restore")
    polls = [when for when, _ in many.cold.heads() if last_request < when < released[0]]
    rounds = _rounds(polls, gap=POLL / 2)
    assert len(rounds) >= 3, rounds
    assert max(rounds) <= len(objects) // 100, rounds
    stderr = fetched.stderr.decode()
    assert f"restoring: 0 of {len(objects):,} objects ready" in stderr
    assert "typically 3-5 hours" in stderr
    assert f"dmp: {len(many.files)} files" in stderr


def test_no_wait_then_a_later_fetch_completes_the_tree(few: Site, tmp_path: Path) -> None:
    objects = _objects(few.files)
    target = tmp_path / "restore"
    first = few.fetch(target, "--no-wait", "--restore-tier", "bulk", "--restore-days", "3")
    assert first.returncode == 3, first.stderr
    last = stderr_lines(first)[-1]
    assert last == (
        f"dmp: {len(objects)} objects are being restored from cold storage (Bulk tier), "
        f"{len(few.files)} files not fetched yet: run the same command again later to "
        "fetch them"
    )
    assert not any((target / name).exists() for name in few.files)
    assert sum(few.cold.restores.values()) == len(objects)
    # Half done meanwhile: a second run fetches those, and asks nothing again.
    half = sorted(objects)[: len(objects) // 2]
    few.cold.release(tuple(half))
    second = few.fetch(target, "--no-wait", "--json")
    assert second.returncode == 3, second.stderr
    records = [json.loads(line) for line in second.stdout.splitlines()]
    assert records[-1]["type"] == "summary"
    restore = [r for r in records if r["type"] == "restore"]
    waiting = len(objects) - len(half)  # the others were read in the first pass
    assert len(restore) == 1 and restore[0]["ongoing"] == restore[0]["waiting"] == waiting
    assert restore[0]["requested"] == 0
    assert set(few.cold.restores.values()) == {1}
    done = [name for name, data in few.files.items() if digest_key(sha(data)) in half]
    assert done and all((target / name).exists() for name in done)
    few.cold.release()
    third = few.fetch(target, "--no-wait")
    assert third.returncode == 0, third.stderr
    assert few.fetched_all(target)
    assert set(few.cold.restores.values()) == {1}
    # The restored copies expired: a fetch asks again, once.
    few.cold.expire()
    again = tmp_path / "again"
    fourth = few.fetch(again, "--no-wait")
    assert fourth.returncode == 3, fourth.stderr
    assert set(few.cold.restores.values()) == {2}


@pytest.fixture
def refusing(s3_server: Service, tmp_path: Path) -> Iterator[Site]:
    files = small_tree(14, seed=9)
    refused = digest_key(sha(files["d6/f0006.dat"]))
    yield from _site(s3_server, tmp_path, files, packing=False, hold=False, refuse=(refused,))


def test_a_refused_restore_fails_its_file_alone(refusing: Site, tmp_path: Path) -> None:
    target = tmp_path / "restore"
    fetched = refusing.fetch(target)
    assert fetched.returncode == 1, fetched.stderr
    errors = [line for line in stderr_lines(fetched) if "restore refused" in line]
    assert len(errors) == 1, stderr_lines(fetched)
    assert errors[0].startswith("dmp: d6/f0006.dat: s3://")
    assert "access denied (AccessDenied)" in errors[0]
    assert not (target / "d6/f0006.dat").exists()
    for name, data in refusing.files.items():
        if name != "d6/f0006.dat":
            assert (target / name).read_bytes() == data, name


@pytest.fixture
def packed(s3_server: Service, tmp_path: Path) -> Iterator[Site]:
    yield from _site(s3_server, tmp_path, small_tree(200, seed=10), packing=True)


def test_a_packing_vault_restores_each_pack_once(packed: Site, tmp_path: Path) -> None:
    thread, _ = _release_when(packed.cold, 1, polls=2)
    target = tmp_path / "restore"
    fetched = packed.fetch(target)
    thread.join()
    assert fetched.returncode == 0, fetched.stderr
    assert packed.fetched_all(target)
    restores = packed.cold.restores
    assert len(restores) == 1 and "/packs/" in next(iter(restores)), restores
    assert set(restores.values()) == {1}


def test_vault_restore_stages_once(few: Site) -> None:
    objects = _objects(few.files)
    manifest = str(few.work / "manifest.sha256")
    staged = dmp(
        "vault",
        "restore",
        "-m",
        manifest,
        "--restore-tier",
        "Expedited",
        cwd=few.work,
        env=few.env,
    )
    assert staged.returncode == 0, staged.stderr
    assert stderr_lines(staged)[-1] == (
        f"dmp: {len(objects)} restores requested (Expedited tier, 7 days), "
        "0 already in progress, 0 readable already, 0 refused"
    )
    again = dmp("vault", "restore", "-m", manifest, cwd=few.work, env=few.env)
    assert again.returncode == 0, again.stderr
    assert stderr_lines(again)[-1] == (
        f"dmp: 0 restores requested (Standard tier, 7 days), {len(objects)} already in "
        "progress, 0 readable already, 0 refused"
    )
    assert set(few.cold.restores.values()) == {1}
    assert not any(kind == "get" for _, kind, _ in few.cold.log)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--restore-days", "0"), "--restore-days must be a positive whole number"),
        (("--restore-days", "1.5"), "--restore-days must be a positive whole number"),
        (("--restore-days", "x"), "--restore-days must be a positive whole number"),
        (("--restore-tier", "fast"), "--restore-tier must be Bulk, Standard or Expedited"),
    ],
    ids=["zero-days", "fraction", "not-a-number", "unknown-tier"],
)
def test_bad_restore_options_are_usage_errors(
    args: tuple[str, ...], said: str, tmp_path: Path
) -> None:
    env = dmp_env(DMP_VAULT=f"file://{tmp_path}")
    (tmp_path / "m.sha256").write_text(f"{'0' * 64}  a\n")
    fetched = dmp("manifest", "--fetch", "-m", "m.sha256", *args, cwd=tmp_path, env=env)
    assert fetched.returncode == 2, fetched.stderr
    assert said in fetched.stderr.decode()
    staged = dmp("vault", "restore", "-m", "m.sha256", *args, cwd=tmp_path, env=env)
    assert staged.returncode == 2, staged.stderr
    assert said in staged.stderr.decode()


# ------------------------------------------------------------------ on moto, as it is


def test_s3store_object_state_and_restore_on_moto(s3_server: Service) -> None:
    s3 = moto_client(s3_server.url)
    bucket = f"dmp-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="v/cold", Body=b"x", StorageClass="GLACIER")
    s3.put_object(Bucket=bucket, Key="v/deep", Body=b"x", StorageClass="DEEP_ARCHIVE")
    s3.put_object(Bucket=bucket, Key="v/warm", Body=b"x", StorageClass="GLACIER_IR")
    store = S3Store(s3, bucket, "v")
    try:
        assert store.object_state("absent") is None
        cold = store.object_state("cold")
        assert cold is not None and cold.storage_class == "GLACIER"
        assert cold.cold and not cold.readable and cold.restore is None
        deep = store.object_state("deep")
        assert deep is not None and deep.cold and not deep.readable
        warm = store.object_state("warm")
        assert warm is not None and not warm.cold and warm.readable
        assert store.request_restore("cold", 2, "Bulk") == "requested"
        restored = store.object_state("cold")  # moto's restores are done at once
        assert restored is not None and restored.restore == "restored" and restored.readable
        assert restored.expiry
        with pytest.raises(StoreError) as refused:
            store.request_restore("warm", 2, "Standard")
        assert str(refused.value) == (
            f"s3://{bucket}/v/warm: restore refused: the object is not in a storage class "
            "that needs one (InvalidObjectState)"
        )
    finally:
        store.close()


def test_a_fetch_from_glacier_on_moto(s3_server: Service, tmp_path: Path) -> None:
    """Objects written in GLACIER (moto refuses their GETs until restored, then restores
    them at once): the fetch restores each and brings every file back."""
    s3 = moto_client(s3_server.url)
    bucket = f"dmp-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=bucket)
    files = small_tree(20, seed=11)
    work = tmp_path / "work"
    work.mkdir()
    make_tree(work, files)
    for data in set(files.values()):
        key = f"vault/{digest_key(sha(data))}"
        s3.put_object(Bucket=bucket, Key=key, Body=data, StorageClass="GLACIER")
    env = dmp_env(
        AWS_ENDPOINT_URL=s3_server.url, DMP_VAULT=f"s3://{bucket}/vault", DMP_RESTORE_POLL="0.1"
    )
    target = tmp_path / "restore"
    target.mkdir()
    fetched = dmp("manifest", "--fetch", "-m", str(work / "manifest.sha256"), cwd=target, env=env)
    assert fetched.returncode == 0, fetched.stderr
    for name, data in files.items():
        assert (target / name).read_bytes() == data, name
    s3.close()


# ------------------------------------------------------------------ detached


@pytest.fixture(scope="module")
def fleet(
    redis: Service, s3_server: Service, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Two workers on the session's Redis (a coordinator, and one for its batches) that
    reach moto's server."""
    logdir = tmp_path_factory.mktemp("cold-fleet-logs")
    # A parked job is looked at again after DMP_RESTORE_POLL, by a watchdog that looks
    # every third of the lease.
    env: dict[str, Any] = {
        "AWS_ENDPOINT_URL": s3_server.url,
        "DMP_RESTORE_POLL": "0.2",
        "DMP_LEASE_SECONDS": "3",
    }
    with worker(redis.url, "cold1", logdir, **env), worker(redis.url, "cold2", logdir, **env):
        yield redis.url


def test_a_detached_fetch_of_cold_objects_waits_for_their_restores(
    fleet: str, s3_server: Service, tmp_path: Path
) -> None:
    """Objects in GLACIER on moto (restored at once once asked): the detached job asks
    for each restore, is parked, and brings every file back when it looks again."""
    vault = new_vault("s3", tmp_path, s3_server.url)
    bucket, _, prefix = vault.url.removeprefix("s3://").partition("/")
    files = small_tree(40, seed=12)
    work = tmp_path / "work"
    work.mkdir()
    make_tree(work, files)
    s3 = moto_client(s3_server.url)
    for data in set(files.values()):
        key = f"{prefix}/{digest_key(sha(data))}"
        s3.put_object(Bucket=bucket, Key=key, Body=data, StorageClass="GLACIER")
    s3.close()
    target = tmp_path / "restore"
    target.mkdir()
    manifest = str(work / "manifest.sha256")
    env: dict[str, Any] = vault.env
    submitted = run(
        "manifest", "--fetch", "--detach", "-m", manifest, cwd=target, broker_url=fleet, **env
    )
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.decode().strip()
    watched = run("job", "watch", job, cwd=target, broker_url=fleet, **env)
    assert watched.returncode == 0, watched.stderr
    for name, data in files.items():
        assert (target / name).read_bytes() == data, name
    status = run("--json", "job", "status", job, cwd=target, broker_url=fleet, **env)
    summary = json.loads(status.stdout.splitlines()[0])
    assert summary["counts"] == {"fetched": len(files)}, summary
    assert summary["restore"] == {
        "waiting": 0,
        "objects": len(set(files.values())),
        "next_look": None,
    }


def test_vault_restore_in_a_packing_vault_asks_once_per_pack(packed: Site) -> None:
    manifest = str(packed.work / "manifest.sha256")
    staged = dmp("--json", "vault", "restore", "-m", manifest, cwd=packed.work, env=packed.env)
    assert staged.returncode == 0, staged.stderr
    summary = json.loads(staged.stdout.splitlines()[-1])
    assert (summary["requested"], summary["ongoing"], summary["refused"]) == (1, 0, 0)
    restores = packed.cold.restores
    assert len(restores) == 1 and "/packs/" in next(iter(restores)), restores
