"""--vault and --archive of a manifest that repeats content, with the checksums met and
the first rows kept on disk past a tiny bound (``DMP_DEDUPE_SPILL``): the same output as
in memory, row for row, and nothing left in the temporary directory."""

from __future__ import annotations

import gc
import json
import shutil
import tempfile
from pathlib import Path

import pytest

from dmp_cli.manifest import Entry, format_line
from dmp_cli.runs import seen
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


def test_a_spilled_run_leaves_no_table_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work, vault = tmp_path / "work", tmp_path / "vault"
    work.mkdir()
    vault.mkdir()
    site(work)
    made: list[str] = []
    real = tempfile.mkdtemp

    def mkdtemp(prefix: str) -> str:
        made.append(real(prefix=prefix, dir=tmp_path))
        return made[-1]

    monkeypatch.setattr(seen.tempfile, "mkdtemp", mkdtemp)
    env = dmp_env(DMP_VAULT=f"file://{vault}", DMP_DEDUPE_SPILL="3")
    result = dmp("manifest", "--archive", "-m", "manifest.sha256", cwd=work, env=env)
    assert result.returncode == 1, result.stderr.decode()  # the gone files
    gc.collect()
    assert len(made) == 2  # the reader's checksums met, the tally's first rows
    assert not any(Path(path).exists() for path in made)
