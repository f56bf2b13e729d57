"""The ten error cases of the specification for --create and --check: each one clear stderr
line naming the file, the right exit status (1 runtime, 2 usage), never a traceback."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.manifest_helpers import (
    as_dmp,
    dmp,
    dmp_env,
    sha256sum,
    temp_files,
    untimed,
)
from tests.servers import REPO, session_pids

pytestmark = pytest.mark.integration


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "a.txt").write_bytes(b"a")
    (tmp_path / "b.txt").write_bytes(b"b")
    (tmp_path / "empty").mkdir()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "s.txt").write_bytes(b"s")
    return tmp_path


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


# ---------------------------------------------------------------- --create


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), b"dmp: --create needs files, patterns, --dir DIR or --files-from FILE\n"),
        (
            ("--manifest", "m"),
            b"dmp: --create needs files, patterns, --dir DIR or --files-from FILE\n",
        ),
        (
            ("--recursive",),
            b"dmp: --create needs files, patterns, --dir DIR or --files-from FILE\n",
        ),
        (("--recursive", "a.txt"), b"dmp: --recursive needs --dir DIR\n"),
        (("-r", "--files-from", "-"), b"dmp: --recursive needs --dir DIR\n"),
    ],
    ids=[
        "no-inputs",
        "no-inputs-with-manifest",
        "recursive-alone",
        "recursive-without-dir",
        "recursive-with-list",
    ],
)
def test_usage_errors_exit_2(work: Path, args: tuple[str, ...], message: bytes) -> None:
    before = listing(work)
    proc = dmp("manifest", "--create", *args, cwd=work, input=b"")
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, b"", message)
    assert listing(work) == before


@pytest.mark.parametrize("existing", ["file", "empty-file", "directory", "dangling-symlink"])
def test_existing_manifest_is_never_touched(work: Path, existing: str) -> None:
    target = work / "m"
    if existing == "file":
        target.write_bytes(b"precious\n")
    elif existing == "empty-file":
        target.write_bytes(b"")
    elif existing == "directory":
        target.mkdir()
    else:
        target.symlink_to("elsewhere")
    before = os.lstat(target)
    content = target.read_bytes() if existing.endswith("file") else None
    proc = dmp("manifest", "--create", "a.txt", "--manifest", "m", cwd=work)
    assert (proc.returncode, proc.stdout) == (1, b"")
    assert proc.stderr == (
        b"dmp: m: manifest already exists (dmp never overwrites one; "
        b"remove it or choose another name)\n"
    )
    after = os.lstat(target)
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_size,
    )
    if content is not None:
        assert target.read_bytes() == content
    assert not (work / "elsewhere").exists()
    assert temp_files(work) == []


@pytest.mark.parametrize(
    ("target", "reason"),
    [("no/such/dir/m", b"No such file or directory"), ("a.txt/m", b"Not a directory")],
    ids=["missing-directory", "parent-is-a-file"],
)
def test_manifest_that_cannot_be_created(work: Path, target: str, reason: bytes) -> None:
    proc = dmp("manifest", "--create", "a.txt", "--manifest", target, cwd=work)
    assert (proc.returncode, proc.stdout) == (1, b"")
    assert (
        proc.stderr == b"dmp: " + target.encode() + b": cannot create manifest: " + reason + b"\n"
    )


def test_manifest_in_an_unwritable_directory(work: Path) -> None:
    # root writes anywhere; /proc refuses everyone
    proc = dmp("manifest", "--create", "a.txt", "--manifest", "/proc/dmp-manifest", cwd=work)
    assert proc.returncode == 1
    assert proc.stderr.startswith(b"dmp: /proc/dmp-manifest: cannot create manifest: ")
    assert len(proc.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--dir", "empty"), b"empty"),
        (("--dir", "empty", "--recursive"), b"empty"),
        (("*.nothing",), b"'*.nothing'"),
        (("--files-from", "-"), b"standard input"),
        (("x*", "y*", "--dir", "empty", "--dir", "sub/../empty"), b"'x*', 'y*', empty and 1 more"),
    ],
    ids=["empty-dir", "empty-dir-recursive", "no-match", "empty-list", "many"],
)
def test_zero_files_found(work: Path, args: tuple[str, ...], named: bytes) -> None:
    proc = dmp("manifest", "--create", *args, "--manifest", "m", cwd=work, input=b"")
    assert (proc.returncode, proc.stdout) == (1, b"")
    assert proc.stderr == b"dmp: no files found in " + named + b"\n"
    assert not (work / "m").exists()
    assert temp_files(work) == []


def test_a_pattern_without_match_beside_found_files_is_a_warning(work: Path) -> None:
    proc = dmp("manifest", "--create", "*.nothing", "a.txt", cwd=work)
    assert proc.returncode == 0
    assert proc.stdout == f'{sha(b"a")}  "a.txt"\n'.encode()
    assert proc.stderr == b"dmp: '*.nothing': warning: no regular file matches this pattern\n"


def _unreadable(work: Path, kind: str) -> str:
    """An input that cannot be read, even by root; returns its name."""
    if kind == "missing":
        return "missing.txt"
    if kind == "inside-missing-dir":
        return "nodir/x.txt"
    if kind == "dangling-symlink":
        (work / "dangling").symlink_to("nowhere")
        return "dangling"
    if kind == "directory":
        return "sub"
    if kind == "read-error":
        # a regular file whose read fails with EIO whoever reads it
        (work / "mem").symlink_to("/proc/self/mem")
        return "mem"
    raise AssertionError(kind)


UNREADABLE = {
    "missing": b"dmp: missing.txt: No such file or directory\n",
    "inside-missing-dir": b"dmp: nodir/x.txt: No such file or directory\n",
    "dangling-symlink": b"dmp: dangling: No such file or directory\n",
    "directory": b"dmp: sub: Is a directory (use --dir to include its files)\n",
    "read-error": b"dmp: mem: Input/output error\n",
}


@pytest.mark.parametrize("kind", UNREADABLE, ids=UNREADABLE.keys())
def test_unreadable_input_writes_no_manifest(work: Path, kind: str) -> None:
    name = _unreadable(work, kind)
    before = listing(work)
    proc = dmp(
        "-j", "2", "manifest", "--create", "a.txt", name, "b.txt", "--manifest", "m", cwd=work
    )
    assert (proc.returncode, proc.stdout) == (1, b"")
    assert (
        proc.stderr == UNREADABLE[kind] + b"dmp: 1 input could not be read; no manifest written\n"
    )
    assert listing(work) == before  # no manifest, no temporary file


def test_unreadable_input_to_stdout_is_reported(work: Path) -> None:
    proc = dmp("manifest", "--create", "a.txt", "missing.txt", cwd=work)
    assert proc.returncode == 1
    assert proc.stdout == f'{sha(b"a")}  "a.txt"\n'.encode()
    assert proc.stderr == (
        b"dmp: missing.txt: No such file or directory\n"
        b"dmp: 1 input could not be read; the manifest is incomplete\n"
    )


def test_unreadable_inputs_are_all_reported_and_counted(work: Path) -> None:
    (work / "list").write_bytes(b"a.txt\ngone1\nsub\ngone2\n")
    proc = dmp(
        "manifest",
        "--create",
        "--dir",
        "nodir",
        "--files-from",
        "list",
        "--manifest",
        "m",
        cwd=work,
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        b"dmp: nodir: No such file or directory",
        b"dmp: gone1: No such file or directory",
        b"dmp: sub: Is a directory (use --dir to include its files)",
        b"dmp: gone2: No such file or directory",
        b"dmp: 4 inputs could not be read; no manifest written",
    ]
    assert not (work / "m").exists()


def test_missing_list_file(work: Path) -> None:
    proc = dmp("manifest", "--create", "--files-from", "nolist", "--manifest", "m", cwd=work)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == b"dmp: nolist: No such file or directory"
    assert not (work / "m").exists()


def test_a_manifest_that_appears_while_hashing_is_not_clobbered(work: Path) -> None:
    """The manifest is linked into place without overwriting: a file that appeared after
    dmp started (here while it waits for its list on stdin) is left as it is."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dmp_cli",
            "manifest",
            "--create",
            "--files-from",
            "-",
            "--manifest",
            "m",
        ],
        cwd=work,
        env=dmp_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not temp_files(work):  # dmp has checked the name and made its temporary file
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    (work / "m").write_bytes(b"appeared meanwhile\n")
    out, err = proc.communicate(b"a.txt\nb.txt\n", timeout=60)
    assert proc.returncode == 1
    assert out == b""
    assert err == (b"dmp: m: File exists (appeared while it was being written; left untouched)\n")
    assert (work / "m").read_bytes() == b"appeared meanwhile\n"
    assert temp_files(work) == []


