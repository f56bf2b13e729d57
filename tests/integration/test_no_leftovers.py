"""A worker SIGKILLed while it writes a file leaves nothing behind once its job is done:
not beside a fetched file, not in a file:// vault, not under an archive's --path.

Each file comes through a pipe that says its first mebibyte and then waits, so the
worker is killed with that much written into its pending file; the batch runs again at
once in a new process of the worker (reject_on_worker_lost), the pipe says everything,
and the job completes. Unnamed (O_TMPFILE), the killed writer's file had no name;
named (the fallback, forced), the second writer removes the dead one's temporary.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dmp_cli.digest import CHUNK
from dmp_cli.fsutil import NAMED_TEMPORARIES, temporary_names
from dmp_cli.layout import digest_key
from dmp_cli.manifest import Entry, format_line
from tests.integration.fleet import fleet_env, worker
from tests.servers import Service, session_pids, stop

pytestmark = pytest.mark.integration

# A mebibyte and a half: the writer's first read fills a whole chunk, the next one waits.
CONTENT = bytes(range(256)) * (3 * CHUNK // 512)
DIGEST = hashlib.sha256(CONTENT).hexdigest()
SAID_FIRST = CHUNK + 4096


@contextmanager
def slow_pipe(fifo: Path) -> Iterator[threading.Event]:
    """A pipe at ``fifo`` that tells its first reader SAID_FIRST bytes and then waits
    until the event is set (its reader killed); its next reader gets all of CONTENT."""
    os.mkfifo(fifo)
    killed = threading.Event()

    def say() -> None:
        with open(fifo, "wb") as stream:
            stream.write(CONTENT[:SAID_FIRST])
            stream.flush()
            killed.wait(120)
        with open(fifo, "wb") as stream:
            stream.write(CONTENT)

    thread = threading.Thread(target=say, daemon=True)
    thread.start()
    try:
        yield killed
    finally:
        killed.set()
        if thread.is_alive():  # a test that failed half way: be its reader, so it ends
            _drain(fifo, thread)


def _drain(fifo: Path, thread: threading.Thread) -> None:
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        deadline = time.monotonic() + 10
        while thread.is_alive() and time.monotonic() < deadline:
            try:
                os.read(fd, 1 << 16)
            except BlockingIOError:
                time.sleep(0.01)
    finally:
        os.close(fd)


def writing_into(session: int, directory: Path, timeout: float = 60.0) -> tuple[int, str]:
    """A process of ``session`` with a file below ``directory`` open that holds at least
    a chunk: its pid and what the file is called (``... (deleted)`` if unnamed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in session_pids(session):
            try:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if not link.startswith(f"{directory}/"):
                        continue
                    if os.stat(f"/proc/{pid}/fd/{fd}").st_size >= CHUNK:
                        return pid, link
            except OSError:  # gone meanwhile
                continue
        time.sleep(0.05)
    raise AssertionError(f"no worker was writing below {directory} within {timeout} s")


def gone(pid: int, timeout: float = 30.0) -> None:
    """Wait until the killed ``pid`` has closed its files (it is a zombie, or reaped), so
    that the pipe's next writer cannot meet the dying reader."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rpartition(")")[2].split()[0] in ("Z", "X"):
                    return
        except FileNotFoundError:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} still alive {timeout} s after SIGKILL")


def leftovers(*roots: Path) -> list[Path]:
    return [path for root in roots for path in root.rglob("*") if ".dmp-tmp" in path.name]


def manifest(directory: Path, name: str) -> Path:
    path = directory / "m.sha256"
    path.write_bytes(format_line(Entry(DIGEST, name)))
    return path


def kill_writer_and_finish(
    redis: Service,
    tmp_path: Path,
    args: list[str],
    cwd: Path,
    watched: Path,
    named: bool,
    killed: threading.Event,
) -> tuple[str, subprocess.CompletedProcess[bytes]]:
    """Run `dmp ARGS` on a worker; SIGKILL the worker's process once it has a chunk
    written below ``watched``, and tell the pipe (``killed``): the name of the killed
    writer's file, and the command's outcome."""
    env = {NAMED_TEMPORARIES: "1" if named else "0"}
    vault = {"DMP_VAULT": f"file://{tmp_path / 'vault'}"}
    with worker(redis.url, "writer", tmp_path, **env) as alive:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dmp_cli", *args],
            cwd=cwd,
            env=fleet_env(redis.url, **env, **vault),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            pid, name = writing_into(alive.pid, watched)
            assert pid != alive.pid
            os.kill(pid, signal.SIGKILL)
            gone(pid)
            killed.set()
            out, err = proc.communicate(timeout=40)
        finally:
            stop(proc)
    return name, subprocess.CompletedProcess(args, proc.returncode, out, err)


def assert_written_as(name: str, target: str, named: bool) -> None:
    """The killed writer's file was unnamed, or one of the target's temporaries."""
    if named:
        assert os.path.basename(name) in temporary_names(target), name
    else:
        assert name.endswith(" (deleted)") and ".dmp-tmp" not in name, name


@pytest.mark.parametrize("named", [False, True], ids=["unnamed", "named"])
def test_sigkilled_fetch_leaves_nothing(redis: Service, tmp_path: Path, named: bool) -> None:
    vault = tmp_path / "vault"
    obj = vault.joinpath(*digest_key(DIGEST).split("/"))
    obj.parent.mkdir(parents=True)
    target = tmp_path / "restore"
    target.mkdir()
    manifest(target, "out/big.bin")
    with slow_pipe(obj) as killed:
        name, result = kill_writer_and_finish(
            redis,
            tmp_path,
            ["manifest", "--fetch", "-m", "m.sha256"],
            target,
            target / "out",
            named,
            killed,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"out/big.bin: fetched (1.5 MiB)\n"
    assert_written_as(name, "big.bin", named)
    assert (target / "out/big.bin").read_bytes() == CONTENT
    assert leftovers(target) == []
    assert "WorkerLostError" in (tmp_path / "writer.log").read_text()


@pytest.mark.parametrize(
    ("to_path", "named"), [(False, False), (True, True)], ids=["vault-unnamed", "path-named"]
)
def test_sigkilled_archive_leaves_nothing_in_a_file_vault(
    redis: Service, tmp_path: Path, to_path: bool, named: bool
) -> None:
    vault = tmp_path / "vault"
    vault.mkdir()
    dest = tmp_path / "dest"
    work = tmp_path / "work"
    work.mkdir()
    manifest(work, "big.bin")
    args = ["manifest", "--archive", "-m", "m.sha256"]
    if to_path:
        args += ["--path", f"file://{dest}"]
        dest.mkdir()
    watched = dest if to_path else vault
    with slow_pipe(work / "big.bin") as killed:
        name, result = kill_writer_and_finish(redis, tmp_path, args, work, watched, named, killed)
    assert result.returncode == 0, result.stderr
    assert_written_as(name, "big.bin" if to_path else digest_key(DIGEST).split("/")[-1], named)
    assert vault.joinpath(*digest_key(DIGEST).split("/")).read_bytes() == CONTENT
    if to_path:
        assert (dest / "big.bin").read_bytes() == CONTENT
    assert leftovers(vault, dest) == []
    assert "WorkerLostError" in (tmp_path / "writer.log").read_text()
