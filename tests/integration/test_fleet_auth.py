"""The fleet with DMP_AUTH=munge (dmp_tasks.auth): a real munged with a key of its own,
a real redis-server and real workers. Work without a credential that covers it is
refused, with nothing read or written; a worker of an ordinary user takes only that
user's jobs; a worker running as root does each job's files as the job's user; and
DMP_ALLOWED_ROOTS keeps jobs to the directories a site allows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dmp_tasks import credentials
from dmp_tasks.jobs import JobStore
from dmp_tasks.tasks import batch_parts
from dmp_tasks.wire import pack_items, speaks
from tests.integration.fleet import fleet_env, worker
from tests.munge import Munged, munge_daemon, munged_fixture  # noqa: F401 - the fixture "munged"
from tests.servers import REPO, Service

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="runs workers and commands as other users"),
]

ALICE, BOB = 60101, 60102  # uids with no passwd entry: a user is only a number to the kernel


def sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def as_user(uid: int) -> dict[str, Any]:
    """Popen's arguments that run a process as ``uid`` (its gid the same number)."""
    return {"user": uid, "group": uid, "extra_groups": []}


def dmp(
    *args: str,
    cwd: Path,
    broker: str,
    munge: Munged | None,
    uid: int | None = None,
    timeout: float = 120,
    **env: str,
) -> subprocess.CompletedProcess[bytes]:
    """`dmp ARGS` in a process of its own, as ``uid`` (or as root), signing its work
    with ``munge``'s munged unless None."""
    auth = {"DMP_AUTH": "munge", "DMP_MUNGE_SOCKET": munge.socket} if munge else {}
    return subprocess.run(
        [sys.executable, "-m", "dmp_cli", *args],
        cwd=cwd,
        env=fleet_env(broker, HOME=str(cwd), **auth, **env),
        capture_output=True,
        timeout=timeout,
        **(as_user(uid) if uid is not None else {}),
    )


def owned_dir(path: Path, uid: int, mode: int = 0o700) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, uid)
    os.chmod(path, mode)
    return path


