"""A pack is a plain tar: GNU tar lists exactly its members, and extracting it gives a
directory that is a file:// vault for them, as dmp's own store and `dmp manifest --fetch`
(a real process) read it."""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
from pathlib import Path

import pytest

from dmp_cli.layout import digest_key
from dmp_cli.manifest import Entry, format_line
from dmp_cli.packs.pack import Pack, Source, write_pack
from dmp_cli.store import Vault
from dmp_cli.store.local import FileStore
from tests.servers import dmp_env, run_dmp

pytestmark = pytest.mark.integration  # GNU tar and dmp run as processes of their own

TREE = {
    "empty": b"",
    "one": b"1",
    "dup/a": b"the same bytes",
    "dup/b": b"the same bytes",
    "new\nline": b"a file whose name holds a newline",
    "just under a block": b"u" * 511,
    "a block": b"b" * 512,
    "big": bytes(range(256)) * 4000,
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def packed(tmp_path: Path) -> tuple[Path, Pack]:
    tree = tmp_path / "tree"
    sources = []
    for name, data in TREE.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
        sources.append(Source(sha(data), len(data), str(tree / name)))
    spool = tmp_path / "pack.tar"
    with open(spool, "w+b") as out:
        pack = write_pack(sources, out)
    assert pack.refused == []
    return spool, pack


def test_tar_lists_exactly_the_members(tmp_path: Path) -> None:
    spool, pack = packed(tmp_path)
    listed = subprocess.run(["tar", "-tvf", str(spool)], capture_output=True, check=True)
    assert listed.stderr == b""
    rows = listed.stdout.decode().splitlines()
    expected = sorted({sha(d): len(d) for d in TREE.values()}.items())
    assert len(rows) == len(expected) == len(pack.members)
    for row, (digest, size) in zip(rows, expected, strict=True):
        match = re.fullmatch(r"-rw-r--r-- 0/0 +(\d+) 1970-01-01 00:00 (\S+)", row)
        assert match, row
        assert (int(match.group(1)), match.group(2)) == (size, digest_key(digest))


def test_tar_extracts_a_file_vault(tmp_path: Path) -> None:
    spool, _ = packed(tmp_path)
    root = tmp_path / "vault"
    root.mkdir()
    done = subprocess.run(["tar", "-xf", str(spool), "-C", str(root)], capture_output=True)
    assert (done.returncode, done.stderr) == (0, b"")
    vault = Vault(FileStore(str(root)))
    listed = sorted(d for prefix in "0123456789abcdef" for d in vault.listing(prefix))
    assert listed == sorted({sha(d): len(d) for d in TREE.values()}.items())
    for data in TREE.values():
        out = io.BytesIO()
        vault.get_file(sha(data), out)
        assert out.getvalue() == data


def test_dmp_fetches_from_an_extracted_pack(tmp_path: Path) -> None:
    spool, _ = packed(tmp_path)
    root = tmp_path / "vault"
    root.mkdir()
    subprocess.run(["tar", "-xf", str(spool), "-C", str(root)], check=True)
    manifest = tmp_path / "m.sha256"
    manifest.write_bytes(b"".join(format_line(Entry(sha(d), n)) for n, d in TREE.items()))
    target = tmp_path / "target"
    target.mkdir()
    env = dmp_env(DMP_VAULT=f"file://{root}")
    result = run_dmp(
        "manifest", "--fetch", "-m", str(manifest), cwd=target, env=env, subprocess=True
    )
    assert result.returncode == 0, result.stderr
    fetched = {
        p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()
    }
    assert fetched == TREE
