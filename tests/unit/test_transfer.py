"""The vault's per-file operations, on file:// stores in tmp_path."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dmp_cli.fsutil import target_parts
from dmp_cli.layout import digest_key
from dmp_cli.ops import Context, run_batch
from dmp_cli.options import Options, StoreSpec, Work
from dmp_cli.store import StorePool
from dmp_cli.store.local import FileStore
from dmp_cli.transfer import PathRefused, path_key


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "vault").mkdir()
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path


def config(work: Path, **flags: Any) -> dict[str, Any]:
    return {"vault": f"file://{work / 'vault'}", **flags}


def put(work: Path, data: bytes) -> str:
    digest = sha(data)
    target = work / "vault" / digest_key(digest)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return digest


def run(op: str, items: list[dict[str, Any]], cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Run a batch with the stores and options that ``cfg`` names (in one flat dict)."""
    spec = StoreSpec(**{k: v for k, v in cfg.items() if k in ("vault", "dest")})
    options = Options(**{k: v for k, v in cfg.items() if k not in ("vault", "dest")})
    stores = StorePool()
    try:
        return run_batch(Work.of(op, spec, options), items, stores)  # type: ignore[arg-type, return-value]
    finally:
        stores.close()


# ---------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("a/b/c", ["a", "b", "c"]),
        ("./a//b/../c", ["a", "c"]),
        ("x", ["x"]),
    ],
    ids=["plain", "normalised", "bare"],
)
def test_target_parts(path: str, parts: list[str]) -> None:
    assert target_parts(path, absolute_names=False) == parts


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "../x", "a/../../x", "..", "a/.."],
    ids=["absolute", "dotdot", "escaping", "parent", "no-name"],
)
def test_target_parts_refused(path: str) -> None:
    with pytest.raises(PathRefused):
        target_parts(path, absolute_names=False)


def test_absolute_names_allow() -> None:
    assert target_parts("/tmp/x", absolute_names=True) == ["/", "tmp", "x"]
    assert target_parts("../x", absolute_names=True) == ["..", "x"]


@pytest.mark.parametrize(
    ("path", "key"),
    [("a/b", "a/b"), ("/abs/x", "abs/x"), ("./a/./b", "a/b")],
    ids=["relative", "absolute", "dots"],
)
def test_path_key(path: str, key: str) -> None:
    assert path_key(path) == key


@pytest.mark.parametrize("path", ["../x", "bad\udcff"], ids=["escaping", "not-utf8"])
def test_path_key_refused(path: str) -> None:
    with pytest.raises(PathRefused):
        path_key(path)


# ---------------------------------------------------------------- head


def test_head(work: Path) -> None:
    here = put(work, b"here")
    rows = run(
        "head",
        [
            {"digest": here, "path": "a"},
            {"digest": sha(b"gone"), "path": "b"},
            {"digest": here, "path": "c", "same": True},
        ],
        config(work),
    )
    assert [r["status"] for r in rows] == ["present", "missing", "same"]
    assert rows[0]["bytes"] == 4


def test_head_fatal_store(work: Path) -> None:
    [row] = run(
        "head", [{"digest": sha(b"x"), "path": "a"}], {"vault": f"file://{work / 'absent'}"}
    )
    assert row["status"] == "missing"  # a file vault's absence is found by check(), once


# ---------------------------------------------------------------- upload


def test_upload_then_skip(work: Path) -> None:
    Path("f").write_bytes(b"data")
    item = {"path": "f", "digest": sha(b"data"), "size": 4}
    [row] = run("upload", [item], config(work))
    assert (row["status"], row["bytes"]) == ("uploaded", 4)
    assert (work / "vault" / digest_key(sha(b"data"))).read_bytes() == b"data"
    [row] = run("upload", [item], config(work))
    assert (row["status"], row["bytes"]) == ("skipped", 0)


