"""A worker killed with SIGKILL mid-job loses nothing: another worker runs its batch again
after DMP_REDELIVERY_TIMEOUT, the batch is counted once, and the output is right."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dmp_cli.layout import digest_key
from dmp_cli.manifest import Entry, format_line
from tests.integration.fleet import Vault, fleet_env, new_vault, run, worker
from tests.integration.manifest_helpers import without_pace
from tests.integration.vaultkit import incomplete, wait_for_a_part
from tests.servers import Service, redis_server, session_pids, stop

pytestmark = pytest.mark.integration

FAST_REDELIVERY = {"DMP_REDELIVERY_TIMEOUT": "3"}
MiB = 1 << 20
FIFO_CONTENT = b"what the pipe finally says\n"


def _stuck_in_pipe(session: int, timeout: float = 30.0) -> int:
    """Wait until a process of ``session`` blocks opening a pipe with no writer yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in session_pids(session):
            try:
                with open(f"/proc/{pid}/wchan") as wchan:
                    if wchan.read() == "wait_for_partner":
                        return pid
            except OSError:  # gone meanwhile
                continue
        time.sleep(0.05)
    raise AssertionError(f"no worker got stuck in the pipe within {timeout} s")


def _feed(fifo: Path) -> threading.Thread:
    """Write the pipe's content once a reader opens it (open blocks until then)."""

    def feed() -> None:
        with open(fifo, "wb") as stream:
            stream.write(FIFO_CONTENT)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    return thread


def _tree(tmp_path: Path) -> tuple[Path, bytes]:
    """21 files, the 11th a pipe: batch 2 (4 items a batch) blocks until the test writes."""
    work = tmp_path / "work"
    work.mkdir()
    entries = []
    for i in range(21):
        name = f"f{i:02}"
        if i == 10:
            os.mkfifo(work / name)
            digest = hashlib.sha256(FIFO_CONTENT).hexdigest()
        else:
            content = f"file {i}\n".encode()
            (work / name).write_bytes(content)
            digest = hashlib.sha256(content).hexdigest()
        entries.append(Entry(digest, name))
    (work / "m.sha256").write_bytes(b"".join(map(format_line, entries)))
    return work, b"".join(f"f{i:02}: OK\n".encode() for i in range(21))


CHECK = [sys.executable, "-m", "dmp_cli", "manifest", "--check", "-m", "m.sha256"]
ENV = {**FAST_REDELIVERY, "DMP_BATCH_ITEMS": "4"}


def _counted_once(work: Path, url: str) -> None:
    listed = run("--json", "job", "list", cwd=work, broker_url=url)
    job = json.loads(listed.stdout.splitlines()[0])
    assert job["state"] == "done"
    assert job["files"] == job["total"] == 21  # the batch run twice counted once
    assert job["counts"] == {"ok": 21}


def _kill_and_rescue(
    url: str,
    doomed: subprocess.Popen[bytes],
    proc: subprocess.Popen[bytes],
    work: Path,
    logs: Path,
    env: dict[str, str],
) -> tuple[bytes, bytes]:
    """Once ``doomed`` is stuck opening the pipe, SIGKILL it whole, start a second worker
    ("rescuer"), feed the pipe, and let ``proc`` finish: its stdout and stderr."""
    _stuck_in_pipe(doomed.pid)
    # Let ``proc`` ask its one question about live workers (after a second with no
    # rows) while this one still lives to answer, however loaded the machine is.
    time.sleep(3)
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait()
    with worker(url, "rescuer", logs, **env):
        feeder = _feed(work / "f10")
        out, err = proc.communicate(timeout=90)
        feeder.join(5)
    return out, err


