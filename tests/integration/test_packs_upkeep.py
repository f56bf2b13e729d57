"""`dmp vault compact` and `dmp vault leftovers` on a packing vault, as a user runs them:
compaction racing archive runs never hides a packed checksum, and a pack no index names
is listed, then removed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dmp_cli.packs.config import pack_key
from tests.integration.vaultkit import dmp, make_tree
from tests.servers import dmp_env

pytestmark = pytest.mark.integration


def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    """`dmp ARGS` in a process of its own (as concurrent runs are)."""
    return subprocess.run(
        [sys.executable, "-m", "dmp_cli", *args], cwd=cwd, env=env, capture_output=True, timeout=120
    )


def batch(root: Path, n: int) -> Path:
    """A directory of 30 small files, its manifest beside it."""
    files = {f"b{n}/f{i:02}": os.urandom(50 + 31 * i + n) for i in range(30)}
    manifest = make_tree(root, files)
    return manifest.rename(root / f"b{n}.sha256")


@pytest.fixture
def packing(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    vault = tmp_path / "vault"
    vault.mkdir()
    env = dmp_env(DMP_VAULT=f"file://{vault}")
    work = tmp_path / "work"
    work.mkdir()
    made = dmp("vault", "init", cwd=work, env=env)
    assert made.returncode == 0, made.stderr
    return work, vault, env


def test_compaction_racing_archive_runs_hides_no_packed_checksum(
    packing: tuple[Path, Path, dict[str, str]],
) -> None:
    work, vault, env = packing
    archived: list[Path] = []
    problems: list[str] = []
    merges: list[bytes] = []
    stop = threading.Event()

    def compactor() -> None:
        while not stop.is_set():
            done = cli("vault", "compact", cwd=work, env=env)
            if done.returncode != 0:
                problems.append(done.stderr.decode())
            elif b"merged into one" in done.stdout:
                merges.append(done.stdout)

    def checker() -> None:  # every checksum archived before stays found, all along
        while not stop.is_set():
            for manifest in list(archived):
                seen = cli("manifest", "--vault", "-q", "-m", manifest.name, cwd=work, env=env)
                if seen.returncode != 0:
                    problems.append(f"{manifest.name}: {seen.stdout!r} {seen.stderr!r}")

    threads = [threading.Thread(target=compactor), threading.Thread(target=checker)]
    for thread in threads:
        thread.start()
    try:
        for n in range(8):
            manifest = batch(work, n)
            run = cli("manifest", "--archive", "-m", manifest.name, cwd=work, env=env)
            assert run.returncode == 0, run.stderr
            archived.append(manifest)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert problems == []
    assert merges  # compaction did merge while archive runs and checks went on
    # The catalog is whole at the end too, and compacted once more, one object a shard.
    assert cli("vault", "compact", cwd=work, env=env).returncode == 0
    for shard in (vault / "index").iterdir():
        assert len(list(shard.iterdir())) == 1, sorted(p.name for p in shard.iterdir())
    for manifest in archived:
        seen = cli("manifest", "--vault", "-m", manifest.name, cwd=work, env=env)
        assert seen.returncode == 0 and b"NOT" not in seen.stdout


def test_a_pack_no_index_names_is_listed_and_removed(
    packing: tuple[Path, Path, dict[str, str]],
) -> None:
    work, vault, env = packing
    manifest = batch(work, 0)
    assert cli("manifest", "--archive", "-m", manifest.name, cwd=work, env=env).returncode == 0
    (kept,) = (vault / "packs").iterdir()
    # A pack stored by a process killed before its index objects: no index names it.
    stray = vault / pack_key("0" * 64)
    stray.write_bytes(kept.read_bytes())

    listed = cli("--json", "vault", "leftovers", cwd=work, env=env)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["key"] for r in rows if r["type"] == "pack"] == [pack_key("0" * 64)]
    assert rows[-1]["leftovers"] == 1 and rows[-1]["removed"] == 0

    young = cli("vault", "leftovers", "--remove", cwd=work, env=env)  # a day by default
    assert young.returncode == 0 and stray.exists()
    assert "younger than" in young.stderr.decode()

    removed = cli("vault", "leftovers", "--remove", "--older-than", "0", cwd=work, env=env)
    assert removed.returncode == 0, removed.stderr
    assert "removed 1 of 1 leftover pack" in removed.stderr.decode()
    assert not stray.exists() and kept.exists()
    seen = cli("manifest", "--vault", "-m", manifest.name, cwd=work, env=env)
    assert seen.returncode == 0 and b"NOT" not in seen.stdout


def test_upkeep_of_a_vault_without_a_config_is_a_usage_error(tmp_path: Path) -> None:
    env = dmp_env(DMP_VAULT=f"file://{tmp_path}")
    for command in (("compact",), ("leftovers",)):
        done = dmp("vault", *command, cwd=tmp_path, env=env)
        assert done.returncode == 2
        lines = done.stderr.decode().splitlines()
        assert len(lines) == 1 and "not a packing vault" in lines[0], lines
    assert os.listdir(tmp_path) == []  # nothing written