def test_upload_changed_file_fails_and_stores_nothing(work: Path) -> None:
    Path("f").write_bytes(b"changed")
    [row] = run("upload", [{"path": "f", "digest": sha(b"data"), "size": 4}], config(work))
    assert row["status"] == "failed"
    assert "changed since the manifest was made" in row["error"]
    assert not any(files for _, _, files in os.walk(work / "vault"))


def test_upload_unreadable(work: Path) -> None:
    [row] = run("upload", [{"path": "nope", "digest": sha(b"x"), "size": 0}], config(work))
    assert row["status"] == "missing"
    assert row["error"] == "No such file or directory"


def test_upload_of_a_gone_file_already_archived_is_skipped(work: Path) -> None:
    digest = put(work, b"data")
    [row] = run("upload", [{"path": "gone", "digest": digest, "size": 4}], config(work))
    assert row["status"] == "skipped"


def test_upload_dry_run_moves_nothing(work: Path) -> None:
    Path("f").write_bytes(b"data")
    [row] = run(
        "upload", [{"path": "f", "digest": sha(b"data"), "size": 4}], config(work, dry_run=True)
    )
    assert (row["status"], row["bytes"]) == ("would-upload", 4)
    assert not any(files for _, _, files in os.walk(work / "vault"))


def test_upload_to_path_copies_into_vault(work: Path) -> None:
    (work / "dest").mkdir()
    Path("d").mkdir()
    Path("d/f").write_bytes(b"data")
    cfg = config(work, dest=f"file://{work / 'dest'}", dest_mode="path", all=True)
    item = {"path": "d/f", "digest": sha(b"data"), "size": 4}
    [row] = run("upload", [item], cfg)
    assert row["status"] == "uploaded"
    assert (work / "dest" / "d" / "f").read_bytes() == b"data"
    assert (work / "vault" / digest_key(sha(b"data"))).read_bytes() == b"data"
    [row] = run("upload", [item], cfg)
    assert row["status"] == "skipped"  # --all: a rerun uploads nothing either


def test_upload_to_archive_default(work: Path) -> None:
    (work / "staging").mkdir()
    Path("f").write_bytes(b"data")
    cfg = config(work, dest=f"file://{work / 'staging'}", dest_mode="default")
    [row] = run("upload", [{"path": "f", "digest": sha(b"data"), "size": 4}], cfg)
    assert row["status"] == "uploaded"
    assert (work / "staging" / sha(b"data")).read_bytes() == b"data"
    [row] = run("upload", [{"path": "f", "digest": sha(b"data"), "size": 4}], cfg)
    assert row["status"] == "skipped"


# ---------------------------------------------------------------- download


def fetch(work: Path, path: str, data: bytes, **flags: Any) -> dict[str, Any]:
    [row] = run("download", [{"path": path, "digest": sha(data)}], config(work, **flags))
    return row


def test_fetch_makes_parents(work: Path) -> None:
    put(work, b"data")
    row = fetch(work, "a/b/c.txt", b"data")
    assert (row["status"], row["bytes"]) == ("fetched", 4)
    assert Path("a/b/c.txt").read_bytes() == b"data"
    assert fetch(work, "a/b/c.txt", b"data")["status"] == "present"
    assert os.listdir("a/b") == ["c.txt"]  # no temporary file left


@pytest.mark.parametrize(
    ("code", "fatal"),
    [(errno.ENOSPC, True), (errno.EDQUOT, True), (errno.EROFS, True), (errno.EACCES, False)],
    ids=["ENOSPC", "EDQUOT", "EROFS", "EACCES"],
)
def test_fetch_into_a_target_that_takes_no_more(
    work: Path, monkeypatch: pytest.MonkeyPatch, code: int, fatal: bool
) -> None:
    """Full, over quota, read-only: the row stops the run, saying which file (quoted,
    on one line); a permission denied is that file's alone. Nothing is left behind."""

    def refuse(self: FileStore, key: str, stream: object, on_bytes: object = None) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(FileStore, "get_file", refuse)
    put(work, b"data")
    row = fetch(work, "d/new\nline", b"data")
    assert row.get("fatal", False) is fatal
    if fatal:
        assert row["status"] == "failed"
        assert row["error"] == (
            f"'d/new'$'\\n''line': {os.strerror(code)}; fetch stopped, as no later file "
            "could be written"
        )
    else:
        assert (row["status"], row["error"]) == ("unreadable", os.strerror(code))
    assert os.listdir("d") == []