def test_interrupted_create_leaves_no_temporary_file(work: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dmp_cli",
            "manifest",
            "--create",
            "--files-from",
            "-",
            "--manifest",
            "m",
        ],
        cwd=work,
        env=dmp_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not temp_files(work):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(2)  # SIGINT, as ^C
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -2  # killed by SIGINT once clean, as sha256sum (130 in a shell)
    assert err.strip() == b"dmp: interrupted"  # after the newline click writes for ^C
    assert not (work / "m").exists()
    assert temp_files(work) == []


# ---------------------------------------------------------------- --check


def _check_both(
    work: Path, manifest: str, *flags: str
) -> tuple[subprocess.CompletedProcess[bytes], subprocess.CompletedProcess[bytes]]:
    ours = dmp("manifest", "--check", *flags, "--manifest", manifest, cwd=work)
    theirs = sha256sum("--check", *flags, manifest, cwd=work)
    return ours, theirs


def test_check_listed_file_missing(work: Path) -> None:
    (work / "m").write_text(f"{sha(b'a')}  a.txt\n{sha(b'g')}  gone.txt\n")
    ours, theirs = _check_both(work, "m")
    assert ours.returncode == theirs.returncode == 1
    assert ours.stdout == theirs.stdout == b"a.txt: OK\ngone.txt: FAILED open or read\n"
    assert (
        ours.stderr
        == as_dmp(theirs.stderr)
        == (
            b"dmp: gone.txt: No such file or directory\n"
            b"dmp: WARNING: 1 listed file could not be read\n"
        )
    )


