"""Detached jobs live on the fleet: a coordinator on a worker runs each, and it can die.

Real redis-server, real worker processes (with a delay injected into each file's work,
so that a job is still going when it is struck), SIGKILL of whole workers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import redis

from dmp_cli.layout import digest_key
from tests.integration.fleet import fleet_env, new_vault, run, worker
from tests.servers import (
    free_port,
    redis_server,
    redis_server_path,
    run_dmp,
    stop,
    wait_for_port,
)

pytestmark = pytest.mark.integration

FAULTS = ["-m", "tests.integration.faults"]


def _slow(tmp_path: Path, op: str, delay: float) -> dict[str, str]:
    """The environment of workers whose every ``op`` waits ``delay`` seconds a file, with
    short leases (a dead coordinator is replaced in seconds) and small batches."""
    plan = tmp_path / "slow.json"
    plan.write_text(json.dumps({"target": f"op.{op}", "victim": "", "delay": delay}))
    return {"DMP_TEST_FAULTS": str(plan), "DMP_LEASE_SECONDS": "2", "DMP_BATCH_ITEMS": "8"}


def _files(root: Path, count: int, nested: bool = False) -> dict[str, bytes]:
    contents = {}
    for i in range(count):
        name = f"d{i % 7}/sub{i % 3}/f{i:04}" if nested else f"f{i:04}"
        data = f"content {i}\n".encode() * (1 + i % 5)
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        contents[name] = data
    return contents


def _manifest(work: Path) -> None:
    made = run("manifest", "--create", "f*", "-m", "m.sha256", cwd=work, broker_url=None)
    assert made.returncode == 0, made.stderr


def _job(client: redis.Redis, job: str) -> dict[str, str]:
    raw = client.hgetall(f"dmp:job:{job}")
    return {k.decode(): v.decode() for k, v in raw.items()}


def _wait(what: Callable[[], bool], timeout: float = 90.0, why: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {why}")
        time.sleep(0.1)


class Fleet:
    """Workers by name, started and SIGKILLed at will; all stopped at the end."""

    def __init__(self, url: str, logs: Path, env: dict[str, str], stack: ExitStack) -> None:
        self.url, self.logs, self.env, self.stack = url, logs, env, stack
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.client = redis.Redis.from_url(url)
        stack.callback(self.client.close)

    def start(self, name: str) -> None:
        self.procs[name] = self.stack.enter_context(
            worker(self.url, name, self.logs, concurrency=2, module=FAULTS, **self.env)
        )

    def coordinator(self, job: str) -> str:
        """The name of the worker whose process coordinates ``job``."""
        owner = _job(self.client, job).get("coordinator", "")
        return owner.partition("@")[0]

    def kill_coordinator(self, job: str) -> str:
        name = self.coordinator(job)
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return name

    def log(self) -> str:
        return "".join(path.read_text(errors="replace") for path in self.logs.glob("*.log"))


@contextmanager
def fleet(tmp_path: Path, env: dict[str, str], *names: str) -> Iterator[Fleet]:
    logs = tmp_path / "logs"
    logs.mkdir()
    with ExitStack() as stack:
        server = stack.enter_context(redis_server())
        crew = Fleet(server.url, logs, env, stack)
        for name in names:
            crew.start(name)
        yield crew


def _submit(crew: Fleet, cwd: Path, *args: str) -> str:
    submitted = run("manifest", *args, "--detach", cwd=cwd, broker_url=crew.url, **crew.env)
    assert submitted.returncode == 0, submitted.stderr
    return submitted.stdout.decode().strip()


def _watch(crew: Fleet, cwd: Path, job: str) -> tuple[int, dict[str, object]]:
    watched = run("job", "watch", job, cwd=cwd, broker_url=crew.url, timeout=180)
    status = run("--json", "job", "status", job, cwd=cwd, broker_url=crew.url)
    return watched.returncode, json.loads(status.stdout.splitlines()[0])


def _files_done(crew: Fleet, job: str, at_least: int) -> Callable[[], bool]:
    return lambda: int(_job(crew.client, job).get("files", 0)) >= at_least


def _checkpointed(crew: Fleet, job: str, at_least: int) -> Callable[[], bool]:
    def check() -> bool:
        saved = json.loads(_job(crew.client, job).get("checkpoint") or "{}")
        return int(saved.get("items", 0)) >= at_least

    return check


def _coordinated(crew: Fleet, job: str, times: int) -> Callable[[], bool]:
    def check() -> bool:
        info = _job(crew.client, job)
        return int(info.get("coordinations", 0)) >= times and "coordinator" in info

    return check


def test_coordinator_killed_twice_archive_completes_counted_once(tmp_path: Path) -> None:
    """SIGKILL of the coordinator's whole worker, twice: each time another worker takes
    the job over from its checkpoint (not from the start); every file is counted once
    and the vault holds every content under its key."""
    work = tmp_path / "work"
    contents = _files(work, 480)
    _manifest(work)
    vault = new_vault("file", tmp_path)
    env = {**_slow(tmp_path, "upload", 0.05), **vault.env}
    with fleet(tmp_path, env, "a", "b") as crew:
        job = _submit(crew, work, "--archive", "-m", "m.sha256")
        _wait(_checkpointed(crew, job, 40), why="a checkpoint past 40 files")
        assert _job(crew.client, job)["state"] == "active"
        first = crew.kill_coordinator(job)
        crew.start("c")
        _wait(_coordinated(crew, job, 2), why="a second coordinator")
        _wait(_checkpointed(crew, job, 240), why="a checkpoint past 240 files")
        assert _job(crew.client, job)["state"] == "active"
        second = crew.kill_coordinator(job)
        assert second != first
        crew.start("d")
        code, status = _watch(crew, work, job)
        info = _job(crew.client, job)
        log = crew.log()
    assert code == 0, status
    assert status["state"] == "done"
    assert status["files"] == status["total"] == len(contents)
    counts = status["counts"]
    assert isinstance(counts, dict)
    assert set(counts) <= {"uploaded", "skipped"}
    assert sum(counts.values()) == len(contents)
    assert info["coordinations"] == "3"
    # Each new coordinator went on from a checkpoint past the start.
    resumed = [
        int(line.split("checkpoint: item ")[1].split(" ")[0])
        for line in sorted(log.splitlines())  # by time: each line begins with it
        if "going on from its checkpoint" in line
    ]
    assert len(resumed) == 2 and 0 < resumed[0] < resumed[1] < len(contents), resumed
    stored = vault.objects()
    for data in contents.values():
        assert stored[digest_key(hashlib.sha256(data).hexdigest())] == data


@pytest.mark.parametrize("meta", [[], ["--meta"]], ids=["manifest", "with-companion"])
def test_create_detach_is_byte_identical_to_embedded_also_after_a_kill(
    tmp_path: Path, meta: list[str]
) -> None:
    """The fleet writes the manifest on the shared filesystem (and with --meta its
    companion, which a coordinator taking over picks up from the checkpoint): linked into
    place when complete, byte for byte what an embedded --create writes, though its first
    coordinator was killed halfway."""
    work = tmp_path / "work"
    _files(work, 300, nested=True)
    (work / "d1" / 'odd "name"\nwith a newline').write_bytes(b"odd\n")
    args = ["--create", "--dir", "d0", "--dir", "d1", "-r", "d2/sub*/f00*", *meta]
    embedded = run("manifest", *args, "-m", "embedded.sha256", cwd=work, broker_url=None)
    assert embedded.returncode == 0, embedded.stderr
    env = _slow(tmp_path, "hash", 0.03)
    with fleet(tmp_path, env, "a", "b") as crew:
        job = _submit(crew, work, *args, "-m", "fleet.sha256")
        _wait(_checkpointed(crew, job, 40), why="a checkpoint past 40 files")
        assert not (work / "fleet.sha256").exists()  # not before it is complete
        crew.kill_coordinator(job)
        crew.start("c")
        code, status = _watch(crew, work, job)
        again = _submit(crew, work, *args, "-m", "again.sha256")
        assert _watch(crew, work, again)[0] == 0
    assert code == 0, status
    for suffix in ("", ".meta") if meta else ("",):
        expected = (work / f"embedded.sha256{suffix}").read_bytes()
        assert (work / f"fleet.sha256{suffix}").read_bytes() == expected, suffix
        assert (work / f"again.sha256{suffix}").read_bytes() == expected, suffix
    assert not [p for p in os.listdir(work) if p.endswith(".dmp-tmp")]


def test_create_detach_never_writes_over_a_file(tmp_path: Path) -> None:
    work = tmp_path / "work"
    _files(work, 5)
    (work / "taken.sha256").write_bytes(b"mine\n")
    with fleet(tmp_path, {}, "a") as crew:
        refused = run(
            "manifest", "--create", "f*", "-m", "taken.sha256", "--detach",
            cwd=work, broker_url=crew.url,
        )  # fmt: skip
        unreadable = _submit(
            crew, work, "--create", "f0000", "nothing-here", "-m", "partial.sha256"
        )
        code, status = _watch(crew, work, unreadable)
    assert refused.returncode == 1
    assert b"taken.sha256: manifest already exists" in refused.stderr
    assert (work / "taken.sha256").read_bytes() == b"mine\n"
    assert code == 1
    assert status["reason"] == "1 input could not be read; no manifest written"
    assert not (work / "partial.sha256").exists()
    assert not [p for p in os.listdir(work) if p.endswith(".dmp-tmp")]


def test_a_job_longer_than_the_redelivery_timeout_is_coordinated_once(tmp_path: Path) -> None:
    """The broker hands the coordinator's task out again after DMP_REDELIVERY_TIMEOUT;
    the copy finds the lease held and ends at once."""
    work = tmp_path / "work"
    contents = _files(work, 160)
    _manifest(work)
    env = {**_slow(tmp_path, "check", 0.05), "DMP_REDELIVERY_TIMEOUT": "2"}
    with fleet(tmp_path, env, "a", "b") as crew:
        job = _submit(crew, work, "--check", "-m", "m.sha256")
        code, status = _watch(crew, work, job)
        info = _job(crew.client, job)
        log = crew.log()
    assert code == 0, status
    assert status["counts"] == {"ok": len(contents)}
    assert info["coordinations"] == "1"
    assert f"job {job} is coordinated by another worker" in log


def test_submitting_reads_only_the_first_entry(tmp_path: Path) -> None:
    """With no worker alive, a detached check of 100,000 lines leaves its record and one
    coordinator's task in Redis, and no batch: the coordinator reads the manifest."""
    work = tmp_path / "work"
    work.mkdir()
    line = b"0" * 64 + b'  "missing"\n'
    (work / "big.sha256").write_bytes(line * 100_000)
    with redis_server() as server:
        client = redis.Redis.from_url(server.url)
        submitted = run(
            "manifest", "--check", "-m", "big.sha256", "--detach", cwd=work, broker_url=server.url
        )
        assert submitted.returncode == 0, submitted.stderr
        job = submitted.stdout.decode().strip()
        queued = {key.decode(): client.llen(key) for key in client.keys("dmp.*")}
        held = sum(client.memory_usage(key) or 0 for key in client.keys("*"))
        listed = run("job", "list", cwd=work, broker_url=server.url)
        client.close()
    assert queued == {"dmp.coord": 1}
    assert held < 20_000  # the 100,000 lines would take megabytes
    assert f"{job}  " in listed.stdout.decode() and " queued " in listed.stdout.decode()