def test_sigkilled_worker_job_completes_counted_once(tmp_path: Path) -> None:
    """The whole worker dies: its batch comes back after the redelivery timeout."""
    work, expected = _tree(tmp_path)
    with redis_server() as server, worker(server.url, "doomed", tmp_path, **ENV) as doomed:
        check = subprocess.Popen(
            CHECK,
            cwd=work,
            env=fleet_env(server.url, **ENV),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = _kill_and_rescue(server.url, doomed, check, work, tmp_path, ENV)
        finally:
            stop(check)
        _counted_once(work, server.url)
    assert check.returncode == 0, err
    assert (out, err) == (expected, b"")
    assert "dmp.hash_batch" in (tmp_path / "rescuer.log").read_text()


def test_sigkilled_pool_process_batch_runs_again(tmp_path: Path) -> None:
    """Only the process running the batch dies: its worker rejects the batch back to the
    queue at once (reject_on_worker_lost) and runs it in a new process."""
    work, expected = _tree(tmp_path)
    with redis_server() as server, worker(server.url, "survivor", tmp_path, **ENV) as alive:
        check = subprocess.Popen(
            CHECK,
            cwd=work,
            env=fleet_env(server.url, **ENV),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            first = _stuck_in_pipe(alive.pid)
            assert first != alive.pid
            os.kill(first, signal.SIGKILL)
            second = _stuck_in_pipe(alive.pid)  # the same batch, in the new process
            assert second != first
            feeder = _feed(work / "f10")
            out, err = check.communicate(timeout=90)
            feeder.join(5)
        finally:
            stop(check)
        _counted_once(work, server.url)
    assert check.returncode == 0, err
    assert (out, err) == (expected, b"")
    assert "WorkerLostError" in (tmp_path / "survivor.log").read_text()


ARCHIVE = [sys.executable, "-m", "dmp_cli", "manifest", "--archive", "-m", "m.sha256"]


@pytest.fixture(params=["file", "s3"])
def vault(request: pytest.FixtureRequest, tmp_path: Path) -> Vault:
    s3_url = request.getfixturevalue("s3_server").url if request.param == "s3" else None
    return new_vault(request.param, tmp_path, s3_url)


def _expected_objects() -> dict[str, bytes]:
    contents = [FIFO_CONTENT if i == 10 else f"file {i}\n".encode() for i in range(21)]
    return {digest_key(hashlib.sha256(data).hexdigest()): data for data in contents}


def _keyed(vault: Vault) -> dict[str, bytes]:
    """The vault's objects under their keys, and nothing else: the worker was killed while
    opening the pipe, before a file:// vault makes its temporary file, and S3 keeps
    nothing of an upload not finished."""
    stored = vault.objects()
    assert not [key for key in stored if key.endswith(".dmp-tmp")]
    return stored


def test_sigkilled_worker_mid_archive_second_worker_finishes(tmp_path: Path, vault: Vault) -> None:
    """The worker dies in batch 2 after archiving two of its files: a second worker runs
    the batch again, finds those two archived, and the job ends with every file in the
    vault once, each counted once."""
    work, _ = _tree(tmp_path)
    env = {**ENV, **vault.env}
    with redis_server() as server, worker(server.url, "doomed", tmp_path, **env) as doomed:
        archive = subprocess.Popen(
            ARCHIVE,
            cwd=work,
            env=fleet_env(server.url, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = _kill_and_rescue(server.url, doomed, archive, work, tmp_path, env)
        finally:
            stop(archive)
        listed = run("--json", "job", "list", cwd=work, broker_url=server.url)
    assert archive.returncode == 0, err
    assert "dmp.upload_batch" in (tmp_path / "rescuer.log").read_text()
    job = json.loads(listed.stdout.splitlines()[0])
    assert (job["state"], job["files"], job["total"]) == ("done", 21, 21)
    # f08 and f09 went in before the worker died; run again, they are found archived.
    assert job["counts"] == {"uploaded": 19, "skipped": 2}
    lines = out.decode().splitlines()
    assert [line.split(":")[0] for line in lines] == [f"f{i:02}" for i in range(21)]
    assert lines[8:10] == ["f08: already archived", "f09: already archived"]
    summary = without_pace(err.decode().splitlines()[-1])
    assert summary.startswith("dmp: 19 files (")
    assert summary.endswith(") uploaded, 2 skipped as already archived, 0 failed")
    objects = _expected_objects()
    assert _keyed(vault) == objects
    for key, data in _keyed(vault).items():
        assert key == digest_key(hashlib.sha256(data).hexdigest())

    # The pipe, drained, becomes a plain file of what it said: the same manifest again.
    (work / "f10").unlink()
    (work / "f10").write_bytes(FIFO_CONTENT)
    again = run("manifest", "--archive", "-m", "m.sha256", cwd=work, broker_url=None, **vault.env)
    assert again.returncode == 0, again.stderr
    assert without_pace(again.stderr.decode().splitlines()[-1]) == (
        "dmp: 0 files (0 B) uploaded, 21 skipped as already archived, 0 failed"
    )
    assert _keyed(vault) == objects


def test_sigkilled_mid_multipart_upload_the_retry_aborts_what_it_left(
    tmp_path: Path, s3_server: Service
) -> None:
    """The worker dies with a big file's first part sent: its upload stays incomplete in
    the bucket until the second worker, uploading the file again, aborts it."""
    vault = new_vault("s3", tmp_path, s3_server.url)
    bucket, _, prefix = vault.url.removeprefix("s3://").partition("/")
    work = tmp_path / "work"
    work.mkdir()
    big = os.urandom(17 * MiB)  # two parts, 16 MiB and 1 MiB
    small = b"small\n"
    (work / "big.bin").write_bytes(big)
    (work / "small.txt").write_bytes(small)
    digest = hashlib.sha256(big).hexdigest()
    entries = [Entry(digest, "big.bin"), Entry(hashlib.sha256(small).hexdigest(), "small.txt")]
    (work / "m.sha256").write_bytes(b"".join(map(format_line, entries)))
    key = f"{prefix}/{digest_key(digest)}"
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps({"target": "s3.parts", "victim": "big.bin", "digest": digest, "delay": 600})
    )
    env = {**ENV, **vault.env}
    faulty = ["-m", "tests.integration.faults"]
    s3 = vault._client()
    with (
        redis_server() as server,
        worker(
            server.url, "doomed", tmp_path, module=faulty, DMP_TEST_FAULTS=str(plan), **env
        ) as doomed,
    ):
        archive = subprocess.Popen(
            ARCHIVE,
            cwd=work,
            env=fleet_env(server.url, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            wait_for_a_part(s3, bucket, key)
            os.killpg(doomed.pid, signal.SIGKILL)
            doomed.wait()
            [_left] = incomplete(s3, bucket, key)  # the killed worker's, with its part
            with worker(server.url, "rescuer", tmp_path, **env):
                out, err = archive.communicate(timeout=120)
        finally:
            stop(archive)
    try:
        assert archive.returncode == 0, err
        assert sorted(out.decode().splitlines()) == [
            "big.bin: uploaded (17.0 MiB)",
            "small.txt: uploaded (6 B)",
        ]
        assert incomplete(s3, bucket) == []  # the killed worker's, aborted by the retry
    finally:
        s3.close()
    assert _keyed(vault) == {digest_key(digest): big, digest_key(entries[1].digest): small}