def test_check_mismatches_are_counted_and_reported_at_the_end(work: Path) -> None:
    lines = [
        f"{sha(b'x')}  a.txt",
        f"{sha(b'b')}  b.txt",
        f"{sha(b'x')}  b.txt",
        f"{sha(b'x')}  sub/s.txt",
        f"{sha(b'a')}  a.txt",
    ]
    (work / "m").write_text("\n".join(lines) + "\n")
    ours, theirs = _check_both(work, "m")
    assert ours.returncode == theirs.returncode == 1
    assert (
        ours.stdout
        == theirs.stdout
        == (b"a.txt: FAILED\nb.txt: OK\nb.txt: FAILED\nsub/s.txt: FAILED\na.txt: OK\n")
    )
    assert (
        ours.stderr
        == as_dmp(theirs.stderr)
        == b"dmp: WARNING: 3 computed checksums did NOT match\n"
    )


@pytest.mark.parametrize(
    ("make", "reason"),
    [("missing", b"No such file or directory"), ("directory", b"Is a directory")],
)
def test_check_manifest_missing_or_unreadable(work: Path, make: str, reason: bytes) -> None:
    if make == "directory":
        (work / "the manifest").mkdir()
    proc = dmp("manifest", "--check", "--manifest", "the manifest", cwd=work)
    assert (proc.returncode, proc.stdout) == (1, b"")
    assert proc.stderr == b"dmp: 'the manifest': " + reason + b"\n"
    theirs = sha256sum("--check", "the manifest", cwd=work)
    assert theirs.returncode == 1


def test_check_manifest_read_error(work: Path) -> None:
    (work / "mem").symlink_to("/proc/self/mem")
    proc = dmp("manifest", "--check", "--manifest", "mem", cwd=work)
    assert (proc.returncode, proc.stdout) == (1, b"")
    assert proc.stderr == b"dmp: mem: Input/output error\n"


def test_check_listed_file_unreadable(work: Path) -> None:
    (work / "mem").symlink_to("/proc/self/mem")
    (work / "m").write_text(f"{sha(b'a')}  sub\n{sha(b'a')}  a.txt\n{sha(b'')}  mem\n")
    ours, theirs = _check_both(work, "m")
    assert ours.returncode == theirs.returncode == 1
    assert (
        ours.stdout
        == theirs.stdout
        == (b"sub: FAILED open or read\na.txt: OK\nmem: FAILED open or read\n")
    )
    assert (
        ours.stderr
        == as_dmp(theirs.stderr)
        == (
            b"dmp: sub: Is a directory\n"
            b"dmp: mem: Input/output error\n"
            b"dmp: WARNING: 2 listed files could not be read\n"
        )
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--check",), b"dmp: --check needs --manifest FILE\n"),
        (
            ("--check", "--manifest", "m", "a.txt"),
            b"dmp: --check takes no file arguments (use --manifest FILE)\n",
        ),
        (
            ("--check", "--create", "--manifest", "m"),
            b"dmp: give exactly one of --create, --check, --vault, --archive, --fetch\n",
        ),
        ((), b"dmp: give exactly one of --create, --check, --vault, --archive, --fetch\n"),
        (("--check", "--manifest", "m", "--dir", "sub"), b"dmp: --dir does not apply to --check\n"),
        (("--create", "a.txt", "--status"), b"dmp: --status does not apply to --create\n"),
        (("--create", "a.txt", "-0"), b"dmp: -0/--null needs --files-from FILE\n"),
    ],
    ids=[
        "no-manifest",
        "file-arguments",
        "two-modes",
        "no-mode",
        "create-option",
        "check-option",
        "null-without-list",
    ],
)
def test_manifest_usage_errors(work: Path, args: tuple[str, ...], message: bytes) -> None:
    proc = dmp("manifest", *args, cwd=work)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, b"", message)


