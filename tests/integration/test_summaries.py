"""Summaries end with the time taken and the rates, in text and in JSON; --log-file
keeps every line, stamped, whatever -q, --status or --json keep from the terminal."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dmp_cli.checking import PIECE_BYTES
from tests.integration.manifest_helpers import PACE, PACE_FIELDS, without_pace
from tests.integration.vaultkit import FILES, dmp, make_tree, one_error, sha, stderr_lines
from tests.servers import dmp_env

pytestmark = pytest.mark.integration

# A log line: its time (ISO 8601, UTC, milliseconds), dmp's process id, then the line.
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[(\d+)\] (.*)$")


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A tree with its manifest, and the environment of a file:// vault."""
    (tmp_path / "vault").mkdir()
    work = tmp_path / "work"
    work.mkdir()
    make_tree(work)
    return work, dmp_env(DMP_VAULT=f"file://{tmp_path / 'vault'}")


def logged(path: Path) -> list[str]:
    """The log's lines without their stamps, each of which must be there."""
    lines = []
    for line in path.read_bytes().decode("utf-8", "surrogateescape").splitlines():
        match = STAMP.match(line)
        assert match, f"not a stamped line: {line!r}"
        lines.append(match.group(2))
    return lines


# ---------------------------------------------------------------- summaries


def test_every_summary_line_ends_with_the_time_and_the_rates(
    site: tuple[Path, dict[str, str]],
) -> None:
    work, env = site
    n = len(FILES)
    m = ("-m", "manifest.sha256")
    kib = r"[\d.]+ KiB"
    steps = [
        (["-v", "manifest", "--create", "--dir", "data", "-r"], rf"dmp: {n} files, {kib} hashed"),
        (["-v", "manifest", "--check", *m], rf"dmp: {n} files checked \({n} OK\), {kib} read"),
        (
            ["manifest", "--vault", *m],
            rf"dmp: {n} files, 3 distinct checksums: 0 in the vault, {n} missing, 0 failed",
        ),
        (
            ["manifest", "--archive", *m, "-n"],
            rf"dmp: 3 files \({kib}\) would be uploaded, 1 skipped as already archived, 0 failed",
        ),
        (
            ["manifest", "--archive", *m],
            rf"dmp: 3 files \({kib}\) uploaded, 1 skipped as already archived, 0 failed",
        ),
        (
            ["manifest", "--fetch", *m],
            rf"dmp: 0 files \(0 B\) fetched, {n} already present, 0 failed",
        ),
    ]
    for args, text in steps:
        result = dmp(*args, cwd=work, env=env)
        assert result.returncode == 0, result.stderr
        last = stderr_lines(result)[-1]
        assert re.fullmatch(text, without_pace(last)), last
        rates = PACE.search(last)
        assert rates and ("B/s" in rates.group(0)) == ("--vault" not in args and "-n" not in args)


def test_check_says_nothing_more_than_sha256sum_unless_asked(
    site: tuple[Path, dict[str, str]],
) -> None:
    """sha256sum prints no summary: --check's own (time, rates) is for -v and the log."""
    work, env = site
    (work / "data" / "a.txt").write_bytes(b"changed\n")
    quiet = dmp("manifest", "--check", "-m", "manifest.sha256", cwd=work, env=env)
    assert quiet.stderr == b"dmp: WARNING: 1 computed checksum did NOT match\n"
    told = dmp("-v", "manifest", "--check", "-m", "manifest.sha256", cwd=work, env=env)
    assert told.returncode == 1 and told.stdout == quiet.stdout
    warning, summary = stderr_lines(told)
    assert warning == "dmp: WARNING: 1 computed checksum did NOT match"
    assert without_pace(summary).startswith("dmp: 4 files checked (3 OK, 1 FAILED), ")
    args = ("-v", "manifest", "--check", "--status", "-m", "manifest.sha256")
    status = dmp(*args, cwd=work, env=env)
    assert (status.returncode, status.stdout, status.stderr) == (1, b"", b"")