class _AofRedis:
    """A redis-server with AOF (every write on disk at once) on a fixed port, that a test
    can SIGKILL and start again, with its data or without."""

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

    def crash_and_restart(self, keep_data: bool, down_s: float = 0.0) -> None:
        """SIGKILL it; start it again ``down_s`` seconds later, from its AOF or empty."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        if not keep_data:
            shutil.rmtree(self.workdir)
        time.sleep(down_s)
        self.proc = self._start()


@contextmanager
def _aof_fleet(
    tmp_path: Path, env: dict[str, str], *names: str
) -> Iterator[tuple[Fleet, _AofRedis]]:
    logs = tmp_path / "logs"
    logs.mkdir()
    with ExitStack() as stack:
        server = _AofRedis(tmp_path / "redis", stack)
        crew = Fleet(server.url, logs, env, stack)
        for name in names:
            crew.start(name)
        yield crew, server


def test_redis_restarted_with_aof_mid_job_the_job_goes_on(tmp_path: Path) -> None:
    work = tmp_path / "work"
    contents = _files(work, 240)
    _manifest(work)
    with _aof_fleet(tmp_path, _slow(tmp_path, "check", 0.03), "a", "b") as (crew, server):
        job = _submit(crew, work, "--check", "-m", "m.sha256")
        _wait(_files_done(crew, job, 60), why="60 files checked")
        server.crash_and_restart(keep_data=True, down_s=2)
        code, status = _watch(crew, work, job)
    assert code == 0, status
    assert status["counts"] == {"ok": len(contents)}
    assert status["files"] == status["total"] == len(contents)


def test_watch_waits_out_a_broker_that_stopped_answering(tmp_path: Path) -> None:
    """Redis away for longer than redis-py's own retries: `dmp job watch` says so once,
    waits, says when it is back, and follows the job to its end."""
    work = tmp_path / "work"
    contents = _files(work, 40)
    _manifest(work)
    with _aof_fleet(tmp_path, {}) as (crew, server):  # no worker yet: the job waits
        job = _submit(crew, work, "--check", "-m", "m.sha256")
        watcher = _watcher(crew, work, job)
        server.crash_and_restart(keep_data=True, down_s=8)
        crew.start("a")
        _, err = watcher.communicate(timeout=120)
        status = run("--json", "job", "status", job, cwd=work, broker_url=crew.url)
    said = err.decode()
    assert watcher.returncode == 0, said
    assert f"cannot reach the broker at {crew.url} (reading the job)" in said, said
    assert "trying again for 300 s" in said and "the broker answers again" in said, said
    assert said.count("cannot reach the broker") == 1, said  # said once, not every poll
    assert json.loads(status.stdout.splitlines()[0])["counts"] == {"ok": len(contents)}


def test_watch_gives_up_on_a_broker_gone_for_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker that does not come back: watch says so, waits its while, then ends with
    the broker's error and exit 1 (never a hang)."""
    from dmp_cli.cli import job as job_command
    from dmp_tasks.jobs import JobStore

    monkeypatch.setattr(job_command, "WATCH_OUTAGE_S", 2.0)
    monkeypatch.setattr(job_command, "STALLED_S", 3600.0)  # no question to the workers
    with redis_server() as server:
        JobStore(server.url).create("watched", {"op": "check", "command": "dmp"}, True)
        gone = threading.Timer(1.5, stop, [server.proc])  # while it watches
        gone.start()
        started = time.monotonic()
        # In this process, so that the shorter wait applies.
        watched = run_dmp("job", "watch", "watched", cwd=tmp_path, env=fleet_env(server.url))
        gone.join()
    lines = watched.stderr.decode().splitlines()
    assert watched.returncode == 1, lines
    assert f"cannot reach the broker at {server.url} (reading the job)" in lines[0], lines
    assert lines[0].endswith("; trying again for 2 s") and ".;" not in lines[0], lines
    assert lines[-1].startswith(f"dmp: cannot reach the broker at {server.url}"), lines
    assert time.monotonic() - started >= 1.5 + 2.0


