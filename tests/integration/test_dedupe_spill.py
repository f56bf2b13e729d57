"""--vault and --archive of a manifest that repeats content, with the checksums met and
the first rows kept on disk past a tiny bound (``DMP_DEDUPE_SPILL``): the same output as
in memory, row for row, and nothing in the temporary directory, even on ^C."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dmp_cli.manifest import Entry, format_line
from tests.integration.manifest_helpers import untimed
from tests.integration.vaultkit import dmp, sha, small_tree
from tests.servers import dmp_env

pytestmark = pytest.mark.integration


def site(root: Path) -> Path:
    """A tree of 120 files and a manifest naming each content up to four times; some
    content first under a name that no longer exists, its copies still there."""
    files = small_tree(120, seed=21)
    lines = []
    for number, (name, data) in enumerate(sorted(files.items())):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if number % 10 == 0:  # the first file of this content is gone
            lines.append(format_line(Entry(sha(data), f"gone/{number}")))
        lines.append(format_line(Entry(sha(data), name)))
        for copy in range(number % 4):
            (root / f"{name}.{copy}").write_bytes(data)
            lines.append(format_line(Entry(sha(data), f"{name}.{copy}")))
    manifest = root / "manifest.sha256"
    manifest.write_bytes(b"".join(lines))
    return manifest


def runs(work: Path, vault: Path, temp: Path, **more: str) -> list[bytes]:
    """--archive (rows in JSON), --vault with -v and in JSON, into a fresh vault: their
    outputs, the time taken out."""
    shutil.rmtree(vault, ignore_errors=True)
    vault.mkdir()
    env = dmp_env(DMP_VAULT=f"file://{vault}", TMPDIR=str(temp), **more)
    outputs = []
    for args in (
        ["--json", "manifest", "--archive", "-m", "manifest.sha256"],
        ["-v", "manifest", "--vault", "-m", "manifest.sha256"],
        ["--json", "manifest", "--vault", "-m", "manifest.sha256"],
    ):
        result = dmp(*args, cwd=work, env=env, subprocess=True)
        outputs.append(untimed(result.stdout) + b"--\n" + untimed(result.stderr))
        outputs.append(str(result.returncode).encode())
    return outputs


def test_spilled_runs_give_the_output_of_runs_in_memory(tmp_path: Path) -> None:
    work, temp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    temp.mkdir()
    site(work)
    kept = runs(work, tmp_path / "vault", temp)
    spilled = runs(work, tmp_path / "vault", temp, DMP_DEDUPE_SPILL="3")
    assert spilled == kept
    assert list(temp.iterdir()) == []
    rows = [json.loads(line) for line in kept[0].split(b"--\n")[0].splitlines()]
    by_path = {row["path"]: row for row in rows if row.get("type") != "summary"}
    # The copy of content whose first file is gone was uploaded; the other copies were
    # answered from their first file's row.
    assert (by_path["gone/0"]["status"], by_path["copies/c0"]["status"]) == (
        "missing",
        "uploaded",
    )
    statuses = [row["status"] for path, row in by_path.items() if path[-2:-1] == "."]
    assert statuses.count("skipped") == len(statuses) > 100


def tables(pid: int) -> int:
    """The sqlite temporary files process ``pid`` holds open (unlinked once opened)."""
    fds = f"/proc/{pid}/fd"
    names = []
    for fd in os.listdir(fds):
        try:
            names.append(os.readlink(os.path.join(fds, fd)))
        except OSError:
            pass
    return sum(1 for name in names if "etilqs_" in name)


@pytest.mark.parametrize("signal", [2, 15])  # ^C, and SIGTERM (`timeout`, `kill`)
def test_an_interrupted_run_leaves_no_table_behind(tmp_path: Path, signal: int) -> None:
    """A --vault reading its manifest from stdin, stopped once both tables are on disk
    while it waits for more lines: their files were never in the temporary directory."""
    temp, vault = tmp_path / "tmp", tmp_path / "vault"
    temp.mkdir()
    vault.mkdir()
    env = dmp_env(
        DMP_VAULT=f"file://{vault}",
        TMPDIR=str(temp),
        DMP_DEDUPE_SPILL="3",
        DMP_DEDUPE_CACHE_KIB="16",  # the tables reach their files soon
        DMP_VAULT_PLANNING="head",
    )
    lines = b"".join(format_line(Entry(sha(b"%d" % (n % 2500)), f"f{n}")) for n in range(3000))
    with subprocess.Popen(
        [sys.executable, "-m", "dmp_cli", "manifest", "--vault", "-m", "-"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdin is not None
        proc.stdin.write(lines)
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        while tables(proc.pid) < 2:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        assert list(temp.iterdir()) == []
        proc.send_signal(signal)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal, err.decode()
    assert b"Traceback" not in err
    assert list(temp.iterdir()) == []
