"""The checksum file an --archive writes beside a manifest's companion (``M.meta.sha256``)
is the same whichever path names the manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.vaultkit import dmp, make_tree
from tests.servers import dmp_env

pytestmark = pytest.mark.integration


def test_the_manifest_named_by_another_path_finds_its_checksum_file(tmp_path: Path) -> None:
    vault, work = tmp_path / "vault", tmp_path / "work"
    vault.mkdir()
    work.mkdir()
    make_tree(work, {"a": b"alpha\n", "b/c": b"gamma\n"})
    env = dmp_env(DMP_VAULT=f"file://{vault}")
    made = dmp("manifest", "--create", "--dir", ".", "-r", "-m", "m.sha256", cwd=work, env=env)
    assert made.returncode == 0, made.stderr
    first = dmp("manifest", "--archive", "-m", "m.sha256", cwd=work, env=env)
    assert first.returncode == 0, first.stderr
    written = (work / "m.sha256.meta.sha256").read_bytes()

    # The same manifest by its absolute path, then from another directory.
    for cwd, name in ((work, str(work / "m.sha256")), (tmp_path, "work/m.sha256")):
        again = dmp("manifest", "--archive", "-m", name, cwd=cwd, env=env)
        assert again.returncode == 0, again.stderr
        assert "another content" not in again.stderr.decode()
        assert "already archived as" in again.stderr.decode()
        assert (work / "m.sha256.meta.sha256").read_bytes() == written

    # A checksum file that names other content is still left alone, and said.
    (work / "m.sha256.meta.sha256").write_bytes(b"0" * 64 + b'  "m.sha256.meta"\n')
    other = dmp("manifest", "--archive", "-m", "m.sha256", cwd=work, env=env)
    assert "already exists with another content; left untouched" in other.stderr.decode()
    assert (work / "m.sha256.meta.sha256").read_bytes() == b"0" * 64 + b'  "m.sha256.meta"\n'