def owned_file(path: Path, data: bytes, uid: int, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    os.chown(path, uid, uid)
    os.chmod(path, mode)
    return path


@pytest.fixture(scope="module", autouse=True)
def python_for_everyone() -> Iterator[None]:
    """Other users can run this Python: the directories on the way to it and to its
    library get the execute bit for others (pyenv's lives under /root, mode 0700 here)
    for the module's tests, and lose it again after."""
    changed: list[tuple[str, int]] = []
    seen: set[str] = set()
    for start in (os.path.realpath(sys.executable), os.path.realpath(sys.base_prefix), REPO):
        path = start
        while path not in seen and path != "/":
            seen.add(path)
            mode = os.stat(path).st_mode
            if os.path.isdir(path) and not mode & 0o001:
                changed.append((path, mode))
                os.chmod(path, (mode | 0o001) & 0o7777)
            path = os.path.dirname(path)
    try:
        yield
    finally:
        for path, mode in changed:
            os.chmod(path, mode & 0o7777)


@pytest.fixture(scope="module")
def shared_fleet(
    redis: Service, munged: Munged, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """A worker as root in munge mode: a shared fleet. Yields the broker URL and its log."""
    logdir = tmp_path_factory.mktemp("shared")
    os.chmod(logdir, 0o755)
    with worker(
        redis.url, "shared", logdir, concurrency=2, DMP_AUTH="munge", DMP_MUNGE_SOCKET=munged.socket
    ):
        yield redis.url, logdir / "shared.log"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A directory every test user can reach (not write)."""
    os.chmod(tmp_path, 0o755)
    for parent in tmp_path.parents:  # pytest's base directory is 0700
        if str(parent).startswith("/tmp/pytest-of-"):
            os.chmod(parent, 0o755)
    return tmp_path


def test_worker_says_its_mode_at_start(shared_fleet: tuple[str, Path]) -> None:
    log = shared_fleet[1].read_text()
    assert "authentication munge, a shared fleet" in log
    assert "jobs of root are refused" in log


def test_a_signed_job_runs_as_its_user_and_an_unsigned_one_is_refused(
    shared_fleet: tuple[str, Path], munged: Munged, home: Path
) -> None:
    broker, log = shared_fleet
    work = owned_dir(home / "alice", ALICE)
    owned_file(work / "a.txt", b"alice's\n", ALICE)
    done = dmp(
        "manifest",
        "--create",
        "a.txt",
        "--manifest",
        "m.sha256",
        cwd=work,
        broker=broker,
        munge=munged,
        uid=ALICE,
    )
    assert done.returncode == 0, done.stderr
    expected = sha256(b"alice's\n") + '  "a.txt"\n'
    assert (work / "m.sha256").read_bytes() == expected.encode()

    refused = dmp(
        "manifest",
        "--create",
        "a.txt",
        "--manifest",
        "n.sha256",
        cwd=work,
        broker=broker,
        munge=None,
        uid=ALICE,
    )
    assert refused.returncode != 0
    assert b"refused: no MUNGE credential" in refused.stderr
    assert "refused: no MUNGE credential" in log.read_text()


def test_a_job_of_root_is_refused_on_a_shared_fleet(
    shared_fleet: tuple[str, Path], munged: Munged, home: Path
) -> None:
    (home / "r.txt").write_bytes(b"root's\n")
    refused = dmp(
        "manifest",
        "--create",
        "r.txt",
        "--manifest",
        "m.sha256",
        cwd=home,
        broker=shared_fleet[0],
        munge=munged,
    )
    assert refused.returncode != 0
    assert b"a job of root" in refused.stderr
    assert not (home / "m.sha256").exists() or (home / "m.sha256").read_bytes() == b""


def sign_as(uid: int, digest: str, socket: str, ttl: int = 600) -> str:
    """A credential for ``digest`` made by a process of ``uid``."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.write(write_end, credentials.sign(digest, socket, ttl).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with open(read_end, "rb") as pipe:
        made = pipe.read().decode()
    os.waitpid(pid, 0)
    assert made.startswith("MUNGE:")
    return made


class Planted:
    """A hash batch of job ``job`` put straight into the broker, as anyone who can write
    to Redis could: its file, its arguments, and what became of it."""

    def __init__(self, broker: str, home: Path, name: str) -> None:
        self.broker, self.job = broker, f"planted{name}{os.getpid()}{time.monotonic_ns()}"
        self.work = owned_dir(home / name, ALICE, 0o755)
        self.file = owned_file(self.work / "secret.txt", b"not to be read\n", ALICE, 0o644)
        os.utime(self.file, (1_000_000_000, time.time()))  # atime well before mtime
        self.atime = self.file.stat().st_atime_ns
        self.jobs = JobStore(broker)
        self.jobs.create(self.job, {"op": "hash", "host": "planted", "command": "planted"})

    def args(self, path: Path | None = None) -> tuple[Any, ...]:
        text = pack_items([{"path": str(path or self.file)}])
        return (
            self.job,
            0,
            text,
            {"stores": None, "options": None, **speaks()},
            True,
            str(self.work),
        )

    def digest(self, path: Path | None = None) -> str:
        job, index, text, config, stream, cwd = self.args(path)
        return credentials.digest_of(*batch_parts("hash", job, index, text, config, stream, cwd))

    def send(self, credential: str | None, args: tuple[Any, ...] | None = None) -> str:
        """Send the batch with ``credential``; the reason the worker refused it."""
        from dmp_tasks.app import client_app

        kwargs = {"credential": credential} if credential else {}
        client_app(self.broker).send_task(
            "dmp.hash_batch", args=(*(args or self.args()), False), kwargs=kwargs, queue="dmp.hash"
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            refused = self.jobs.refused(self.job)
            if refused:
                assert self.file.stat().st_atime_ns == self.atime, "the file was read"
                assert self.jobs.client.exists(f"dmp:job:{self.job}:rows") == 0
                return refused
            time.sleep(0.1)
        raise AssertionError(f"batch of {self.job} not refused within 30 s")


def test_planted_batches_are_refused_with_nothing_read(
    shared_fleet: tuple[str, Path], munged: Munged, home: Path
) -> None:
    broker, log = shared_fleet
    # A batch with a good credential is done: the file is read (so the checks below can fail).
    good = Planted(broker, home, "good")
    from dmp_tasks.app import client_app

    client_app(broker).send_task(
        "dmp.hash_batch",
        args=(*good.args(), False),
        kwargs={"credential": sign_as(ALICE, good.digest(), munged.socket)},
        queue="dmp.hash",
    )
    deadline = time.monotonic() + 30
    while good.file.stat().st_atime_ns == good.atime and time.monotonic() < deadline:
        time.sleep(0.1)
    assert good.file.stat().st_atime_ns != good.atime
    assert good.jobs.refused(good.job) is None

    assert "no MUNGE credential" in Planted(broker, home, "none").send(None)

    forged = Planted(broker, home, "forged")
    real = sign_as(ALICE, forged.digest(), munged.socket)
    tampered = real[:20] + ("A" if real[20] != "A" else "B") + real[21:]
    assert "forged credential" in forged.send(tampered)
    assert "forged credential" in forged.send("MUNGE:not-a-credential:")

    expired = Planted(broker, home, "expired")
    old = sign_as(ALICE, expired.digest(), munged.socket, ttl=1)
    time.sleep(2.2)
    assert "expired credential" in expired.send(old)

    replayed = Planted(broker, home, "replayed")
    used = sign_as(ALICE, replayed.digest(), munged.socket)
    credentials.verify(used, replayed.digest(), munged.socket)  # decoded once, elsewhere
    assert "replayed credential" in replayed.send(used)

    other = Planted(broker, home, "otherkey")
    with munge_daemon() as another:
        foreign = sign_as(ALICE, other.digest(), another.socket)
    assert "forged credential" in other.send(foreign)

    # A credential that covers one batch, sent with another batch's files.
    swapped = Planted(broker, home, "swapped")
    other_file = owned_file(swapped.work / "other.txt", b"covered\n", ALICE, 0o644)
    cover = sign_as(ALICE, swapped.digest(other_file), munged.socket)
    assert "does not cover this work" in swapped.send(cover)

    said = log.read_text()
    for reason in ("no MUNGE credential", "forged", "expired", "replayed", "does not cover"):
        assert reason in said, reason


def job_of(submitted: subprocess.CompletedProcess[bytes]) -> str:
    assert submitted.returncode == 0, submitted.stderr
    return submitted.stdout.decode().split()[-1]


def watched(job: str, cwd: Path, broker: str, munge: Munged, uid: int) -> Any:
    """The job's record once it ends, as `dmp job status --json` gives it."""
    dmp("job", "watch", job, cwd=cwd, broker=broker, munge=munge, uid=uid, timeout=120)
    status = dmp("job", "status", "--json", job, cwd=cwd, broker=broker, munge=munge, uid=uid)
    import json

    return json.loads(status.stdout.splitlines()[0])  # the job's line; its failed files follow


def test_a_detached_create_runs_as_its_submitter_whose_manifest_it_is(
    shared_fleet: tuple[str, Path], munged: Munged, home: Path
) -> None:
    broker = shared_fleet[0]
    work = owned_dir(home / "alice", ALICE, 0o755)
    tree = owned_dir(work / "tree", ALICE, 0o755)
    for n in range(20):
        owned_file(tree / f"f{n}", b"%d\n" % n, ALICE, 0o644)

    def create(manifest: str) -> Any:
        job = job_of(
            dmp(
                "manifest", "--create", "--dir", "tree", "--recursive", "-m", manifest,
                "--detach", cwd=work, broker=broker, munge=munged, uid=ALICE,
            )
        )  # fmt: skip
        return watched(job, work, broker, munged, ALICE)

    record = create("m.sha256")
    manifest = work / "m.sha256"
    assert manifest.exists(), json.dumps(record)
    assert (manifest.stat().st_uid, manifest.stat().st_gid) == (ALICE, ALICE)
    assert len(manifest.read_bytes().splitlines()) == 20

    # A file of bob's in alice's tree that only bob may read: unreadable, for alice.
    owned_file(tree / "bobs", b"bob's\n", BOB, 0o600)
    record = create("n.sha256")
    assert record["counts"] == {"ok": 20, "unreadable": 1}, json.dumps(record)


def test_a_detached_job_without_a_credential_is_refused_and_runs_nothing(
    shared_fleet: tuple[str, Path], munged: Munged, home: Path
) -> None:
    broker = shared_fleet[0]
    work = owned_dir(home / "alice", ALICE, 0o755)
    owned_file(work / "a.txt", b"a\n", ALICE, 0o644)
    job = job_of(
        dmp(
            "manifest",
            "--create",
            "a.txt",
            "-m",
            "m.sha256",
            "--detach",
            cwd=work,
            broker=broker,
            munge=None,
            uid=ALICE,
        )
    )
    record = watched(job, work, broker, munged, ALICE)
    assert "refused: no MUNGE credential" in record["reason"], json.dumps(record)
    assert not (work / "m.sha256").exists() or (work / "m.sha256").read_bytes() == b""


def test_a_chords_callback_run_after_its_credential_expired_is_admitted_once_per_window(
    shared_fleet: tuple[str, Path], munged: Munged, home: Path
) -> None:
    """A callback is signed when its window is sent and runs when the window's last batch
    ends, maybe after its credential's life: it is admitted, late, for that window."""
    from dmp_tasks.app import client_app
    from dmp_tasks.tasks import window_parts

    broker = shared_fleet[0]
    planted = Planted(broker, home, "callback")
    windows = f"dmp:job:{planted.job}:windows"
    digest = credentials.digest_of(*window_parts(planted.job, 0, True))
    late = sign_as(ALICE, digest, munged.socket, ttl=1)
    time.sleep(2.2)
    client_app(broker).send_task(
        "dmp.window_done",
        args=([{"files": 3, "bytes": 7}], planted.job, 0, True),
        kwargs={"credential": late},
        queue="dmp.hash",
    )
    deadline = time.monotonic() + 30
    while not planted.jobs.client.hexists(windows, "0") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert planted.jobs.client.hexists(windows, "0")
    # Another window's callback under that credential does not cover it.
    client_app(broker).send_task(
        "dmp.window_done",
        args=([{"files": 5, "bytes": 9}], planted.job, 1, True),
        kwargs={"credential": late},
        queue="dmp.hash",
    )
    time.sleep(2)
    assert not planted.jobs.client.hexists(windows, "1")
    assert "does not cover this work" in shared_fleet[1].read_text()


def test_a_planted_upload_puts_nothing_in_the_vault(
    shared_fleet: tuple[str, Path], munged: Munged, home: Path
) -> None:
    """An upload batch planted without a credential, or with one that covers other files,
    leaves the vault as it was; the same batch under its own credential fills it."""
    from dmp_cli.options import Options, StoreSpec
    from dmp_tasks.app import client_app

    broker = shared_fleet[0]
    planted = Planted(broker, home, "upload")
    vault = owned_dir(home / "vault", ALICE, 0o755)
    data = planted.file.read_bytes()
    config = {
        "stores": StoreSpec(vault=f"file://{vault}").to_json(),
        "options": Options().to_json(),
        **speaks(),
    }

    def upload(path: Path, index: int) -> tuple[Any, ...]:
        text = pack_items([{"path": str(path), "digest": sha256(path.read_bytes())}])
        return (planted.job, index, text, config, True, str(planted.work))

    def digest(args: tuple[Any, ...]) -> str:
        return credentials.digest_of(*batch_parts("upload", *args))

    def send(args: tuple[Any, ...], credential: str | None) -> None:
        client_app(broker).send_task(
            "dmp.upload_batch",
            args=args,
            kwargs={"credential": credential} if credential else {},
            queue="dmp.transfer",
        )

    other = owned_file(planted.work / "other.txt", b"other\n", ALICE, 0o644)
    send(upload(planted.file, 0), None)
    send(upload(planted.file, 1), sign_as(ALICE, digest(upload(other, 1)), munged.socket))
    time.sleep(3)
    assert [p for p in vault.rglob("*") if p.is_file()] == []
    said = shared_fleet[1].read_text()
    assert f"job {planted.job} batch 0 refused" in said
    assert f"job {planted.job} batch 1 refused" in said

    send(upload(planted.file, 2), sign_as(ALICE, digest(upload(planted.file, 2)), munged.socket))
    deadline = time.monotonic() + 30
    while not [p for p in vault.rglob("*") if p.is_file()] and time.monotonic() < deadline:
        time.sleep(0.1)
    stored = [p for p in vault.rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in stored] == [data]
    assert "".join(stored[0].relative_to(vault).parts) == sha256(data)  # the vault's layout


def test_a_batch_waits_out_a_restart_of_munged(
    redis: Service, home: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """munged away for a moment (restarted) on the worker's node: the batch is admitted
    once it answers again, not refused."""
    logdir = tmp_path_factory.mktemp("restart")
    broker = f"{redis.url.rsplit('/', 1)[0]}/13"  # a fleet of its own: no other takes the batch
    with munge_daemon() as daemon:
        with worker(broker, "restart", logdir, DMP_AUTH="munge", DMP_MUNGE_SOCKET=daemon.socket):
            planted = Planted(broker, home, "restart")
            credential = sign_as(ALICE, planted.digest(), daemon.socket)
            daemon.stop()
            from dmp_tasks.app import client_app

            client_app(broker).send_task(
                "dmp.hash_batch",
                args=(*planted.args(), False),
                kwargs={"credential": credential},
                queue="dmp.hash",
            )
            time.sleep(1.5)  # the worker has met munged away
            daemon.start_again()
            deadline = time.monotonic() + 30
            while planted.file.stat().st_atime_ns == planted.atime:
                assert time.monotonic() < deadline, (logdir / "restart.log").read_text()
                time.sleep(0.1)
        assert planted.jobs.refused(planted.job) is None
        assert "munged not reachable" in (logdir / "restart.log").read_text()
