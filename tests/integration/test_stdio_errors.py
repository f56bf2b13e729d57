"""Standard streams closed or on a full disk: dmp says what sha256sum 9.1 says, with the
same exit status, and never a traceback, in whatever command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import Service, dmp_env

pytestmark = pytest.mark.integration

DMP = [sys.executable, "-m", "dmp_cli"]
needs_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")


def _run(
    cmd: list[str],
    cwd: Path,
    *,
    stdin: str = "null",
    stdout: str = "null",
    env: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """``cmd``'s exit status and stderr, with stdin "null" or "closed" and stdout "null",
    "closed" or "full" (/dev/full): closed as by the shell's `<&-` and `>&-`, in the child
    before it runs."""
    closed = [fd for fd, how in ((0, stdin), (1, stdout)) if how == "closed"]

    def close() -> None:
        for fd in closed:
            os.close(fd)

    with open("/dev/full" if stdout == "full" else os.devnull, "wb") as out:
        done = subprocess.run(
            cmd,
            cwd=cwd,
            env=env or dmp_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.PIPE,
            preexec_fn=close if closed else None,
            check=False,
            timeout=120,
        )
    return done.returncode, done.stderr


def _as_dmp(stderr: bytes) -> bytes:
    return stderr.replace(b"sha256sum:", b"dmp:")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "a").write_bytes(b"hi\n")
    made = subprocess.run(["sha256sum", "a"], cwd=tmp_path, capture_output=True, check=True)
    (tmp_path / "m").write_bytes(made.stdout)
    digest = made.stdout.split()[0]
    (tmp_path / "m-stdin").write_bytes(digest + b"  -\n")  # an entry '-': stdin
    return tmp_path


# What sha256sum does beside each: (dmp's arguments after `manifest`, sha256sum's).
SAME_AS_SHA256SUM = [
    (["--check", "-m", "m"], ["--check", "m"]),
    (["--check", "--status", "-m", "m"], ["--status", "--check", "m"]),
    (["--check", "--quiet", "-m", "m"], ["--quiet", "--check", "m"]),
    (["--create", "a"], ["a"]),
]


@pytest.mark.parametrize(("args", "peer"), SAME_AS_SHA256SUM)
def test_a_closed_stdout(work: Path, args: list[str], peer: list[str]) -> None:
    """`dmp: write error: Bad file descriptor`, exit 1, where there was something to
    write; nothing, exit 0, where there was not (--status, --quiet)."""
    code, err = _run([*DMP, "manifest", *args], work, stdout="closed")
    peer_code, peer_err = _run(["sha256sum", *peer], work, stdout="closed")
    assert (code, err) == (peer_code, _as_dmp(peer_err))


def test_a_closed_stdout_is_said_as_sha256sum_says_it(work: Path) -> None:
    code, err = _run([*DMP, "manifest", "--check", "-m", "m"], work, stdout="closed")
    assert (code, err) == (1, b"dmp: write error: Bad file descriptor\n")


@pytest.mark.parametrize(
    ("args", "peer"), [(["--help"], ["--help"]), (["--version"], ["--version"])]
)
def test_help_and_version_to_a_closed_stdout(work: Path, args: list[str], peer: list[str]) -> None:
    code, err = _run([*DMP, *args], work, stdout="closed")
    peer_code, peer_err = _run(["sha256sum", *peer], work, stdout="closed")
    assert (code, err) == (peer_code, _as_dmp(peer_err)) == (1, err)


@needs_full
@pytest.mark.parametrize(("args", "peer"), SAME_AS_SHA256SUM)
def test_stdout_on_a_full_disk(work: Path, args: list[str], peer: list[str]) -> None:
    """The exit status is sha256sum's; the message gives the reason, where sha256sum 9.1
    gives it only when the failing write is its last flush (an earlier one leaves
    `sha256sum: write error` alone)."""
    code, err = _run([*DMP, "manifest", *args], work, stdout="full")
    peer_code, peer_err = _run(["sha256sum", *peer], work, stdout="full")
    assert code == peer_code
    if peer_err:
        assert peer_err.startswith(b"sha256sum: write error")
        assert err == b"dmp: write error: No space left on device\n"
    else:  # nothing written, nothing said
        assert err == b""


def test_check_of_a_closed_stdin(work: Path) -> None:
    code, err = _run([*DMP, "manifest", "--check", "-m", "-"], work, stdin="closed")
    peer_code, peer_err = _run(["sha256sum", "--check", "-"], work, stdin="closed")
    assert (code, err) == (peer_code, _as_dmp(peer_err))
    assert err.splitlines() == [
        b"dmp: 'standard input': read error",
        b"dmp: standard input: Bad file descriptor",
    ]


def test_an_entry_naming_a_closed_stdin(work: Path) -> None:
    code, err = _run([*DMP, "manifest", "--check", "-m", "m-stdin"], work, stdin="closed")
    peer_code, peer_err = _run(["sha256sum", "--check", "m-stdin"], work, stdin="closed")
    assert (code, err) == (peer_code, _as_dmp(peer_err))
    assert err.splitlines()[-1] == b"dmp: standard input: Bad file descriptor"


def test_an_open_stdin_is_not_said(work: Path) -> None:
    code, err = _run([*DMP, "manifest", "--check", "-m", "m-stdin"], work)
    assert code == 1  # an empty stdin is not 'hi\n'
    assert b"standard input" not in err


def test_create_from_a_closed_stdin(work: Path) -> None:
    code, err = _run([*DMP, "manifest", "--create", "--files-from", "-"], work, stdin="closed")
    _, peer_err = _run(["sha256sum", "-"], work, stdin="closed")
    assert code == 1
    assert err.splitlines() == [
        b"dmp: 'standard input': Bad file descriptor",
        b"dmp: 1 input could not be read; no manifest written",
        b"dmp: standard input: Bad file descriptor",
    ]
    assert _as_dmp(peer_err).splitlines()[-1] == err.splitlines()[-1]


def test_a_closed_stdin_unread_is_not_said(work: Path) -> None:
    code, err = _run([*DMP, "manifest", "--check", "-m", "m"], work, stdin="closed")
    assert (code, err) == (0, b"")


def test_results_do_not_go_into_a_file_opened_on_a_closed_stdout(work: Path) -> None:
    """With stdout closed, the manifest written is the one file dmp opens: it must not
    get stdout's number, and the results with it."""
    code, err = _run(
        [*DMP, "manifest", "--create", "--format", "sha256sum", "-m", "out.sha256", "a"],
        work,
        stdout="closed",
    )
    assert (code, err) == (0, b"")
    assert (work / "out.sha256").read_bytes() == (work / "m").read_bytes()


