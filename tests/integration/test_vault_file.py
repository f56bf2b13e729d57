"""`dmp manifest --vault/--archive/--fetch` on a file:// vault."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from dmp_cli.manifest import Entry, format_line
from tests.integration.manifest_helpers import without_pace, without_pace_fields
from tests.integration.vaultkit import (
    FILES,
    distinct,
    dmp,
    listing,
    make_tree,
    one_error,
    sha,
    stderr_lines,
    vault_path,
)
from tests.servers import dmp_env

pytestmark = pytest.mark.integration


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    vault = tmp_path / "vault"
    vault.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    make_tree(work)
    return work, vault, dmp_env(DMP_VAULT=f"file://{vault}")


def test_round_trip(site: tuple[Path, Path, dict[str, str]], tmp_path: Path) -> None:
    work, vault, env = site
    before = dmp("manifest", "--vault", "-m", "manifest.sha256", cwd=work, env=env)
    assert before.returncode == 0
    assert before.stdout.count(b": NOT in the vault\n") == len(FILES)
    assert any(
        "WARNING: 4 of 4 files are not in the vault" in line for line in stderr_lines(before)
    )

    archived = dmp("manifest", "--archive", "-m", "manifest.sha256", cwd=work, env=env)
    assert archived.returncode == 0, archived.stderr
    assert b"data/a.txt: uploaded (6 B)\n" in archived.stdout
    assert without_pace(stderr_lines(archived)[-1]) == (
        "dmp: 3 files (100.0 KiB) uploaded, 1 skipped as already archived, 0 failed"
    )
    assert len(listing(vault)) == distinct()
    for data in FILES.values():
        assert vault_path(vault, data).read_bytes() == data

    again = dmp("manifest", "--archive", "-m", "manifest.sha256", cwd=work, env=env)
    assert "dmp: 0 files (0 B) uploaded, 4 skipped" in again.stderr.decode()

    after = dmp("manifest", "--vault", "-m", "manifest.sha256", cwd=work, env=env)
    assert after.stdout.count(b": in the vault\n") == len(FILES)
    assert "WARNING" not in after.stderr.decode()

    target = tmp_path / "restore"
    target.mkdir()
    fetched = dmp("manifest", "--fetch", "-m", str(work / "manifest.sha256"), cwd=target, env=env)
    assert fetched.returncode == 0, fetched.stderr
    for name, data in FILES.items():
        assert (target / name).read_bytes() == data
    check = dmp("manifest", "--check", "-m", str(work / "manifest.sha256"), cwd=target, env=env)
    assert check.returncode == 0


def test_json_rows(site: tuple[Path, Path, dict[str, str]]) -> None:
    work, _, env = site
    result = dmp("--json", "manifest", "--archive", "-m", "manifest.sha256", cwd=work, env=env)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["type"] for r in rows] == ["file"] * len(FILES) + ["summary"]
    assert without_pace_fields(rows[-1]) | {"bytes": 0} == {
        "type": "summary",
        "files": 4,
        "uploaded": 3,
        "bytes": 0,
        "skipped": 1,
        "failed": 0,
        "dry_run": False,
        "misformatted": 0,
    }
    result = dmp("--json", "manifest", "--vault", "-m", "manifest.sha256", cwd=work, env=env)
    summary = json.loads(result.stdout.splitlines()[-1])
    assert (summary["present"], summary["missing"], summary["distinct"]) == (4, 0, 3)


def test_dry_runs_move_nothing(site: tuple[Path, Path, dict[str, str]], tmp_path: Path) -> None:
    work, vault, env = site
    result = dmp("manifest", "--archive", "--dry-run", "-m", "manifest.sha256", cwd=work, env=env)
    assert result.returncode == 0
    assert b"data/a.txt: would upload (6 B) to file://" in result.stdout
    assert "3 files (100.0 KiB) would be uploaded" in result.stderr.decode()
    assert listing(vault) == []
    dmp("manifest", "--archive", "-m", "manifest.sha256", cwd=work, env=env)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = dmp(
        "manifest", "--fetch", "-n", "-m", str(work / "manifest.sha256"), cwd=empty, env=env
    )
    assert result.returncode == 0
    assert "4 files (100.0 KiB) would be fetched" in result.stderr.decode()
    assert os.listdir(empty) == []


def test_changed_file_is_not_archived(site: tuple[Path, Path, dict[str, str]]) -> None:
    work, vault, env = site
    (work / "data/sub/b.bin").write_bytes(b"edited since")
    result = dmp("manifest", "--archive", "-m", "manifest.sha256", cwd=work, env=env)
    assert result.returncode == 1
    errors = [line for line in stderr_lines(result) if "b.bin" in line]
    assert len(errors) == 1 and "changed since the manifest was made" in errors[0]
    assert not vault_path(vault, FILES["data/sub/b.bin"]).exists()
    assert not vault_path(vault, b"edited since").exists()
    assert "1 failed" in stderr_lines(result)[-1]


def test_fetch_errors(site: tuple[Path, Path, dict[str, str]], tmp_path: Path) -> None:
    work, vault, env = site
    dmp("manifest", "--archive", "-m", "manifest.sha256", cwd=work, env=env)
    vault_path(vault, FILES["data/sub/b.bin"]).unlink()
    (work / "data/sub/b.bin").unlink()
    (work / "data/a.txt").write_bytes(b"local edit\n")
    result = dmp("manifest", "--fetch", "-m", "manifest.sha256", cwd=work, env=env)
    assert result.returncode == 1
    lines = stderr_lines(result)
    assert any(
        "data/a.txt: exists with another checksum" in line and "--overwrite" in line
        for line in lines
    )
    assert "dmp: data/sub/b.bin: not in the vault" in lines
    assert (work / "data/a.txt").read_bytes() == b"local edit\n"
    result = dmp("manifest", "--fetch", "--overwrite", "-m", "manifest.sha256", cwd=work, env=env)
    assert result.returncode == 1  # b.bin is still missing from the vault
    assert (work / "data/a.txt").read_bytes() == FILES["data/a.txt"]


def test_fetch_refuses_unsafe_paths(
    site: tuple[Path, Path, dict[str, str]], tmp_path: Path
) -> None:
    work, _vault, env = site
    dmp("manifest", "--archive", "-m", "manifest.sha256", cwd=work, env=env)
    digest = sha(FILES["data/a.txt"])
    outside = tmp_path / "outside"
    outside.mkdir()
    manifest = tmp_path / "evil.sha256"
    manifest.write_text(
        f'{digest}  "{outside}/abs.txt"\n{digest}  "../escape.txt"\n{digest}  "link/through.txt"\n'
    )
    target = tmp_path / "target"
    target.mkdir()
    os.symlink(outside, target / "link")
    result = dmp("manifest", "--fetch", "-m", str(manifest), cwd=target, env=env)
    assert result.returncode == 1
    text = result.stderr.decode()
    assert "absolute path refused (use --absolute-names" in text
    assert "'..' leaves the working directory" in text
    assert "link is a symbolic link; dmp does not write through it" in text
    assert os.listdir(outside) == [] and not (tmp_path / "escape.txt").exists()
    result = dmp(
        "manifest", "--fetch", "--absolute-names", "-m", str(manifest), cwd=target, env=env
    )
    assert (outside / "abs.txt").exists() and (tmp_path / "escape.txt").exists()
    assert not (outside / "through.txt").exists()  # never through a link, even so
    assert result.returncode == 1


def test_archive_with_path_on_a_file_vault(
    site: tuple[Path, Path, dict[str, str]], tmp_path: Path
) -> None:
    work, vault, env = site
    dest = tmp_path / "dest"
    result = dmp(
        "manifest",
        "--archive",
        "--path",
        f"file://{dest}/run1",
        "-m",
        "manifest.sha256",
        cwd=work,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert (dest / "run1/data/sub/b.bin").read_bytes() == FILES["data/sub/b.bin"]
    assert len(listing(vault)) == distinct()
    result = dmp(
        "manifest",
        "--archive",
        "--all",
        "--path",
        f"file://{dest}/run1",
        "-m",
        "manifest.sha256",
        cwd=work,
        env=env,
    )
    assert result.returncode == 0
    assert len(listing(dest / "run1")) == len(FILES)
    assert "1 file (6 B) uploaded, 3 skipped" in stderr_lines(result)[-1]


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["--archive", "--all"], 2, "--all needs --path"),
        (["--archive", "--path", "s3://bucket/p"], 2, "another kind of store"),
        (["--archive", "--path", "ftp://x/y"], 2, "not an s3://bucket/prefix or file:///dir URL"),
        (["--fetch", "--path", "s3://b/p"], 2, "--path does not apply to --fetch"),
        (["--vault", "--overwrite"], 2, "--overwrite does not apply to --vault"),
    ],
    ids=[
        "all-without-path",
        "path-other-kind",
        "path-bad-url",
        "path-on-fetch",
        "overwrite-on-vault",
    ],
)
def test_usage_errors(
    site: tuple[Path, Path, dict[str, str]], args: list[str], code: int, text: str
) -> None:
    work, _, env = site
    one_error(dmp("manifest", *args, "-m", "manifest.sha256", cwd=work, env=env), code, text)


@pytest.mark.parametrize("mode", ["--vault", "--archive", "--fetch"])
def test_missing_manifest(site: tuple[Path, Path, dict[str, str]], mode: str) -> None:
    work, _, env = site
    one_error(
        dmp("manifest", mode, "-m", "nope.sha256", cwd=work, env=env),
        1,
        "nope.sha256: No such file or directory",
    )


@pytest.mark.parametrize("mode", ["--vault", "--archive", "--fetch"])
def test_missing_vault_directory(
    site: tuple[Path, Path, dict[str, str]], tmp_path: Path, mode: str
) -> None:
    work, _, env = site
    env = {**env, "DMP_VAULT": f"file://{tmp_path}/absent"}
    one_error(
        dmp("manifest", mode, "-m", "manifest.sha256", cwd=work, env=env),
        1,
        "absent: no such directory",
    )


def test_manifest_without_entries(site: tuple[Path, Path, dict[str, str]]) -> None:
    work, _, env = site
    (work / "junk").write_text("not a manifest line\n")
    one_error(
        dmp("manifest", "--vault", "-m", "junk", cwd=work, env=env),
        1,
        "junk: no properly formatted SHA256 checksum lines found",
    )


def test_improperly_formatted_lines(site: tuple[Path, Path, dict[str, str]]) -> None:
    work, _, env = site
    manifest = work / "manifest.sha256"
    manifest.write_bytes(manifest.read_bytes() + b"not a checksum line\n")
    result = dmp("manifest", "--vault", "-m", "manifest.sha256", cwd=work, env=env)
    assert result.returncode == 0
    assert "dmp: WARNING: 1 line is improperly formatted" in stderr_lines(result)
    strict = dmp("manifest", "--vault", "--strict", "-m", "manifest.sha256", cwd=work, env=env)
    assert strict.returncode == 1
    archived = dmp("manifest", "--archive", "-m", "manifest.sha256", cwd=work, env=env)
    assert archived.returncode == 1  # a line that names no file is a file not archived
    assert "dmp: WARNING: 1 line is improperly formatted (skipped)" in stderr_lines(archived)


def test_a_copy_stands_in_for_a_changed_first_file(site: tuple[Path, Path, dict[str, str]]) -> None:
    work, vault, env = site
    (work / "data/a.txt").write_bytes(b"edited\n")
    result = dmp("-q", "manifest", "--archive", "-m", "manifest.sha256", cwd=work, env=env)
    assert result.returncode == 1
    assert result.stdout == b""  # -q: errors only
    [error] = stderr_lines(result)
    assert error.startswith("dmp: data/a.txt: changed since the manifest was made")
    # 'copy of a.txt' has the content the manifest names: it is archived instead.
    assert vault_path(vault, FILES["data/a.txt"]).read_bytes() == FILES["data/a.txt"]


def _on_a_terminal(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, bytes]:
    """Run dmp with stderr on a pseudo-terminal (so it draws its progress bar)."""
    import fcntl
    import pty
    import struct
    import subprocess
    import sys
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a size
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dmp_cli", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=slave,
        )
        os.close(slave)
        drawn = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the other end closed: the process is done
                break
            if not chunk:
                break
            drawn += chunk
        return proc.wait(timeout=120), drawn
    finally:
        os.close(master)


def test_progress_shows_bytes_while_a_big_file_moves(tmp_path: Path) -> None:
    """One huge file must not look stuck: the bar counts its bytes before it is done."""
    big = os.urandom(1 << 20) * 24
    (tmp_path / "big.bin").write_bytes(big)
    manifest = format_line(Entry(sha(big), "big.bin"))
    (tmp_path / "m.sha256").write_bytes(manifest)
    (tmp_path / "vault").mkdir()
    env = dmp_env(DMP_VAULT=f"file://{tmp_path / 'vault'}", TERM="xterm")
    status, drawn = _on_a_terminal(["manifest", "--archive", "-m", "m.sha256"], tmp_path, env)
    assert status == 0, drawn
    frames = drawn.replace(b"\r", b"\n").split(b"\n")
    # A bar of bytes (the plan knows the file's size): some of its 24 MiB counted
    # while the one file is not done.
    moving = re.compile(rb"\| *[1-9][\d.]*[kM]/24\.0M .*0/1 files")
    assert any(moving.search(frame) for frame in frames), drawn