def _watching(url: str) -> bool:
    """Whether `dmp job watch` (its connection named dmp-watch) has read a job."""
    clients = redis.Redis.from_url(url).client_list()
    named = [client for client in clients if client.get("name") == "dmp-watch"]
    return any(client.get("cmd") in ("hgetall", "hget") for client in named)


def _watcher(crew: Fleet, work: Path, job: str) -> subprocess.Popen[bytes]:
    """`dmp job watch JOB` in a process of its own (stopped with the fleet), once it has
    found the job: it asks Redis again and again, and on a busy machine starting it takes
    seconds, so a test that takes Redis away must wait for that first."""
    watcher = subprocess.Popen(
        [*_dmp(), "job", "watch", job], cwd=work,
        env=fleet_env(f"{crew.url}?client_name=dmp-watch"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    crew.stack.callback(stop, watcher)
    _wait(lambda: _watching(crew.url), why="the watcher follows the job")
    return watcher


def test_redis_that_lost_its_data_is_said_and_a_rerun_finishes(tmp_path: Path) -> None:
    work = tmp_path / "work"
    contents = _files(work, 240)
    _manifest(work)
    vault = new_vault("file", tmp_path)
    env = {**_slow(tmp_path, "upload", 0.05), **vault.env}
    with _aof_fleet(tmp_path, env, "a") as (crew, server):
        job = _submit(crew, work, "--archive", "-m", "m.sha256")
        _wait(_files_done(crew, job, 40), why="40 files archived")
        watcher = _watcher(crew, work, job)
        server.crash_and_restart(keep_data=False)  # its data gone with it
        _, err = watcher.communicate(timeout=60)
        _wait(lambda: "is gone from Redis" in crew.log(), why="a worker says the job is gone")
        rerun = _submit(crew, work, "--archive", "-m", "m.sha256")
        code, status = _watch(crew, work, rerun)
    assert watcher.returncode == 1
    lines = err.decode().splitlines()
    assert lines[-1] == (
        f"dmp: job {job} is gone from the broker at {crew.url} (Redis restarted without its "
        "data?); run the command again to finish the work"
    ), err
    assert code == 0, status
    assert sum(status["counts"].values()) == len(contents)  # type: ignore[attr-defined]
    stored = vault.objects()
    for data in contents.values():
        assert stored[digest_key(hashlib.sha256(data).hexdigest())] == data


def _dmp() -> list[str]:
    return [sys.executable, "-m", "dmp_cli"]


def test_walk_listed_by_workers_big_files_spread_over_them(tmp_path: Path) -> None:
    """A --dir walk on the fleet: the workers list the directories (with sizes), so the
    job knows its bytes from the start, and the huge files go one to a batch to dmp.big,
    where each worker takes one at a time: both workers hash one. The manifest is the
    embedded one."""
    work = tmp_path / "work"
    contents = _files(work / "tree", 20, nested=True)
    big = 3 << 20
    for i in range(3):
        (work / "tree" / f"h{i}.big").write_bytes(bytes([i]) * big)
    embedded = run(
        "manifest", "--create", "--dir", "tree", "-r", "-m", "embedded.sha256",
        cwd=work, broker_url=None,
    )  # fmt: skip
    assert embedded.returncode == 0, embedded.stderr
    plan = tmp_path / "slow.json"
    plan.write_text(json.dumps({"target": "op.hash", "victim": ".big", "delay": 1.0}))
    env = {"DMP_TEST_FAULTS": str(plan), "DMP_BIG_FILE_BYTES": str(2 << 20)}
    with fleet(tmp_path, env, "a", "b") as crew:
        job = _submit(crew, work, "--create", "--dir", "tree", "-r", "-m", "fleet.sha256")
        code, status = _watch(crew, work, job)
        logs = {name: (crew.logs / f"{name}.log").read_text() for name in ("a", "b")}
    assert code == 0, status
    assert (work / "fleet.sha256").read_bytes() == (work / "embedded.sha256").read_bytes()
    assert status["bytes_total"] == sum(map(len, contents.values())) + 3 * big
    listed = [
        line for log in logs.values() for line in log.splitlines()
        if "Task dmp.list_dirs[" in line and " succeeded " in line
    ]  # fmt: skip
    assert listed  # by the workers, not by the coordinator
    alone = f"{{'s:ok': 1, 'files': 1, 'bytes': {big}}}"
    assert all(alone in log for log in logs.values()), logs


def test_cancelled_detached_create_leaves_nothing_behind(tmp_path: Path) -> None:
    """`dmp job cancel` of a --create --detach: its coordinator stops at its next
    checkpoint, and neither the manifest nor its temporary file is left."""
    work = tmp_path / "work"
    _files(work, 200)
    with fleet(tmp_path, _slow(tmp_path, "hash", 0.05), "a") as crew:
        job = _submit(crew, work, "--create", "f*", "-m", "out.sha256")
        _wait(_checkpointed(crew, job, 8), why="a checkpoint")
        assert any(name.endswith(".dmp-tmp") for name in os.listdir(work))
        cancelled = run("job", "cancel", job, cwd=work, broker_url=crew.url)
        assert cancelled.returncode == 0, cancelled.stderr
        _wait(lambda: not crew.client.sismember("dmp:coordinated", job), why="the end")
        watched = run("job", "watch", job, cwd=work, broker_url=crew.url)
        log = crew.log()
    assert watched.returncode == 1
    assert f"job {job}: cancelled" in log
    assert not (work / "out.sha256").exists()
    assert not [name for name in os.listdir(work) if name.endswith(".dmp-tmp")]


def test_a_job_whose_command_vanished_ends_as_abandoned(tmp_path: Path) -> None:
    """An attached command SIGKILLed mid-job cannot cancel its job: its lease expires, the
    job ends as abandoned (never `submitting` for ever), `dmp job watch` says so and exits
    1, and the workers skip its batches not yet run."""
    work = tmp_path / "work"
    contents = _files(work, 400)
    _manifest(work)
    env = _slow(tmp_path, "check", 0.05)
    with fleet(tmp_path, env, "a") as crew:
        attached = subprocess.Popen(
            [sys.executable, "-m", "dmp_cli", "manifest", "--check", "-m", "m.sha256"],
            cwd=work,
            env=fleet_env(crew.url) | env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            _wait(lambda: bool(crew.client.smembers("dmp:attached")), why="the attached job")
            job = crew.client.smembers("dmp:attached").pop().decode()
            _wait(_files_done(crew, job, 16), why="some files checked")
        finally:
            os.killpg(attached.pid, signal.SIGKILL)
            attached.wait()
        watched = run("job", "watch", job, cwd=work, broker_url=crew.url, timeout=60)
        listed = run("job", "list", cwd=work, broker_url=crew.url)
        _wait(lambda: _job(crew.client, job).get("state") == "abandoned", why="the watchdog")
        status = json.loads(
            run("--json", "job", "status", job, cwd=work, broker_url=crew.url).stdout.splitlines()[
                0
            ]
        )
    assert watched.returncode == 1
    assert watched.stderr.decode().splitlines()[0] == (
        "dmp: its command stopped before the job was complete (killed, or it lost the "
        "broker); run the command again to finish the work"
    )
    assert f"{job}  " in listed.stdout.decode() and " abandoned " in listed.stdout.decode()
    assert status["state"] == "abandoned" and status["failed"]
    assert status["counts"].get("ok", 0) < len(contents)