def test_fetch_wrong_local_file(work: Path) -> None:
    put(work, b"data")
    Path("f").write_bytes(b"mine")
    row = fetch(work, "f", b"data")
    assert row["status"] == "refused"
    assert "another checksum" in row["error"] and "--overwrite" in row["error"]
    assert Path("f").read_bytes() == b"mine"
    assert fetch(work, "f", b"data", overwrite=True)["status"] == "fetched"
    assert Path("f").read_bytes() == b"data"


def test_fetch_missing_from_vault(work: Path) -> None:
    row = fetch(work, "f", b"absent")
    assert (row["status"], row["error"]) == ("missing", "not in the vault")
    assert not Path("f").exists()


def test_fetch_corrupt_vault_object_is_not_installed(work: Path) -> None:
    digest = put(work, b"data")
    (work / "vault" / digest_key(digest)).write_bytes(b"rotten")
    row = fetch(work, "f", b"data")
    assert row["status"] == "failed" and "hashes to" in row["error"]
    assert os.listdir(".") == []


def test_fetch_never_writes_through_a_symlink(work: Path) -> None:
    put(work, b"data")
    (work / "elsewhere").mkdir()
    os.symlink(work / "elsewhere", "linkdir")
    os.symlink(work / "elsewhere" / "target", "linkfile")
    row = fetch(work, "linkdir/f", b"data", overwrite=True)
    assert row["status"] == "refused" and "symbolic link" in row["error"]
    row = fetch(work, "linkfile", b"data", overwrite=True)
    assert row["status"] == "refused" and "symbolic link" in row["error"]
    assert os.listdir(work / "elsewhere") == []


def test_fetch_refuses_absolute_and_escaping(work: Path) -> None:
    put(work, b"data")
    assert fetch(work, str(work / "abs"), b"data")["status"] == "refused"
    assert fetch(work, "../esc", b"data")["status"] == "refused"
    assert not (work / "abs").exists() and not (work / "esc").exists()
    assert fetch(work, "../esc", b"data", absolute_names=True)["status"] == "fetched"
    assert (work / "esc").read_bytes() == b"data"


def test_fetch_dry_run(work: Path) -> None:
    put(work, b"data")
    row = fetch(work, "new/f", b"data", dry_run=True)
    assert (row["status"], row["bytes"]) == ("would-fetch", 4)
    assert os.listdir(".") == []
    assert fetch(work, "new/f", b"absent", dry_run=True)["status"] == "missing"


def test_the_pool_reuses_the_store(work: Path) -> None:
    pool, spec = StorePool(), StoreSpec(**config(work))
    ctx = Context(Work.of("head", spec, Options()), pool)
    assert ctx.vault().store is ctx.vault().store


def test_the_pool_is_bounded_and_closes_what_it_lets_go(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []
    monkeypatch.setattr(FileStore, "close", lambda self: closed.append(self.root))
    pool = StorePool(bound=2)
    specs = [StoreSpec(f"file://{work / name}") for name in ("a", "b", "c")]
    first = pool.vault(specs[0]).store
    pool.vault(specs[1])
    assert pool.vault(specs[0]).store is first  # used again: now the newest
    pool.vault(specs[2])  # the oldest, b, is let go and closed
    assert closed == [str(work / "b")]
    pool.close()
    assert sorted(closed) == sorted(str(work / name) for name in ("a", "b", "c"))


@pytest.mark.integration  # a fresh interpreter
def test_pure_core_imports_no_boto3() -> None:
    code = (
        "import sys, dmp_cli.layout, dmp_cli.store, dmp_cli.manifest; "
        "bad = [m for m in ('boto3', 'botocore', 'celery') if m in sys.modules]; "
        "sys.exit(bool(bad))"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
