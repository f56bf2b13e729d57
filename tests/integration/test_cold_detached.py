"""A detached --fetch of objects in cold storage: the job is parked while the restores are
under way (no worker holds it), looked at again on a schedule, and finishes once they are
done; behind the fault proxy's ``ColdStorage``, which holds each restore "ongoing" until
the test releases it, and counts every request."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis as redis_client

from dmp_cli.layout import digest_key
from dmp_cli.packs.config import CONFIG_KEY, VaultConfig
from tests.integration.fleet import fleet_env, run, worker
from tests.integration.s3proxy import ColdStorage, fault_proxy
from tests.integration.vaultkit import dmp, make_tree, sha, small_tree
from tests.servers import (
    Service,
    dmp_env,
    free_port,
    moto_client,
    redis_server_path,
    stop,
    wait_for_port,
)

pytestmark = pytest.mark.integration

FAULTS = ["-m", "tests.integration.faults"]  # workers whose downloads can be slowed

POLL = 0.5  # DMP_RESTORE_POLL on the workers
# A short lease: the watchdog, which sends a parked job a coordinator once it is due,
# looks every third of it (at least every second).
WORKERS: dict[str, Any] = {"DMP_RESTORE_POLL": str(POLL), "DMP_LEASE_SECONDS": "3"}


@dataclass
class Cold:
    """Files archived to a bucket whose objects are cold behind the proxy."""

    work: Path
    bucket: str
    files: dict[str, bytes]
    cold: ColdStorage
    env: dict[str, Any]  # what reaches the vault through the proxy

    @property
    def objects(self) -> set[str]:
        return {f"/{self.bucket}/vault/{digest_key(sha(data))}" for data in self.files.values()}

    def requested(self) -> int:
        return sum(1 for _, kind, _ in list(self.cold.log) if kind == "restore")

    def fetched_all(self, target: Path) -> bool:
        return all(
            (target / name).exists() and (target / name).read_bytes() == data
            for name, data in self.files.items()
        )


@contextmanager
def _cold(
    s3_server: Service,
    tmp_path: Path,
    count: int,
    seed: int,
    packing: bool = False,
    **cold: Any,
) -> Iterator[Cold]:
    s3 = moto_client(s3_server.url)
    bucket = f"dmp-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=bucket)
    if packing:
        config = VaultConfig(pack_below=1 << 20, pack_target=32 << 20).encode()
        s3.put_object(Bucket=bucket, Key=f"vault/{CONFIG_KEY}", Body=config)
    files = small_tree(count, seed=seed)
    work = tmp_path / "work"
    work.mkdir()
    make_tree(work, files)
    straight = dmp_env(AWS_ENDPOINT_URL=s3_server.url, DMP_VAULT=f"s3://{bucket}/vault")
    archived = dmp("manifest", "--archive", "-m", "manifest.sha256", cwd=work, env=straight)
    assert archived.returncode == 0, archived.stderr
    storage = ColdStorage(**cold)
    try:
        with fault_proxy(s3_server.url, cold=storage) as proxy:
            env: dict[str, Any] = {
                "AWS_ENDPOINT_URL": proxy.url,
                "DMP_VAULT": f"s3://{bucket}/vault",
            }
            yield Cold(work, bucket, files, storage, env)
    finally:
        s3.close()


def _wait(what: Callable[[], bool], why: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, f"timed out waiting for {why}"
        time.sleep(0.05)


def _submit(url: str, site: Cold, target: Path) -> str:
    target.mkdir()
    manifest = str(site.work / "manifest.sha256")
    submitted = run(
        "manifest", "--fetch", "-m", manifest, "--detach", cwd=target, broker_url=url, **site.env
    )
    assert submitted.returncode == 0, submitted.stderr
    return submitted.stdout.decode().strip()


def _parked(client: Any, job: str) -> Callable[[], bool]:
    return lambda: client.zscore("dmp:parked", job) is not None


def _status(url: str, cwd: Path, job: str) -> tuple[dict[str, Any], str]:
    as_json = run("--json", "job", "status", job, cwd=cwd, broker_url=url)
    text = run("job", "status", job, cwd=cwd, broker_url=url)
    return json.loads(as_json.stdout.splitlines()[0]), text.stdout.decode()


def _while_parked(url: str, cwd: Path, job: str) -> tuple[dict[str, Any], str]:
    """The job's status while it is parked (not while a coordinator looks again)."""
    for _ in range(50):
        status, text = _status(url, cwd, job)
        if status["state"] == "waiting":
            return status, text
        time.sleep(0.05)
    raise AssertionError(f"job {job} is not seen parked: {status}")


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