@pytest.mark.parametrize(
    "args",
    [
        ("manifest", "--create", "--bogus"),
        ("--jobs", "0", "manifest", "--check"),
        ("manifest", "--create", "a.txt", "--format", "md5"),
    ],
    ids=["unknown-option", "bad-jobs", "bad-format"],
)
def test_click_usage_errors_are_one_line_exit_2(work: Path, args: tuple[str, ...]) -> None:
    proc = dmp(*args, cwd=work)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith(b"dmp: ")


def test_the_read_error_trick_really_fails_for_root_too(tmp_path: Path) -> None:
    # the EIO cases above rely on this: /proc/self/mem is a regular file nobody can read
    assert stat.S_ISREG(os.stat("/proc/self/mem").st_mode)
    with pytest.raises(OSError), open("/proc/self/mem", "rb") as stream:
        stream.read(1)


# ---------------------------------------------------------------- a reader that leaves


def many_files(root: Path, count: int = 4000) -> Path:
    tree = root / "many"
    tree.mkdir()
    for i in range(count):
        (tree / f"f{i:05}").write_bytes(b"%d\n" % i)
    return tree


def read_one_line_and_leave(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[int, bytes, bytes]:
    """`CMD | head -1`: (the command's wait status, the line read, its stderr)."""
    with subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read()
        return proc.wait(timeout=120), line, err


@pytest.mark.parametrize("sha256sum_too", [False, True], ids=["dmp", "sha256sum"])
def test_a_reader_that_leaves_ends_it_by_sigpipe(tmp_path: Path, sha256sum_too: bool) -> None:
    """As sha256sum: killed by SIGPIPE (141 in a shell), nothing on stderr."""
    many_files(tmp_path)
    if sha256sum_too:
        names = sorted(os.listdir(tmp_path / "many"))
        cmd = ["sha256sum", *[f"many/{name}" for name in names]]
        status, line, err = read_one_line_and_leave(cmd, tmp_path)
    else:
        cmd = [sys.executable, "-m", "dmp_cli", "manifest", "--create", "--dir", "many"]
        status, line, err = read_one_line_and_leave(cmd, tmp_path, dmp_env())
    assert line.startswith(sha(b"0\n").encode())
    assert (status, err) == (-13, b"")


@pytest.mark.parametrize(
    "url",
    [
        "amqp://guest:secret@mq:5672//",
        "sqs://",
        "REDIS://host:6379/0",
        "host:6379",
        "redis://:secret@host:notaport/0",
    ],
)
@pytest.mark.parametrize(
    "args",
    [
        ("manifest", "--check", "-m", "m"),
        ("manifest", "--create", "--dir", "."),
        ("job", "list"),
        ("worker",),
    ],
    ids=["check", "create", "job-list", "worker"],
)
def test_a_broker_url_dmp_cannot_use_is_a_usage_error(
    work: Path, url: str, args: tuple[str, ...]
) -> None:
    (work / "m").write_text(f"{sha(b'x')}  x\n")
    proc = dmp(*args, cwd=work, env=dmp_env(DMP_BROKER_URL=url))
    assert proc.returncode == 2
    [line] = proc.stderr.decode().splitlines()
    assert line.startswith("dmp: DMP_BROKER_URL must be a Redis URL"), line
    assert "secret" not in line and proc.stdout == b""


def test_the_api_refuses_a_broker_url_it_cannot_use(work: Path) -> None:
    from dmp_cli import api
    from dmp_cli.errors import UsageError

    (work / "m").write_text(f"{sha(b'x')}  x\n")
    with pytest.raises(UsageError, match="broker_url must be a Redis URL"):
        api.check(str(work / "m"), broker_url="amqp://mq//")


def _checked(work: Path) -> None:
    (work / "a.txt").write_bytes(b"alpha\n")
    alpha = sha(b"alpha\n")
    (work / "m").write_text(f"{alpha}  a.txt\n{sha(b'x')}  gone.txt\n")


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (("--json",), ("--json",)),
        (("-q",), ("-q",)),
        (("-q",), ("--quiet",)),
        (("-j", "1", "-v"), ("-v", "--jobs", "1")),
        (("--json", "-q"), ("-q", "--json")),
    ],
    ids=["json", "q", "quiet", "jobs-verbose", "json-quiet"],
)
def test_global_options_mean_the_same_after_manifest(
    work: Path, before: tuple[str, ...], after: tuple[str, ...]
) -> None:
    _checked(work)
    first = dmp(*before, "manifest", "--check", "-m", "m", cwd=work)
    then = dmp("manifest", "--check", "-m", "m", *after, cwd=work)
    assert (untimed(then.stdout), untimed(then.stderr), then.returncode) == (
        untimed(first.stdout),
        untimed(first.stderr),
        first.returncode,
    )
    assert first.returncode == 1 and b"gone.txt" in first.stdout + first.stderr
    if "-q" in before:
        assert b"a.txt: OK" not in first.stdout  # sha256sum's --quiet: no OK lines


