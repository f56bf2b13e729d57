"""The Python API: create_manifest, read_manifest, check_manifest, and their errors."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import dmp_cli
from dmp_cli import CheckResult, DmpError, Entry, check_manifest, create_manifest, read_manifest
from dmp_cli.errors import InputError, ManifestError


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "a.csv").write_bytes(b"a")
    (tmp_path / "data" / "b.csv").write_bytes(b"b")
    (tmp_path / "data" / "sub" / "c.csv").write_bytes(b"c")
    (tmp_path / os.fsdecode(b"odd name\n\xff")).write_bytes(b"odd")
    return tmp_path


def test_public_names() -> None:
    assert set(dmp_cli.__all__) >= {
        "create_manifest",
        "read_manifest",
        "check_manifest",
        "CheckResult",
        "Entry",
        "DmpError",
    }


def test_create_returns_entries_in_input_order(tree: Path) -> None:
    odd = os.fsdecode(b"odd name\n\xff")
    entries = create_manifest([odd, "data/*.csv"], dirs=["data"], recursive=True, jobs=2)
    assert entries == [
        Entry(sha(b"odd"), odd),
        Entry(sha(b"a"), "data/a.csv"),
        Entry(sha(b"b"), "data/b.csv"),
        Entry(sha(b"a"), "data/a.csv"),
        Entry(sha(b"b"), "data/b.csv"),
        Entry(sha(b"c"), "data/sub/c.csv"),
    ]


@pytest.mark.parametrize("fmt", ["dmp", "sha256sum"])
def test_create_writes_a_manifest_that_reads_back(tree: Path, fmt: str) -> None:
    odd = os.fsdecode(b"odd name\n\xff")
    entries = create_manifest(["data/a.csv", odd], manifest="m", fmt=fmt, jobs=1)
    assert list(read_manifest("m")) == entries
    first = (tree / "m").read_bytes().splitlines()[0]
    assert first == (sha(b"a").encode() + (b'  "data/a.csv"' if fmt == "dmp" else b"  data/a.csv"))
    assert sorted(os.listdir(tree)) == ["data", "m", odd]  # no temporary file left


def test_create_without_manifest_writes_nothing(tree: Path) -> None:
    before = sorted(os.listdir(tree))
    assert len(create_manifest(dirs=["data"])) == 2
    assert sorted(os.listdir(tree)) == before


def test_create_refuses_an_existing_manifest_untouched(tree: Path) -> None:
    (tree / "m").write_bytes(b"precious\n")
    with pytest.raises(ManifestError, match="m: manifest already exists"):
        create_manifest(["data/a.csv"], manifest="m")
    assert (tree / "m").read_bytes() == b"precious\n"


def test_create_refuses_a_dangling_symlink_as_manifest(tree: Path) -> None:
    (tree / "m").symlink_to("elsewhere")
    with pytest.raises(ManifestError, match="already exists"):
        create_manifest(["data/a.csv"], manifest="m")
    assert not (tree / "elsewhere").exists()


def test_create_reports_a_manifest_that_cannot_be_created(tree: Path) -> None:
    with pytest.raises(ManifestError, match="no/such/dir/m: cannot create manifest: No such"):
        create_manifest(["data/a.csv"], manifest="no/such/dir/m")


def test_create_with_an_unreadable_input_writes_no_manifest(tree: Path) -> None:
    with pytest.raises(InputError, match=r"missing\.csv: No such file or directory"):
        create_manifest(["data/a.csv", "missing.csv"], manifest="m")
    assert not (tree / "m").exists()
    assert not [name for name in os.listdir(tree) if name.endswith(".dmp-tmp")]


def test_create_with_nothing_found(tree: Path) -> None:
    (tree / "empty").mkdir()
    with pytest.raises(InputError, match="no files found"):
        create_manifest(["*.nothing"], dirs=["empty"], manifest="m")
    assert not (tree / "m").exists()


def _write_manifest(tree: Path, text: str) -> str:
    (tree / "m").write_text(text)
    return "m"


def test_check_all_ok(tree: Path) -> None:
    create_manifest(dirs=["data"], recursive=True, manifest="m")
    result = check_manifest("m", jobs=2)
    assert isinstance(result, CheckResult)
    assert result.ok()
    assert result.failures == []
    assert (result.counts.matched, result.counts.bytes) == (3, 3)


def test_check_reports_failures(tree: Path) -> None:
    manifest = _write_manifest(
        tree,
        f"{sha(b'a')}  data/a.csv\n{sha(b'x')}  data/b.csv\n"
        f"{sha(b'a')}  gone.csv\nnot a line\n{sha(b'a')}  data\n",
    )
    result = check_manifest(manifest)
    assert not result.ok()
    assert [(row["path"], row["status"]) for row in result.failures] == [
        ("data/b.csv", "failed"),
        ("gone.csv", "missing"),
        ("data", "unreadable"),
    ]
    assert (
        result.counts.matched,
        result.counts.mismatched,
        result.counts.unreadable,
        result.counts.misformatted,
    ) == (1, 1, 2, 1)


def test_check_strict_and_ignore_missing(tree: Path) -> None:
    manifest = _write_manifest(tree, f"{sha(b'a')}  data/a.csv\n{sha(b'a')}  gone.csv\njunk\n")
    assert not check_manifest(manifest).ok()
    assert check_manifest(manifest, ignore_missing=True).ok()
    assert not check_manifest(manifest, ignore_missing=True, strict=True).ok()


def test_check_ignore_missing_with_nothing_verified_fails(tree: Path) -> None:
    manifest = _write_manifest(tree, f"{sha(b'a')}  gone.csv\n")
    result = check_manifest(manifest, ignore_missing=True)
    assert not result.ok()
    assert result.counts.ignored == 1
    assert result.failures == []


@pytest.mark.parametrize("make", ["missing", "directory"])
def test_check_and_read_an_unreadable_manifest(tree: Path, make: str) -> None:
    if make == "directory":
        (tree / "m").mkdir()
    with pytest.raises(ManifestError, match=r"^m: "):
        check_manifest("m")
    with pytest.raises(ManifestError, match=r"^m: "):
        list(read_manifest("m"))


def test_errors_share_one_base() -> None:
    assert issubclass(ManifestError, DmpError) and issubclass(InputError, DmpError)


# ---------------------------------------------------------------- the five commands


def test_the_five_commands_stream_rows_and_judge_as_the_cli(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """create, check, vault, archive and fetch: rows heard one by one, in manifest order,
    progress per file, and each report's status the command's exit status."""
    from dmp_cli import api

    vault_dir = tmp_path / "vault"
    vault_dir.mkdir()
    where = api.Where(vault=f"file://{vault_dir}")
    rows: list[tuple[str, str]] = []
    progress: list[int] = []

    def hear(row: dict[str, object]) -> None:
        rows.append((str(row["path"]), str(row["status"])))

    created = api.create(
        dirs=["data"],
        recursive=True,
        manifest="m",
        on_row=hear,
        on_progress=lambda n, b: progress.append(b),
    )
    assert created.status == 0 and created.files == 3 and progress == [1, 1, 1]
    assert rows == [("data/a.csv", "ok"), ("data/b.csv", "ok"), ("data/sub/c.csv", "ok")]

    rows.clear()
    assert api.check("m", on_row=hear).status == 0
    assert [status for _, status in rows] == ["ok"] * 3

    rows.clear()
    asked = api.vault("m", where=where, on_row=hear)
    assert asked.status == 0  # missing objects are an answer, not a failure
    assert [status for _, status in rows] == ["missing"] * 3

    rows.clear()
    archived = api.archive("m", where=where, on_row=hear)
    assert archived.status == 0 and archived.tally["uploaded"] == 3
    assert rows == [(p, "uploaded") for p in ("data/a.csv", "data/b.csv", "data/sub/c.csv")]
    assert api.archive("m", where=where).tally["skipped"] == 3  # a rerun uploads nothing

    restore = tmp_path / "restore"
    restore.mkdir()
    monkeypatch.chdir(restore)
    rows.clear()
    moved: list[int] = []
    fetched = api.fetch(str(tree / "m"), where=where, on_row=hear, on_bytes=moved.append)
    assert fetched.status == 0 and [s for _, s in rows] == ["fetched"] * 3
    assert sum(moved) == 3 and (restore / "data" / "sub" / "c.csv").read_bytes() == b"c"


def test_a_failed_file_fails_the_run_by_the_same_rules(tree: Path, tmp_path: Path) -> None:
    from dmp_cli import api

    where = api.Where(vault=f"file://{tmp_path}")
    (tree / "m").write_text(f"{sha(b'a')}  data/a.csv\n{sha(b'zz')}  gone.csv\nnot a line\n")
    archived = api.archive("m", where=where)
    assert archived.status == 1 and archived.verdict.failed == 1  # the missing file
    assert api.vault("m", where=where).status == 0  # a misformatted line: not --strict
    assert api.vault("m", where=where, strict=True).status == 1
    assert api.check("m", ignore_missing=True).status == 0
    assert api.check("m", ignore_missing=True, strict=True).status == 1


def test_metadata_through_the_api(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """create, archive, fetch and check with a companion file: a mode and a time come
    back, a difference is heard through ``on_meta`` and fails the check."""
    from dmp_cli import api

    where = api.Where(vault=f"file://{tmp_path / 'vault'}")
    (tmp_path / "vault").mkdir()
    os.chmod(tree / "data" / "a.csv", 0o640)
    os.utime(tree / "data" / "a.csv", ns=(0, 978_307_200_000_000_001))
    (tree / "data" / "empty").mkdir()
    assert (
        api.create(dirs=["data"], recursive=True, manifest="m", meta="m.meta", jobs=1).status == 0
    )
    archived = api.archive("m", where=where, meta="m.meta")
    assert archived.companion is not None and archived.companion.status == "uploaded"
    restore = tmp_path / "restore"
    restore.mkdir()
    monkeypatch.chdir(restore)
    fetched = api.fetch(str(tree / "m"), where=where, meta=str(tree / "m.meta"))
    assert fetched.status == 0 and fetched.companion and fetched.companion.tree
    assert fetched.companion.tree.dirs == 3  # data, data/empty, data/sub
    st = os.stat(restore / "data" / "a.csv")
    assert (st.st_mode & 0o7777, st.st_mtime_ns) == (0o640, 978_307_200_000_000_001)
    os.chmod(restore / "data" / "a.csv", 0o600)
    heard: list[tuple[str, list[str]]] = []
    checked = api.check(
        str(tree / "m"),
        meta=str(tree / "m.meta"),
        jobs=1,
        on_meta=lambda p, d: heard.append((p, d)),
    )
    assert checked.status == 1 and checked.metadata == 1
    assert heard == [("data/a.csv", ["mode 0640 != 0600"])]


def test_fetch_s_restore_options_are_checked_as_the_cli_s(tree: Path, tmp_path: Path) -> None:
    """A restore tier that is none, or days that are not a positive whole number, is a
    usage error before anything is fetched; a tier in another case is S3's spelling."""
    from dmp_cli import api
    from dmp_cli.errors import UsageError
    from dmp_cli.options import Options

    create_manifest(["data/a.csv"], manifest="m", jobs=1)
    where = api.Where(vault=f"file://{tmp_path / 'vault'}")
    for bad in ({"restore_tier": "Slow"}, {"restore_days": 0}, {"restore_days": 1.5}):
        with pytest.raises(UsageError):
            api.fetch("m", where=where, **bad)
    assert Options(restore_tier="bulk").validated().restore_tier == "Bulk"
    assert Options(restore_days="3").validated().restore_days == 3  # type: ignore[arg-type]