@pytest.mark.parametrize(
    ("args", "moves_bytes"),
    [
        (["manifest", "--create", "--dir", "data", "-r"], True),
        (["manifest", "--check", "-m", "manifest.sha256"], True),
        (["manifest", "--vault", "-m", "manifest.sha256"], False),
        (["manifest", "--archive", "-m", "manifest.sha256", "--dry-run"], False),
        (["manifest", "--archive", "-m", "manifest.sha256"], True),
    ],
    ids=["create", "check", "vault", "dry-run", "archive"],
)
def test_json_summaries_carry_the_time_and_the_rates(
    site: tuple[Path, dict[str, str]], args: list[str], moves_bytes: bool
) -> None:
    work, env = site
    result = dmp("--json", *args, cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["type"] == "summary"
    fields = [key for key in PACE_FIELDS if key in summary]
    assert fields == (list(PACE_FIELDS) if moves_bytes else list(PACE_FIELDS[:2]))
    assert summary["seconds"] > 0 and summary["files_per_second"] > 0
    if moves_bytes:  # the rate of the bytes the summary counts (its seconds rounded)
        seconds = summary["seconds"]
        slowest, fastest = (summary["bytes"] / (seconds + d) for d in (0.0005, -0.0005))
        assert slowest - 1 <= summary["bytes_per_second"] <= fastest


# ---------------------------------------------------------------- the log


def test_the_log_keeps_what_status_hides(site: tuple[Path, dict[str, str]]) -> None:
    work, env = site
    (work / "data" / "a.txt").write_bytes(b"changed\n")
    (work / "data" / "sub" / "b.bin").unlink()
    log = work.parent / "check.log"
    args = ["manifest", "--check", "--status", "-m", "manifest.sha256", "--log-file", str(log)]
    result = dmp(*args, cwd=work, env=env)
    assert (result.returncode, result.stdout) == (1, b"")
    assert result.stderr == b"dmp: data/sub/b.bin: No such file or directory\n"
    lines = logged(log)
    assert lines[0] == "dmp: started dmp " + " ".join(args)
    assert lines[1:-2] == [
        "data/a.txt: FAILED",
        "data/copy of a.txt: OK",
        "dmp: data/sub/b.bin: No such file or directory",
        "data/sub/b.bin: FAILED open or read",
        '\\data/odd "name"\\n.txt: OK',
        "dmp: WARNING: 1 listed file could not be read",
        "dmp: WARNING: 1 computed checksum did NOT match",
    ]
    summary = without_pace(lines[-2])
    assert summary.startswith("dmp: 4 files checked (2 OK, 1 FAILED, 1 could not be read), ")
    assert lines[-1] == "dmp: exit status 1"


def test_the_log_keeps_what_quiet_hides_and_appends(site: tuple[Path, dict[str, str]]) -> None:
    work, env = site
    (work / "data" / "a.txt").write_bytes(b"changed since\n")  # its copy stands in for it
    (work / "data" / "sub" / "b.bin").unlink()
    log = work / "run.log"
    env = {**env, "DMP_LOG_FILE": str(log)}
    first = dmp("-q", "manifest", "--archive", "-m", "manifest.sha256", cwd=work, env=env)
    assert (first.returncode, first.stdout) == (1, b"")
    errors = stderr_lines(first)  # -q: the failures only
    assert [line.split(": ")[1] for line in errors] == ["data/a.txt", "data/sub/b.bin"]
    again = dmp("--json", "manifest", "--vault", "-m", "manifest.sha256", cwd=work, env=env)
    assert again.returncode == 0
    lines = logged(log)
    starts = [i for i, line in enumerate(lines) if line.startswith("dmp: started ")]
    assert starts == [0, 7]  # two runs, one after the other
    archived, asked = lines[:7], lines[7:]
    assert archived[1:-2] == [
        *errors,
        "'data/odd \"name\"'$'\\n''.txt': uploaded (7 B)",
        "'data/copy of a.txt': uploaded (6 B)",  # in place of the changed a.txt
    ]
    assert without_pace(archived[-2]) == (
        "dmp: 2 files (13 B) uploaded, 0 skipped as already archived, 2 failed"
    )
    assert archived[-1] == "dmp: exit status 1"
    # --json: JSON on stdout, the same lines as ever in the log
    assert "'data/copy of a.txt': in the vault" in asked
    assert not any("{" in line for line in asked)
    assert PACE.search(asked[-2]) and asked[-1] == "dmp: exit status 0"


def test_create_logs_the_manifest_lines_it_writes(site: tuple[Path, dict[str, str]]) -> None:
    work, env = site
    log = work / "create.log"
    args = ("manifest", "--create", "data/a.txt", "-m", "a.sha", "--log-file", str(log))
    result = dmp(*args, cwd=work, env=env)
    assert (result.returncode, result.stderr) == (0, b"")  # as quiet as sha256sum
    lines = logged(log)
    assert lines[1] == (work / "a.sha").read_text().rstrip("\n")
    assert without_pace(lines[2]) == "dmp: 1 file, 6 B hashed"
    assert sha(FILES["data/a.txt"]) in lines[1]


def test_a_log_inside_the_tree_is_not_in_its_manifest(site: tuple[Path, dict[str, str]]) -> None:
    """It changes as the run goes: its checksum would be stale at once."""
    work, env = site
    env = {**env, "DMP_LOG_FILE": "data/run.log"}
    args = ("manifest", "--create", "--dir", "data", "-r", "-m", "data.sha")
    created = dmp(*args, cwd=work, env=env)
    assert created.returncode == 0 and (work / "data" / "run.log").stat().st_size > 0
    assert b"run.log" not in (work / "data.sha").read_bytes()
    checked = dmp("manifest", "--check", "-m", "data.sha", cwd=work, env=env)
    assert checked.returncode == 0 and checked.stdout.count(b": OK\n") == len(FILES)


@pytest.mark.parametrize("where", ["before", "after", "env"])
@pytest.mark.parametrize("bad", ["missing-dir", "a-directory"])
def test_a_log_that_cannot_be_opened_is_a_usage_error_before_any_work(
    site: tuple[Path, dict[str, str]], where: str, bad: str
) -> None:
    work, env = site
    path = str(work / "no" / "such.log") if bad == "missing-dir" else str(work)
    args = ["manifest", "--create", "data/a.txt", "-m", "new.sha"]
    if where == "before":
        args = ["--log-file", path, *args]
    elif where == "after":
        args = [*args, "--log-file", path]
    else:
        env = {**env, "DMP_LOG_FILE": path}
    result = dmp(*args, cwd=work, env=env)
    reason = "No such file or directory" if bad == "missing-dir" else "Is a directory"
    one_error(result, 2, f"cannot open the log file {path}")
    assert stderr_lines(result)[0].endswith(reason)
    assert ("DMP_LOG_FILE" in result.stderr.decode()) == (where == "env")
    assert not (work / "new.sha").exists()


def test_a_run_killed_leaves_a_log_of_what_it_had_done(tmp_path: Path) -> None:
    """The log is flushed while the run waits (here on a FIFO no one writes), so a
    run killed then has its finished files in the log, and no exit status."""
    many = 600  # more than a piece: the first piece's rows come back, the second waits
    lines = []
    for i in range(many):
        (tmp_path / f"f{i:03}").write_bytes(b"%d" % i)
        lines.append(f"{sha(b'%d' % i)}  f{i:03}\n")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "m").write_text("".join(lines) + f"{sha(b'')}  fifo\n")
    # The manifest is checked a piece of lines at a time, each cut where a line ends
    # after PIECE_BYTES: the first piece is done, the second waits on the FIFO.
    text = (tmp_path / "m").read_bytes()
    first = text[: text.index(b"\n", PIECE_BYTES)].count(b"\n") + 1
    assert 0 < first < many
    log = tmp_path / "killed.log"
    args = ["-j", "1", "--log-file", str(log), "manifest", "--check", "-q", "-m", "m"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "dmp_cli", *args],
        cwd=tmp_path,
        env=dmp_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while f"f{first - 1:03}: OK" not in (log.read_text() if log.exists() else ""):
            assert proc.poll() is None and time.monotonic() < deadline, "no log of the piece"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    lines = logged(log)
    assert lines[0].startswith("dmp: started dmp -j 1 --log-file")
    assert lines[1:] == [f"f{i:03}: OK" for i in range(first)]  # and no exit status