def test_the_last_of_quiet_status_and_warn_wins_wherever_quiet_is_given(work: Path) -> None:
    _checked(work)
    (work / "m").write_bytes((work / "m").read_bytes() + b"junk\n")
    proc = dmp("-q", "manifest", "--check", "-m", "m", "--warn", cwd=work)
    assert b"a.txt: OK\n" in proc.stdout  # --warn came last: OK lines again
    assert b"improperly formatted" in proc.stderr
    proc = dmp("manifest", "--check", "-m", "m", "--warn", "-q", cwd=work)
    assert b"a.txt: OK" not in proc.stdout


def test_quiet_applies_to_every_mode(work: Path) -> None:
    (work / "a.txt").write_bytes(b"alpha\n")
    proc = dmp("manifest", "--create", "a.txt", "--quiet", cwd=work)
    alpha = sha(b"alpha\n")
    assert proc.returncode == 0 and proc.stdout == f'{alpha}  "a.txt"\n'.encode()


@pytest.mark.parametrize("option", ["--json", "-q", "-v", "--profile"])
def test_a_global_option_after_a_command_without_it_says_where_it_goes(
    work: Path, option: str
) -> None:
    args = (option, "x") if option == "--profile" else (option,)
    proc = dmp("worker", *args, cwd=work, env=dmp_env(DMP_BROKER_URL="redis://127.0.0.1:1/0"))
    assert proc.returncode == 2
    assert proc.stderr.decode() == (
        f"dmp: worker has no {option} option; {option} is a global option: "
        f"dmp {option} worker ...\n"
    )


@pytest.mark.parametrize(
    ("queues", "named"),
    [
        ("dmp.hsh", "'dmp.hsh'"),
        ("dmp.hash\\x2cdmp.big", "(a comma escaped by systemd: the unit must pass %I)"),
        ("dmp.hash,", "''"),
    ],
    ids=["typo", "systemd-escaped", "empty"],
)
def test_a_worker_refuses_a_queue_nobody_sends_to(work: Path, queues: str, named: str) -> None:
    proc = dmp("worker", "--queues", queues, cwd=work, env=dmp_env(DMP_BROKER_URL="redis://x:1"))
    assert proc.returncode == 2
    [line] = proc.stderr.decode().splitlines()
    assert named in line
    assert "dmp.hash, dmp.transfer, dmp.big, dmp.coord" in line


def test_the_worker_knows_the_fleets_queues() -> None:
    from dmp_cli.cli.worker import KNOWN_QUEUES
    from dmp_tasks.config import QUEUES

    assert list(QUEUES) == KNOWN_QUEUES


CREATE_HERE = ("manifest", "--create", "--dir", ".")


def test_sigterm_to_the_whole_process_group_ends_quietly(tmp_path: Path) -> None:
    """`timeout`, a dropped session or a batch system signal the whole process group: the
    hashing processes end without a word, and dmp says once how it was stopped."""
    for i in range(64):
        (tmp_path / f"f{i:02}.txt").write_bytes(b"x" * i)
    plan = tmp_path / "plan.json"  # one file's hashing waits, so the hashers are busy
    plan.write_text(json.dumps({"target": "op.hash", "victim": "f63.txt", "delay": 60}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.faults", "-j", "2", *CREATE_HERE],
        cwd=tmp_path,
        env=dmp_env(DMP_TEST_FAULTS=str(plan), PYTHONPATH=REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(session_pids(proc.pid)) < 3:  # the CLI and its two hashers
            assert time.monotonic() < deadline, "the hashing processes did not start"
            time.sleep(0.1)
        time.sleep(1)
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert err == b"dmp: stopped by SIGTERM\n"
    assert proc.returncode == -signal.SIGTERM