@pytest.fixture
def many(s3_server: Service, tmp_path: Path) -> Iterator[Cold]:
    with _cold(s3_server, tmp_path, 1000, seed=21) as site:
        yield site


def test_a_detached_fetch_is_parked_until_the_restores_are_done(
    many: Cold, redis: Service, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    target = tmp_path / "restore"
    client = redis_client.Redis.from_url(redis.url)
    env = {**WORKERS, **many.env}  # the workers reach the vault through the proxy too
    with (
        worker(redis.url, "cd1", logs, concurrency=4, **env),
        worker(redis.url, "cd2", logs, concurrency=4, **env),
    ):
        job = _submit(redis.url, many, target)
        _wait(_parked(client, job), "the job parked")
        assert many.requested() == len(many.objects)
        status, text = _while_parked(redis.url, target, job)
        assert status["restore"]["waiting"] == status["restore"]["objects"] == len(many.objects)
        assert f"waiting for restore: {len(many.objects):,} of {len(many.objects):,}" in text
        assert status["counts"] == {} and not status["failed"], status
        # Parked, it holds no worker: its coordinators' tasks end (each look is one).
        said = "".join(path.read_text() for path in logs.glob("*.log"))
        assert f"job {job}: parked until its objects' restores are done" in said
        watcher = subprocess.Popen(
            [sys.executable, "-m", "dmp_cli", "job", "watch", job],
            cwd=target,
            env=fleet_env(redis.url),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        last_request = max(when for when, kind, _ in many.cold.log if kind == "restore")
        _wait(lambda: len([h for h, _ in many.cold.heads() if h > last_request]) >= 25, "polls")
        released = time.monotonic()
        many.cold.release()
        _, watched = watcher.communicate(timeout=120)
        status, _ = _status(redis.url, target, job)
    client.close()
    # The command that watches the job says it waits, and is not put off by it.
    assert watcher.returncode == 0, watched.decode()
    objects = f"{len(many.objects):,}"
    assert f"job {job}: waiting for restore: {objects} of {objects} objects" in watched.decode()
    assert many.fetched_all(target)
    assert status["state"] == "done" and status["counts"] == {"fetched": len(many.files)}
    assert status["files"] == status["total"] == len(many.files)
    assert status["restore"]["waiting"] == 0
    # One restore an object, none asked twice; no GET before the release.
    assert set(many.cold.restores) == many.objects
    assert set(many.cold.restores.values()) == {1}
    gets = [when for when, kind, _ in many.cold.log if kind == "get"]
    assert gets and min(gets) >= released
    # Each polling round HEADs at most 1 % of the objects waiting.
    polls = [when for when, _ in many.cold.heads() if last_request < when < released]
    rounds = _rounds(polls, gap=POLL / 2)
    assert len(rounds) >= 3, rounds
    assert max(rounds) <= len(many.objects) // 100, rounds


class _AofRedis:
    """A redis-server with AOF on a fixed port, that the test SIGKILLs and starts again."""

    def __init__(self, workdir: Path, stack: ExitStack) -> None:
        self.workdir, self.stack = workdir, stack
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        exe = redis_server_path()
        assert exe is not None
        self.workdir.mkdir(exist_ok=True)
        proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--dir", str(self.workdir), "--appendonly", "yes", "--appendfsync", "always"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self.stack.callback(stop, proc)
        wait_for_port(self.port, proc)
        return proc

    def restart(self) -> None:
        """SIGKILL it, and start it again from its AOF."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = self._start()


@pytest.fixture
def few(s3_server: Service, tmp_path: Path) -> Iterator[Cold]:
    with _cold(s3_server, tmp_path, 60, seed=22) as site:
        yield site


def test_a_parked_job_outlives_its_worker_and_a_redis_restart(few: Cold, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    target = tmp_path / "restore"
    with ExitStack() as stack:
        server = _AofRedis(tmp_path / "redis", stack)
        env = {**WORKERS, **few.env}
        doomed = stack.enter_context(worker(server.url, "doomed", logs, concurrency=3, **env))
        client = redis_client.Redis.from_url(server.url)
        stack.callback(client.close)
        job = _submit(server.url, few, target)
        _wait(_parked(client, job), "the job parked")
        asked = few.requested()
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait()
        server.restart()
        _wait(_parked(client, job), "the job parked after the restart")
        stack.enter_context(worker(server.url, "heir", logs, concurrency=3, **env))
        # The new worker looks at the restores (a few polls), and parks the job again.
        heads = len(few.cold.heads())
        _wait(lambda: len(few.cold.heads()) > heads + 2, "polls by the new worker")
        few.cold.release()
        watched = run("job", "watch", job, cwd=target, broker_url=server.url, timeout=60)
        status, _ = _status(server.url, target, job)
    assert watched.returncode == 0, watched.stderr
    assert few.fetched_all(target)
    assert status["counts"] == {"fetched": len(few.files)}, status
    assert status["files"] == status["total"] == len(few.files)
    assert asked == len(few.objects)
    assert set(few.cold.restores) == few.objects
    assert set(few.cold.restores.values()) == {1}


def test_a_parked_job_cancelled_ends(few: Cold, redis: Service, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    target = tmp_path / "restore"
    client = redis_client.Redis.from_url(redis.url)
    with worker(redis.url, "cc1", logs, concurrency=3, **WORKERS, **few.env):
        job = _submit(redis.url, few, target)
        _wait(_parked(client, job), "the job parked")
        cancelled = run("job", "cancel", job, cwd=target, broker_url=redis.url)
        assert cancelled.returncode == 0, cancelled.stderr
        assert client.zscore("dmp:parked", job) is None
        few.cold.release()
        time.sleep(2 * POLL + 1)  # a watchdog's scan or two: nothing is sent it
        status, _ = _status(redis.url, target, job)
    client.close()
    assert status["state"] == "cancelled", status
    assert not any((target / name).exists() for name in few.files)


def test_a_detached_no_wait_fetch_requests_the_restores_and_ends(
    few: Cold, redis: Service, tmp_path: Path
) -> None:
    """--no-wait, detached: the restores requested, the job ends saying what is left; a
    later fetch completes the tree and asks nothing again."""
    logs = tmp_path / "logs"
    logs.mkdir()
    target = tmp_path / "restore"
    target.mkdir()
    manifest = str(few.work / "manifest.sha256")
    with worker(redis.url, "nw1", logs, concurrency=3, **WORKERS, **few.env):
        submitted = run(
            "manifest", "--fetch", "-m", manifest, "--no-wait", "--detach",
            cwd=target, broker_url=redis.url, **few.env,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        job = submitted.stdout.decode().strip()
        watched = run("job", "watch", job, cwd=target, broker_url=redis.url, timeout=60)
    assert watched.returncode == 3, watched.stderr  # as the attached --no-wait's own run
    assert "objects are being restored from cold storage" in watched.stderr.decode()
    assert set(few.cold.restores.values()) == {1}
    few.cold.release()
    later = dmp("manifest", "--fetch", "-m", manifest, cwd=target, env=dmp_env(**few.env))
    assert later.returncode == 0, later.stderr
    assert few.fetched_all(target)
    assert set(few.cold.restores.values()) == {1}


@pytest.fixture
def packed(s3_server: Service, tmp_path: Path) -> Iterator[Cold]:
    with _cold(s3_server, tmp_path, 200, seed=23, packing=True) as site:
        yield site


def test_a_detached_fetch_from_a_packing_vault_restores_each_pack_once(
    packed: Cold, redis: Service, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    target = tmp_path / "restore"
    client = redis_client.Redis.from_url(redis.url)
    with worker(redis.url, "pk1", logs, concurrency=3, **WORKERS, **packed.env):
        job = _submit(redis.url, packed, target)
        _wait(_parked(client, job), "the job parked")
        status, _ = _while_parked(redis.url, target, job)
        assert status["restore"]["waiting"] == status["restore"]["objects"] == 1
        heads = len(packed.cold.heads())
        _wait(lambda: len(packed.cold.heads()) >= heads + 2, "polls")
        packed.cold.release()
        watched = run("job", "watch", job, cwd=target, broker_url=redis.url, timeout=60)
        status, _ = _status(redis.url, target, job)
    client.close()
    assert watched.returncode == 0, watched.stderr
    assert packed.fetched_all(target)
    assert status["counts"] == {"fetched": len(packed.files)}, status
    restores = packed.cold.restores
    assert len(restores) == 1 and "/packs/" in next(iter(restores)), restores
    assert set(restores.values()) == {1}


def test_the_job_store_uncounts_cold_rows_once_and_parks_a_job_for_one_claimer(
    redis: Service,
) -> None:
    """On the real Redis, the scripts alone: a cold row's count taken back once, with the
    checkpoint that drops it; a parked job holds no lease, is not taken for one whose
    coordinator died, and is handed out once when due; a cancelled one leaves the set."""
    from dmp_tasks import wire
    from dmp_tasks.jobs import JobStore

    jobs = JobStore(redis.url)
    job = f"t{uuid.uuid4().hex[:11]}"
    jobs.create(job, {"op": "download", "plan": "{}"}, coordinated=True)
    assert jobs.take_lease(job, "me", 30_000)
    cold = {"line": 1, "path": "a", "digest": "0" * 64}
    rows: list[Any] = [
        {"status": "failed", "path": "a", "line": 1, "bytes": 0, "cold": "ab/cd", "item": cold},
        {"status": "fetched", "path": "b", "line": 2, "bytes": 3},
    ]
    packed = wire.pack_rows(rows, [{"path": "a"}, {"path": "b"}])
    counts = {"s:failed": 1, "s:fetched": 1, "files": 2, "bytes": 3}
    assert jobs.record_batch(job, 0, counts, packed, []) == 1
    ids = [entry for entry, _ in jobs.stale_rows(job)]
    assert len(ids) == 1
    for _ in range(2):  # the second finds the rows gone: nothing taken back twice
        jobs.checkpoint(job, "me", {"run": {"restore": 1}}, ids, [0])
        info = jobs.info(job)
        assert info is not None and info.counts == {"fetched": 1} and info.files == 1
    jobs.keep_waiting(job, 1, "ab/cd", cold)
    assert list(jobs.waiting(job)) == [(1, "ab/cd", cold)]
    jobs.park(job, "me", time.time() + 0.5, {"ab/cd": 0}, {"rounds": 1}, {"restore_waiting": 1})
    info = jobs.info(job)
    assert info is not None and info.parked and info.restore_waiting == 1
    assert not jobs.client.exists(f"dmp:job:{job}:lease")
    assert job not in jobs.coordinated()  # parked, not a coordinator gone
    assert jobs.asked_objects(job) == {"ab/cd": 0}
    assert job not in jobs.due_parked(time.time(), 10_000)
    time.sleep(0.6)
    assert jobs.due_parked(time.time(), 10_000) == [job]
    assert jobs.due_parked(time.time(), 10_000) == []  # one claimer
    assert not jobs.claim_restart(job, 10_000)  # nor sent again as a coordinator gone
    info = jobs.info(job)
    assert info is not None and info.parked is None
    assert jobs.take_lease(job, "next", 30_000)
    jobs.park(job, "next", time.time() + 60, {"ab/cd": 0}, {}, {})
    assert jobs.cancel(job)
    assert jobs.client.zscore("dmp:parked", job) is None
    jobs.client.close()


def test_a_coordinator_killed_while_it_fetches_restored_files_is_taken_over(
    few: Cold, redis: Service, tmp_path: Path
) -> None:
    """The restores done, the worker of the coordinator that fetches the files (slowly:
    a download waits 0.1 s) is SIGKILLed halfway: another coordinator goes on from what
    Redis holds, and every file is fetched, none counted failed, no restore asked twice."""
    logs = tmp_path / "logs"
    logs.mkdir()
    target = tmp_path / "restore"
    plan = tmp_path / "slow.json"
    plan.write_text(json.dumps({"target": "op.download", "victim": "", "delay": 0.1}))
    env = {
        **WORKERS,
        **few.env,
        "DMP_TEST_FAULTS": str(plan),
        "DMP_LEASE_SECONDS": "2",
        "DMP_BATCH_ITEMS": "4",
    }
    client = redis_client.Redis.from_url(redis.url)
    with ExitStack() as stack:
        procs = {
            name: stack.enter_context(
                worker(redis.url, name, logs, concurrency=2, module=FAULTS, **env)
            )
            for name in ("ka", "kb")
        }
        job = _submit(redis.url, few, target)
        _wait(_parked(client, job), "the job parked")
        gets = sum(1 for _, kind, _ in list(few.cold.log) if kind == "get")
        few.cold.release()
        _wait(
            lambda: sum(1 for _, kind, _ in list(few.cold.log) if kind == "get") >= gets + 12,
            "files fetched",
        )
        owner: bytes | None = client.hget(f"dmp:job:{job}", "coordinator")  # type: ignore[assignment]
        assert owner is not None and client.exists(f"dmp:job:{job}:lease")
        doomed = procs.pop(owner.decode().partition("@")[0])
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait()
        stack.enter_context(worker(redis.url, "kc", logs, concurrency=2, module=FAULTS, **env))
        watched = run("job", "watch", job, cwd=target, broker_url=redis.url, timeout=90)
        status, _ = _status(redis.url, target, job)
    client.close()
    assert watched.returncode == 0, watched.stderr
    assert few.fetched_all(target)
    # A file that the killed worker wrote before its batch could record itself is found
    # in place by the batch sent again ("present"). (A batch of the dead coordinator's
    # that records itself once the next has begun may count a file twice, never failed.)
    assert not status["failed"] and set(status["counts"]) <= {"fetched", "present"}, status
    assert sum(status["counts"].values()) == status["files"] >= len(few.files), status
    assert set(few.cold.restores.values()) == {1}


def test_a_refused_restore_fails_its_file_alone_and_the_job(
    s3_server: Service, redis: Service, tmp_path: Path
) -> None:
    files = small_tree(14, seed=24)
    refused = digest_key(sha(files["d6/f0006.dat"]))
    logs = tmp_path / "logs"
    logs.mkdir()
    target = tmp_path / "restore"
    with (
        _cold(s3_server, tmp_path, 14, seed=24, hold=False, refuse=(refused,)) as site,
        worker(redis.url, "rf1", logs, concurrency=3, **WORKERS, **site.env),
    ):
        job = _submit(redis.url, site, target)
        watched = run("job", "watch", job, cwd=target, broker_url=redis.url, timeout=60)
        status, _ = _status(redis.url, target, job)
    assert watched.returncode == 1, watched.stderr
    said = [line for line in watched.stderr.decode().splitlines() if "restore refused" in line]
    assert len(said) == 1 and said[0].startswith("dmp: d6/f0006.dat: s3://"), said
    assert status["counts"] == {"fetched": len(files) - 1, "failed": 1}, status
    assert not (target / "d6/f0006.dat").exists()
    for name, data in files.items():
        if name != "d6/f0006.dat":
            assert (target / name).read_bytes() == data, name
