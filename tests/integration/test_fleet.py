"""The fleet end to end: real redis-server, real `dmp worker` subprocesses, the real CLI.

Distributed runs must print exactly what embedded runs print, byte for byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.fleet import fleet_env, run, worker
from tests.integration.manifest_helpers import untimed
from tests.servers import Service, free_port, redis_server, stop

pytestmark = pytest.mark.integration

NAMES = [
    "plain.txt",
    "with space.dat",
    'quote"and\\back',
    "new\nline",
    "ünï.txt",
    os.fsdecode(b"latin1-\xff\xfe.bin"),
    "empty",
]


@pytest.fixture(scope="module")
def fleet(redis: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Two workers on the session's Redis: one `dmp worker`, one `celery -A dmp_tasks`."""
    logdir = tmp_path_factory.mktemp("fleet-logs")
    url = redis.url
    with worker(url, "w1", logdir), worker(url, "w2", logdir, celery=True):
        yield url


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A tree with awkward names (a newline, non-UTF-8 bytes) and many small files."""
    data = tmp_path / "data"
    for i, name in enumerate(NAMES):
        (data / "odd").mkdir(parents=True, exist_ok=True)
        (data / "odd" / name).write_bytes(b"x" * i)
    for d in range(3):
        sub = data / f"d{d}"
        sub.mkdir()
        for f in range(40):
            (sub / f"f{f:03}").write_bytes(f"{d}-{f}\n".encode() * (f + 1))
    return tmp_path


def same(
    distributed: subprocess.CompletedProcess[bytes], embedded: subprocess.CompletedProcess[bytes]
) -> None:
    assert untimed(distributed.stderr) == untimed(embedded.stderr)
    assert untimed(distributed.stdout) == untimed(embedded.stdout)
    assert distributed.returncode == embedded.returncode


CREATE = ["manifest", "--create", "--dir", "data", "--recursive"]


@pytest.mark.parametrize("batch", ["1", "7", "512"], ids=["batch1", "batch7", "default"])
def test_create_equals_embedded(fleet: str, tree: Path, batch: str) -> None:
    """Many small batches (more than the window of batches in flight) come back in order."""
    distributed = run(
        *CREATE, "-m", "fleet.sha256", cwd=tree, broker_url=fleet, DMP_BATCH_ITEMS=batch
    )
    embedded = run(*CREATE, "-m", "local.sha256", cwd=tree, broker_url=None)
    same(distributed, embedded)
    assert distributed.returncode == 0, distributed.stderr
    manifest = (tree / "fleet.sha256").read_bytes()
    assert manifest == (tree / "local.sha256").read_bytes()
    assert manifest.count(b"\n") == len(NAMES) + 120
    assert b'"data/odd/latin1-\\xff\\xfe.bin"' in manifest  # non-UTF-8 name survived JSON


@pytest.mark.parametrize(
    "extra", [[], ["--json"], ["--format", "sha256sum"]], ids=["stdout", "json", "sha256sum"]
)
def test_create_to_stdout_equals_embedded(fleet: str, tree: Path, extra: list[str]) -> None:
    fmt, json_flag = ([], extra) if extra == ["--json"] else (extra, [])
    args = [*json_flag, *CREATE, *fmt, "data/odd/*", "no-such-file"]
    same(run(*args, cwd=tree, broker_url=fleet), run(*args, cwd=tree, broker_url=None))


def _spoil(tree: Path) -> Path:
    manifest = tree / "m.sha256"
    made = run(*CREATE, "-m", str(manifest), cwd=tree, broker_url=None)
    assert made.returncode == 0, made.stderr
    (tree / "data" / "d1" / "f005").write_bytes(b"changed")
    (tree / "data" / "d2" / "f010").unlink()
    with open(manifest, "ab") as stream:
        stream.write(b"not a manifest line\n")
    return manifest


@pytest.mark.parametrize(
    "flags",
    [[], ["--quiet"], ["--status"], ["--ignore-missing", "-w"], ["--strict"]],
    ids=["plain", "quiet", "status", "ignore-missing", "strict"],
)
def test_check_equals_embedded(fleet: str, tree: Path, flags: list[str]) -> None:
    manifest = _spoil(tree)
    args = ["manifest", "--check", "-m", str(manifest), *flags]
    distributed = run(*args, cwd=tree, broker_url=fleet, DMP_BATCH_ITEMS="5")
    embedded = run(*args, cwd=tree, broker_url=None)
    same(distributed, embedded)
    assert distributed.returncode == 1


def test_check_all_good_exits_zero(fleet: str, tree: Path) -> None:
    made = run(*CREATE, "-m", "m.sha256", cwd=tree, broker_url=None)
    assert made.returncode == 0
    distributed = run("manifest", "--check", "-m", "m.sha256", cwd=tree, broker_url=fleet)
    same(distributed, run("manifest", "--check", "-m", "m.sha256", cwd=tree, broker_url=None))
    assert distributed.returncode == 0
    assert distributed.stdout.count(b": OK\n") == len(NAMES) + 120


def _job(fleet: str, tree: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return run(*args, cwd=tree, broker_url=fleet)


def test_detach_then_watch(fleet: str, tree: Path) -> None:
    manifest = _spoil(tree)
    submitted = _job(fleet, tree, "manifest", "--check", "--detach", "-m", str(manifest))
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.decode().strip()
    assert len(job) == 12 and job in submitted.stderr.decode()

    watched = _job(fleet, tree, "job", "watch", job)
    assert watched.returncode == 1  # a mismatch and a missing file: the job failed
    assert b"dmp: data/d1/f005: computed checksum did NOT match\n" in watched.stderr
    assert b"dmp: data/d2/f010: No such file or directory\n" in watched.stderr

    status = _job(fleet, tree, "--json", "job", "status", job)
    assert status.returncode == 1  # the job failed
    record = json.loads(status.stdout.splitlines()[0])
    assert record["state"] == "failed" and record["failed"] is True
    assert record["files"] == record["total"] == len(NAMES) + 121
    assert record["counts"] == {
        "ok": len(NAMES) + 118,
        "failed": 1,
        "missing": 1,
        "misformatted": 1,
    }
    listed = _job(fleet, tree, "job", "list").stdout.decode().splitlines()
    assert listed[0].split() == ["JOB", "CREATED", "STATE", "FILES", "COMMAND"]
    assert listed[1].startswith(f"{job}  ") and listed[1].split()[2] == "failed"

    text = _job(fleet, tree, "job", "status", job)
    assert text.returncode == 1
    fields = dict(line.split(":", 1) for line in text.stdout.decode().splitlines())
    assert fields["state"].strip() == "failed"
    files = len(NAMES) + 121
    assert re.fullmatch(rf" +{files}/{files} \([\d,]+ files/s\)", fields["files"])
    assert re.fullmatch(r" +[\d.]+ (B|KiB) \([\d.]+ (B|KiB|MiB)/s\)", fields["bytes"])
    assert re.fullmatch(r"[\d.]+ s|\d+m \d\ds|\d+h \d\dm \d\ds", fields["elapsed"].strip())


def test_detach_good_job_watch_exits_zero(fleet: str, tree: Path) -> None:
    assert run(*CREATE, "-m", "m.sha256", cwd=tree, broker_url=None).returncode == 0
    submitted = _job(fleet, tree, "manifest", "--check", "--detach", "-m", "m.sha256")
    assert b"no worker" not in submitted.stderr  # the fleet's workers take from dmp.hash
    job = submitted.stdout.decode().strip()
    watched = _job(fleet, tree, "job", "watch", job)
    assert watched.returncode == 0, watched.stderr
    assert (
        f"job {job} done: {len(NAMES) + 120} files (ok {len(NAMES) + 120})".encode()
        in watched.stderr
    )


def _watch(fleet: str, tree: Path, *args: str) -> tuple[str, subprocess.CompletedProcess[bytes]]:
    """Submit ``dmp manifest --check --detach ARGS``, then watch it: (job id, the watch)."""
    submitted = _job(fleet, tree, "manifest", "--check", "--detach", *args)
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.decode().strip()
    return job, _job(fleet, tree, "job", "watch", job)


def test_detach_strict_and_ignore_missing_decide_as_attached(fleet: str, tree: Path) -> None:
    assert run(*CREATE, "-m", "m.sha256", cwd=tree, broker_url=None).returncode == 0
    with open(tree / "m.sha256", "ab") as stream:
        stream.write(b"not a manifest line\n")
    _, lenient = _watch(fleet, tree, "-m", "m.sha256")
    assert lenient.returncode == 0, lenient.stderr
    job, strict = _watch(fleet, tree, "-m", "m.sha256", "--strict")
    assert strict.returncode == 1
    assert b"dmp: 1 line is improperly formatted (--strict)\n" in strict.stderr
    record = json.loads(_job(fleet, tree, "--json", "job", "status", job).stdout.splitlines()[0])
    assert record["failed"] and record["reason"] == "1 line is improperly formatted (--strict)"

    (tree / "data" / "d0" / "f000").unlink()
    _, missing = _watch(fleet, tree, "-m", "m.sha256")
    assert missing.returncode == 1
    _, ignored = _watch(fleet, tree, "-m", "m.sha256", "--ignore-missing")
    assert ignored.returncode == 0, ignored.stderr

    gone = tree / "gone.sha256"
    gone.write_bytes(b'%s  "no/such/file"\n' % (b"0" * 64))
    _, none_verified = _watch(fleet, tree, "-m", str(gone), "--ignore-missing")
    assert none_verified.returncode == 1
    assert b"dmp: no file was verified (--ignore-missing)\n" in none_verified.stderr


def test_detach_check_of_a_manifest_without_checksums(fleet: str, tree: Path) -> None:
    (tree / "empty.sha256").write_bytes(b"")
    empty = _job(fleet, tree, "manifest", "--check", "--detach", "-m", "empty.sha256")
    assert (empty.returncode, empty.stdout) == (1, b"")
    assert empty.stderr == b"dmp: empty.sha256: no properly formatted checksum lines found\n"
    (tree / "junk.sha256").write_bytes(b"junk\nmore junk\n")
    _, junk = _watch(fleet, tree, "-m", "junk.sha256")
    assert junk.returncode == 1
    assert b"dmp: no properly formatted checksum lines found\n" in junk.stderr


def test_detach_needs_a_broker(tree: Path) -> None:
    result = run("manifest", "--check", "--detach", "-m", "x", cwd=tree, broker_url=None)
    assert result.returncode == 2
    assert (
        result.stderr == b"dmp: --detach needs DMP_BROKER_URL (a fleet of workers to run the job)\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--create", "a"),
            b"dmp: --detach needs DMP_BROKER_URL (a fleet of workers to run the job)\n",
        ),
        (
            ("--check", "-m", "-"),
            b"dmp: --detach needs a manifest file (the fleet cannot read stdin)\n",
        ),
    ],
)
def test_detach_usage(tree: Path, args: tuple[str, ...], message: bytes) -> None:
    broker = None if args[0] == "--create" else "redis://127.0.0.1:1/0"
    result = run("manifest", *args, "--detach", cwd=tree, broker_url=broker)
    assert result.stderr == message
    assert result.returncode == 2


def test_create_detach_needs_a_manifest_file(fleet: str, tree: Path) -> None:
    for where in ([], ["-m", "-"]):
        result = run("manifest", "--create", "a", *where, "--detach", cwd=tree, broker_url=fleet)
        assert result.returncode == 2
        assert (
            result.stderr == b"dmp: --create --detach needs --manifest FILE (the fleet writes it)\n"
        )


@pytest.mark.parametrize("command", ["status", "watch", "cancel"])
def test_unknown_job(fleet: str, tree: Path, command: str) -> None:
    """No such job: exit 2, apart from a job that failed (1)."""
    result = _job(fleet, tree, "job", command, "0123456789ab")
    assert result.returncode == 2
    assert result.stderr == b"dmp: no job 0123456789ab (finished jobs are kept for 7 days)\n"


@contextmanager
def _waiting_check(url: str, tree: Path) -> Iterator[tuple[subprocess.Popen[bytes], bytes]]:
    """`dmp manifest --check` of the tree, attached to ``url``; yields the process and the
    first line it says (the tests give it a broker no worker serves); always stopped."""
    assert run(*CREATE, "-m", "m.sha256", cwd=tree, broker_url=None).returncode == 0
    args = [sys.executable, "-m", "dmp_cli", "manifest", "--check", "-m", "m.sha256"]
    proc = subprocess.Popen(
        args,
        cwd=tree,
        env=fleet_env(url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        yield proc, proc.stderr.readline()
    finally:
        stop(proc)


def test_no_worker_job_waits_then_runs(redis: Service, tree: Path, tmp_path: Path) -> None:
    """Submitting with no worker alive is allowed, says so, and the job runs once one starts."""
    url = redis.url.rsplit("/", 1)[0] + "/5"  # a database no worker listens on
    with _waiting_check(url, tree) as (proc, line):
        assert line.startswith(b"dmp: no worker answers at redis://127.0.0.1:")
        assert b"waits in Redis until a `dmp worker` starts" in line
        time.sleep(1)
        assert proc.poll() is None  # still waiting, not failed
        with worker(url, "late", tmp_path):
            out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.count(b": OK\n") == len(NAMES) + 120


@pytest.mark.parametrize(
    ("queues", "missing"),
    [("dmp.transfer", "dmp.coord"), ("dmp.transfer,dmp.coord", "dmp.hash")],
)
def test_no_worker_for_the_jobs_queue_says_so(
    redis: Service, tree: Path, tmp_path: Path, queues: str, missing: str
) -> None:
    """A detached check needs a coordinator (dmp.coord) and workers that hash: without
    either, the submission says what the job waits for."""
    url = redis.url.rsplit("/", 1)[0] + "/8"
    assert run(*CREATE, "-m", "m.sha256", cwd=tree, broker_url=None).returncode == 0
    with worker(url, "partial", tmp_path, queues=queues):
        submitted = run(
            "manifest", "--check", "--detach", "-m", "m.sha256", cwd=tree, broker_url=url
        )
        job = submitted.stdout.decode().strip()
        assert run("job", "cancel", job, cwd=tree, broker_url=url).returncode == 0
    assert submitted.returncode == 0, submitted.stderr
    assert (
        f"dmp: no worker at {url} takes from {missing} (the live ones take from "
        f"{', '.join(sorted(queues.split(',')))}); job {job} waits in Redis until a "
        f"`dmp worker` for {missing} starts\n" in submitted.stderr.decode()
    )


def test_watch_of_a_job_no_worker_takes_says_so(redis: Service, tree: Path) -> None:
    url = redis.url.rsplit("/", 1)[0] + "/10"  # no worker: the job stays queued
    assert run(*CREATE, "-m", "m.sha256", cwd=tree, broker_url=None).returncode == 0
    job = (
        run("-q", "manifest", "--check", "--detach", "-m", "m.sha256", cwd=tree, broker_url=url)
        .stdout.decode()
        .strip()
    )
    args = [sys.executable, "-m", "dmp_cli", "job", "watch", job]
    proc = subprocess.Popen(
        args,
        cwd=tree,
        env=fleet_env(url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        assert (
            proc.stderr.readline()
            == (
                f"dmp: no worker answers at {url}; job {job} "
                "waits in Redis until a `dmp worker` starts\n"
            ).encode()
        )
        assert run("job", "cancel", job, cwd=tree, broker_url=url).returncode == 0
        _, err = proc.communicate(timeout=30)
    finally:
        stop(proc)
    assert proc.returncode == 1
    assert f"job {job} cancelled".encode() in err


def test_cancel(redis: Service, tree: Path) -> None:
    url = redis.url.rsplit("/", 1)[0] + "/6"  # no worker: the job stays queued
    assert run(*CREATE, "-m", "m.sha256", cwd=tree, broker_url=None).returncode == 0
    job = (
        run("-q", "manifest", "--check", "--detach", "-m", "m.sha256", cwd=tree, broker_url=url)
        .stdout.decode()
        .strip()
    )
    status = run("--json", "job", "status", job, cwd=tree, broker_url=url)
    assert json.loads(status.stdout)["state"] == "queued"
    cancelled = run("job", "cancel", job, cwd=tree, broker_url=url)
    assert cancelled.returncode == 0
    assert cancelled.stderr == f"dmp: job {job} cancelled\n".encode()
    watched = run("job", "watch", job, cwd=tree, broker_url=url)
    assert watched.returncode == 1
    again = run("job", "cancel", job, cwd=tree, broker_url=url)
    assert again.returncode == 1
    assert again.stderr == f"dmp: job {job} has already ended (cancelled)\n".encode()


def test_broker_unreachable_is_a_quick_clear_error(tree: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    result = run(*CREATE, cwd=tree, broker_url=url, timeout=60)
    assert time.monotonic() - started < 20
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.startswith(f"dmp: cannot reach the broker at {url} ".encode())
    assert result.stderr.count(b"\n") == 1 and b"Traceback" not in result.stderr


def test_redis_lost_mid_job_is_a_clear_error(tree: Path) -> None:
    with redis_server() as server, _waiting_check(server.url, tree) as (proc, line):
        assert line.startswith(b"dmp: no worker answers")
        stop(server.proc)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.startswith(b"dmp: cannot reach the broker at redis://127.0.0.1:")
    assert err.count(b"\n") == 1 and b"Traceback" not in err


def test_password_and_credentials_never_printed(tree: Path, tmp_path: Path) -> None:
    secret = "pa55-w0rd-secret"
    with redis_server("--requirepass", secret) as server:
        url = server.url.replace("redis://", f"redis://:{secret}@")
        with worker(url, "pw", tmp_path):
            args = [*CREATE, "-m", "fleet.sha256"]
            distributed = run(*args, cwd=tree, broker_url=url)
            embedded = run(*CREATE, "-m", "local.sha256", cwd=tree, broker_url=None)
            same(distributed, embedded)
            listed = run("job", "list", cwd=tree, broker_url=url)
            assert listed.returncode == 0 and b"done" in listed.stdout
        assert (tree / "fleet.sha256").read_bytes() == (tree / "local.sha256").read_bytes()
        wrong = run(
            *CREATE,
            cwd=tree,
            broker_url=server.url.replace("redis://", ":nope@").replace(":nope@", "redis://:nope@"),
        )
        missing = run(*CREATE, cwd=tree, broker_url=server.url)
        log = (tmp_path / "pw.log").read_bytes()
    assert wrong.returncode == missing.returncode == 1
    assert wrong.stderr.startswith(b"dmp: the broker at redis://:**@127.0.0.1:")
    assert b"refused the password" in wrong.stderr and b"nope" not in wrong.stderr
    assert b"needs a password" in missing.stderr
    for output in (distributed.stdout, distributed.stderr, listed.stdout, log):
        assert secret.encode() not in output


def test_same_job_digest_as_hashlib(fleet: str, tmp_path: Path) -> None:
    """A file bigger than a hashing buffer, through the fleet."""
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    result = run("manifest", "--create", "big.bin", cwd=tmp_path, broker_url=fleet)
    assert result.stdout == hashlib.sha256(big.read_bytes()).hexdigest().encode() + b'  "big.bin"\n'


@pytest.mark.parametrize(
    ("sig", "said"),
    [
        (signal.SIGINT, b"dmp: interrupted\n"),
        (signal.SIGTERM, b"dmp: stopped by SIGTERM\n"),
        (signal.SIGHUP, b"dmp: stopped by SIGHUP\n"),
    ],
    ids=["SIGINT", "SIGTERM", "SIGHUP"],
)
def test_interrupt_cancels_the_job(redis: Service, tree: Path, sig: int, said: bytes) -> None:
    """^C, `timeout`/`kill` and a dropped ssh session alike: the attached job is
    cancelled (nobody would read its results), and dmp ends by that signal."""
    url = redis.url.rsplit("/", 1)[0] + "/7"  # no worker: the CLI waits
    with _waiting_check(url, tree) as (proc, line):
        assert line.startswith(b"dmp: no worker answers")
        time.sleep(0.5)  # into the wait for results, where a user's Ctrl-C lands
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (-sig, b"")  # 128 + the signal in a shell
    assert err.endswith(said) and b"Traceback" not in err
    listed = run("--json", "job", "list", cwd=tree, broker_url=url)
    assert json.loads(listed.stdout.splitlines()[0])["state"] == "cancelled"


@pytest.mark.parametrize("ignored", [False, True], ids=["hangup", "nohup"])
def test_a_hangup_ends_an_embedded_run_unless_ignored(tree: Path, ignored: bool) -> None:
    """A dropped terminal ends an embedded run too (nothing half-written is left); under
    `nohup`, which ignores SIGHUP, dmp leaves it ignored and the run goes on."""

    def nohup() -> None:
        if ignored:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)

    proc = subprocess.Popen(
        [sys.executable, "-m", "dmp_cli", "manifest", "--create", "--files-from", "-", "-m", "m"],
        cwd=tree,
        env=fleet_env(None),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=nohup,
        start_new_session=True,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"data/d0/f000\n")
        proc.stdin.flush()
        time.sleep(1.5)  # dmp is reading the list, waiting for more
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        proc.wait(timeout=30)
        assert proc.stdout is not None and proc.stderr is not None
        err = proc.stderr.read()
    finally:
        stop(proc)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    if ignored:
        assert proc.returncode == 0, err
        assert (tree / "m").read_bytes().endswith(b'  "data/d0/f000"\n')
    else:
        assert (proc.returncode, err) == (-signal.SIGHUP, b"dmp: stopped by SIGHUP\n")
        assert not (tree / "m").exists()
    assert not [name for name in os.listdir(tree) if name.endswith(".dmp-tmp")]


def test_worker_errors_are_one_line(tmp_path: Path) -> None:
    unreachable = run("worker", cwd=tmp_path, broker_url=f"redis://:pw@127.0.0.1:{free_port()}/0")
    unset = run("worker", cwd=tmp_path, broker_url=None)
    bad_timeout = run(
        "worker", cwd=tmp_path, broker_url="redis://127.0.0.1:1/0", DMP_REDELIVERY_TIMEOUT="soon"
    )
    assert unreachable.returncode == unset.returncode == bad_timeout.returncode == 1
    assert unreachable.stderr.startswith(b"dmp: cannot reach the broker at redis://:**@")
    assert unset.stderr == b"dmp: dmp worker needs DMP_BROKER_URL (e.g. redis://host:6379/0)\n"
    assert (
        bad_timeout.stderr == b"dmp: DMP_REDELIVERY_TIMEOUT must be a number of seconds, "
        b"not 'soon'\n"
    )


def test_a_reader_that_leaves_ends_it_by_sigpipe(fleet: str, tmp_path: Path) -> None:
    from tests.integration.test_errors import many_files, read_one_line_and_leave

    many_files(tmp_path, 6000)
    cmd = [sys.executable, "-m", "dmp_cli", "manifest", "--create", "--dir", "many"]
    status, line, err = read_one_line_and_leave(cmd, tmp_path, fleet_env(fleet))
    assert line.startswith(hashlib.sha256(b"0\n").hexdigest().encode())
    assert (status, err) == (-13, b"")
    listed = run("--json", "job", "list", "-n", "1", cwd=tmp_path, broker_url=fleet)
    assert json.loads(listed.stdout)["state"] in ("cancelled", "done")  # not left active
