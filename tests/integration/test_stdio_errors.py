"""Standard input closed and standard output on a full disk: dmp says what sha256sum 9.1
says, with the same exit status, and never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import dmp_env

pytestmark = pytest.mark.integration

DMP = [sys.executable, "-m", "dmp_cli"]


def _run(
    cmd: list[str], cwd: Path, *, stdin_closed: bool = False, full: bool = False
) -> tuple[int, bytes]:
    with open("/dev/full" if full else os.devnull, "wb") as out:
        done = subprocess.run(
            cmd,
            cwd=cwd,
            env=dmp_env(),
            stdin=None if stdin_closed else subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.PIPE,
            preexec_fn=(lambda: os.close(0)) if stdin_closed else None,
            check=False,
        )
    return done.returncode, done.stderr


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "a").write_bytes(b"hi\n")
    made = subprocess.run(["sha256sum", "a"], cwd=tmp_path, capture_output=True, check=True)
    (tmp_path / "m").write_bytes(made.stdout)
    return tmp_path


def test_check_of_a_closed_stdin(work: Path) -> None:
    code, err = _run([*DMP, "manifest", "--check", "-m", "-"], work, stdin_closed=True)
    peer_code, peer_err = _run(["sha256sum", "--check", "-"], work, stdin_closed=True)
    assert code == peer_code == 1
    assert err == b"dmp: 'standard input': read error\n"
    assert peer_err.splitlines()[0] == b"sha256sum: 'standard input': read error"


def test_create_from_a_closed_stdin(work: Path) -> None:
    code, err = _run([*DMP, "manifest", "--create", "--files-from", "-"], work, stdin_closed=True)
    assert code == 1
    assert err.splitlines() == [
        b"dmp: 'standard input': Bad file descriptor",
        b"dmp: 1 input could not be read; no manifest written",
    ]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
@pytest.mark.parametrize(
    ("args", "peer"),
    [
        (["--check", "-m", "m"], ["--check", "m"]),
        (["--check", "--status", "-m", "m"], ["--status", "--check", "m"]),
        (["--create", "a"], ["a"]),
    ],
)
def test_stdout_on_a_full_disk(work: Path, args: list[str], peer: list[str]) -> None:
    code, err = _run([*DMP, "manifest", *args], work, full=True)
    peer_code, peer_err = _run(["sha256sum", *peer], work, full=True)
    assert code == peer_code
    assert err == peer_err.replace(b"sha256sum:", b"dmp:")