def test_a_closed_stderr(work: Path) -> None:
    done = subprocess.run(
        [*DMP, "manifest", "--check", "-m", "m"],
        cwd=work,
        env=dmp_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        preexec_fn=lambda: os.close(2),
        check=False,
        timeout=120,
    )
    assert (done.returncode, done.stdout) == (0, b"a: OK\n")


# Every command: a closed or full stdout, a closed stdin; never a traceback. Those that
# write to stdout end with the write error, exit 1.
WRITING = [
    ["manifest", "--create", "a"],
    ["manifest", "--create", "--format", "sha256sum", "--dir", "."],
    ["manifest", "--check", "-m", "m"],
    ["--json", "manifest", "--check", "-m", "m"],
    ["manifest", "--archive", "-m", "m"],
    ["manifest", "--vault", "-m", "m"],
    ["manifest", "--fetch", "-m", "m", "--overwrite"],
    ["job", "list"],
    ["--help"],
    ["--version"],
    ["manifest", "--help"],
    ["job", "--help"],
    ["vault", "--help"],
    ["worker", "--help"],
]
SILENT = [  # nothing on stdout: a message on stderr
    ["vault", "uploads"],  # a directory vault has none
    ["job", "status", "no-such-job"],
]


@pytest.mark.parametrize("how", ["closed stdout", "full stdout", "closed stdin"])
@pytest.mark.parametrize("args", WRITING + SILENT, ids=" ".join)
def test_no_traceback(work: Path, redis: Service, args: list[str], how: str) -> None:
    if how == "full stdout" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    env = dmp_env(DMP_VAULT=(work / "vault").as_uri())
    if args[0] == "job":
        env["DMP_BROKER_URL"] = redis.url
    (work / "vault").mkdir(exist_ok=True)
    stream, state = how.split()[1], how.split()[0]
    code, err = _run(
        [*DMP, *args], work, env=env, **{stream: "closed" if state == "closed" else "full"}
    )
    assert b"Traceback" not in err and b"unexpected error" not in err, err.decode()
    if stream == "stdout" and args in WRITING:
        reason = b"Bad file descriptor" if state == "closed" else b"No space left on device"
        assert code == 1
        assert err.splitlines()[-1] == b"dmp: write error: " + reason
