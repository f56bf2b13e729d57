"""`--create --dir --update OLD` embedded without --json rows: the tree walked again in
pieces by the hashing processes, an unchanged file's earlier lines kept as they are.
Whatever the tree holds, the manifest and companion are byte for byte those of a full
`--create`; a checksum kept (not read) shows as the false one of a faked OLD.

Each case also runs with pieces cut small (a few records each, and a few files at most,
so that a directory is split over several pieces and a piece is cut short and goes on).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dmp_cli.manifest import read_entries
from dmp_cli.runs import updating
from tests.integration.fleet import run
from tests.integration.test_update import _faked

pytestmark = pytest.mark.integration


@pytest.fixture(params=["whole", "small-pieces"])
def pieces(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "small-pieces":
        monkeypatch.setattr(updating, "PIECE_BYTES", 700)
        monkeypatch.setattr(updating, "PIECE_FILES", 3)
    return str(request.param)


def _dmp(root: Path, *args: str) -> tuple[int, bytes]:
    made = run(*args, cwd=root, broker_url=None)
    assert b"Traceback" not in made.stderr, made.stderr
    return made.returncode, made.stderr


def _create(root: Path, manifest: str, *args: str) -> None:
    status, stderr = _dmp(root, "manifest", "--create", "--dir", "t", "-r", "-m", manifest, *args)
    assert status == 0, stderr


def _updated(root: Path, *args: str) -> tuple[int, bytes]:
    """--update of OLD (new.sha256) and of its faked copy (marked.sha256), and a full
    --create (full.sha256): the first two must equal the full one, byte for byte."""
    _faked(root, "old.sha256", "false.sha256")
    results = []
    for name, old in (("new", "old"), ("marked", "false")):
        update = ("-m", f"{name}.sha256", "--update", f"{old}.sha256", *args)
        results.append(_dmp(root, "-v", "manifest", "--create", "--dir", "t", "-r", *update))
    assert results[0][0] == results[1][0]
    full = _dmp(root, "manifest", "--create", "--dir", "t", "-r", "-m", "full.sha256", *args)
    assert full[0] == results[0][0]
    if full[0] == 0:
        for suffix in ("", ".meta"):
            expected = (root / f"full.sha256{suffix}").read_bytes()
            assert (root / f"new.sha256{suffix}").read_bytes() == expected, suffix
    return results[0]


def _digests(manifest: Path) -> dict[str, str]:
    return {e.path.removeprefix("t/"): e.digest for e in read_entries(str(manifest))}


def _reused(root: Path) -> set[str]:
    true, marked = _digests(root / "full.sha256"), _digests(root / "marked.sha256")
    return {name for name in marked if marked[name] != true[name]}


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_a_mixed_tree(tmp_path: Path, pieces: str) -> None:
    """Reused, changed, new and deleted files, subdirectories (one new, one gone, one
    empty), and links to a file, to a directory and to nothing, side by side."""
    t = tmp_path / "t"
    for name in ("a", "b/x", "b/y", "b/z", "c/d/e", "c/f", "g", "h", "i", "gone/j", "k"):
        _write(t / name, f"content of {name}\n".encode())
    (t / "empty").mkdir()
    (t / "to-file").symlink_to("a")
    (t / "to-dir").symlink_to("b")
    (t / "dangling").symlink_to("nowhere")
    _create(tmp_path, "old.sha256")
    (t / "b" / "y").write_bytes(b"other content of b/y\n")
    st = os.stat(t / "g")
    (t / "g").write_bytes(b"CONTENT OF G\n")  # same size, its mtime put back
    os.utime(t / "g", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.chmod(t / "h", 0o600)
    (t / "i").unlink()
    (t / "gone" / "j").unlink()
    (t / "gone").rmdir()
    _write(t / "new" / "n", b"new\n")
    _write(t / "b" / "w", b"new in b\n")
    status, stderr = _updated(tmp_path)
    assert status == 0, stderr
    assert _reused(tmp_path) == {"a", "b/x", "b/z", "c/d/e", "c/f", "k"}
    assert b"6 checksums reused from old.sha256, 6 files" in stderr


def test_an_unreadable_new_file_among_reused_ones(tmp_path: Path, pieces: str) -> None:
    t = tmp_path / "t"
    for name in ("a", "b", "d", "e"):
        _write(t / name, name.encode())
    _create(tmp_path, "old.sha256")
    (t / "c").symlink_to("/proc/self/mem")  # a read fails with EIO, whoever reads it
    (t / "loop").symlink_to("loop")
    status, stderr = _updated(tmp_path)
    assert status == 1
    assert stderr == (
        b"dmp: t/c: Input/output error\n"
        b"dmp: t/loop: Too many levels of symbolic links\n"
        b"dmp: 2 inputs could not be read; no manifest written\n"
    )
    assert not (tmp_path / "new.sha256").exists()
    assert not (tmp_path / "new.sha256.meta").exists()
    assert not list(tmp_path.glob(".*dmp*"))


def test_an_extended_attribute_set_on_an_unchanged_file(tmp_path: Path, pieces: str) -> None:
    """setfattr moves a file's ctime: hashed again, its record with the attribute; one
    that had an attribute already and is unchanged keeps its record, attribute and all."""
    t = tmp_path / "t"
    for name in ("a", "b", "c"):
        _write(t / name, name.encode())
    os.setxattr(t / "c", "user.kept", b"kept value")
    _create(tmp_path, "old.sha256")
    os.setxattr(t / "b", "user.x", b"1")
    status, stderr = _updated(tmp_path)
    assert status == 0, stderr
    assert _reused(tmp_path) == {"a", "c"}
    meta = (tmp_path / "new.sha256.meta").read_bytes()
    assert b'"xattrs":{"user.x":"MQ=="}' in meta
    assert b'"xattrs":{"user.kept":' in meta


def test_hard_links(tmp_path: Path, pieces: str) -> None:
    """Two names of a file, unchanged, are reused; a third name moves the file's ctime
    (and link count): all its names are hashed again."""
    t = tmp_path / "t"
    for name in ("a", "c", "e"):
        _write(t / name, name.encode())
    os.link(t / "a", t / "b")
    os.link(t / "c", t / "d")
    _create(tmp_path, "old.sha256")
    os.link(t / "c", t / "f")
    status, stderr = _updated(tmp_path)
    assert status == 0, stderr
    assert _reused(tmp_path) == {"a", "b", "e"}
    assert b'"nlink":3' in (tmp_path / "new.sha256.meta").read_bytes()


def test_an_owner_name_that_would_differ(tmp_path: Path, pieces: str) -> None:
    """The record of an unchanged file names its owner as the earlier run's host did:
    its checksum is kept, its record made again with this host's name."""
    t = tmp_path / "t"
    for name in ("a", "b", "c"):
        _write(t / name, name.encode())
    _create(tmp_path, "old.sha256")
    meta = tmp_path / "old.sha256.meta"
    lines = meta.read_bytes().split(b"\n")
    at = next(i for i, line in enumerate(lines) if b'"path":"t/b"' in line)
    user = os.stat(t / "b").st_uid
    import pwd

    name = pwd.getpwuid(user).pw_name.encode()
    assert b'"user":"%s"' % name in lines[at]
    lines[at] = lines[at].replace(b'"user":"%s"' % name, b'"user":"someone-else"')
    meta.write_bytes(b"\n".join(lines))
    status, stderr = _updated(tmp_path)
    assert status == 0, stderr
    assert _reused(tmp_path) == {"a", "b", "c"}
    assert b"someone-else" not in (tmp_path / "new.sha256.meta").read_bytes()


def test_awkward_names_and_a_sha256sum_manifest(tmp_path: Path, pieces: str) -> None:
    """Names that JSON or dmp's lines escape take the general way, beside plain ones;
    an earlier manifest in sha256sum's form is read as well, into either form."""
    t = tmp_path / "t"
    for name in ("a", 'q"uote', "back\\slash", "new\nline", "caf\u00e9", "z"):
        _write(t / name, name.encode())
    _write(t / "d%s" / "p%d", b"percent")
    os.makedirs(t / os.fsdecode(b"bad\xff"))
    _write(t / os.fsdecode(b"bad\xff") / "f", b"f")
    _create(tmp_path, "old.sha256")
    status, stderr = _updated(tmp_path)
    assert status == 0, stderr
    assert _reused(tmp_path) == set(_digests(tmp_path / "full.sha256"))
    for name in ("full", "old", "new", "marked"):
        for path in tmp_path.glob(f"{name}.sha256*"):
            path.unlink()
    _create(tmp_path, "old.sha256", "--format", "sha256sum")
    for name, fmt in (("gnu", "sha256sum"), ("dmp", "dmp")):
        _create(tmp_path, f"{name}-full.sha256", "--format", fmt)
        _create(tmp_path, f"{name}.sha256", "--format", fmt, "--update", "old.sha256")
        for suffix in ("", ".meta"):
            expected = (tmp_path / f"{name}-full.sha256{suffix}").read_bytes()
            assert (tmp_path / f"{name}.sha256{suffix}").read_bytes() == expected


def test_an_earlier_manifest_out_of_the_walks_order(tmp_path: Path, pieces: str) -> None:
    """An earlier manifest of a list in another order: the same output, and the same
    checksums kept, as the general way's (--json)."""
    t = tmp_path / "t"
    for name in ("a", "b/c", "d", "e", "f"):
        _write(t / name, name.encode())
    (tmp_path / "list").write_text("t/e\nt/d\nt/b/c\nt/a\nt/f\n")
    status, stderr = _dmp(
        tmp_path, "manifest", "--create", "--files-from", "list", "--meta", "-m", "old.sha256"
    )
    assert status == 0, stderr
    status, stderr = _updated(tmp_path)
    assert status == 0, stderr
    shown = run(
        "--json", "manifest", "--create", "--dir", "t", "-r", "-m", "json.sha256",
        "--update", "false.sha256", cwd=tmp_path, broker_url=None,
    )  # fmt: skip
    rows = [json.loads(line) for line in shown.stdout.splitlines()]
    reused = {r["path"].removeprefix("t/") for r in rows if r["type"] == "file" and r["reused"]}
    assert _reused(tmp_path) == reused
    assert "f" in reused


def test_disorder_found_late_goes_the_general_way(tmp_path: Path, pieces: str) -> None:
    """Disorder found once pieces are written: what was written is taken back and the
    run goes the general way, telling each problem once."""
    t = tmp_path / "t"
    for name in ("a", "b", "c"):
        _write(t / name, name.encode())
    (tmp_path / "list").write_text("t/a\nt/c\nt/b\n")
    status, stderr = _dmp(
        tmp_path, "manifest", "--create", "--files-from", "list", "--meta", "-m", "old.sha256"
    )
    assert status == 0, stderr
    (t / "0").symlink_to("0")  # a loop: a problem, before the disorder is seen
    status, stderr = _updated(tmp_path)
    assert status == 1
    assert stderr == (
        b"dmp: t/0: Too many levels of symbolic links\n"
        b"dmp: 1 input could not be read; no manifest written\n"
    )
    (t / "0").unlink()
    status, stderr = _updated(tmp_path)
    assert status == 0, stderr
    assert _reused(tmp_path) == {"a", "c"}


def test_a_tree_mostly_changed_goes_the_general_way(
    tmp_path: Path, pieces: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More to hash than a piece hashes (here 3 files): the general way, which hashes
    in every process at once; the output is the same. So too for an earlier manifest
    of the tree under another name (./t), none of whose entries is reused."""
    monkeypatch.setattr(updating, "PIECE_HASHES", (3, 1 << 30))
    t = tmp_path / "t"
    for name in ("a", "b", "c"):
        _write(t / name, name.encode())
    _create(tmp_path, "old.sha256")
    for i in range(8):
        _write(t / "new" / f"n{i}", b"new %d" % i)
    status, stderr = _updated(tmp_path)
    assert status == 0, stderr
    assert _reused(tmp_path) == {"a", "b", "c"}
    for name in ("new", "full"):
        for path in tmp_path.glob(f"{name}.sha256*"):
            path.unlink()
    status, stderr = _dmp(
        tmp_path, "-v", "manifest", "--create", "--dir", "./t", "-r", "-m", "new.sha256",
        "--update", "old.sha256",
    )  # fmt: skip
    assert status == 0, stderr
    assert b": 0 checksums reused" in stderr
    _dmp(tmp_path, "manifest", "--create", "--dir", "./t", "-r", "-m", "full.sha256")
    for suffix in ("", ".meta"):
        expected = (tmp_path / f"full.sha256{suffix}").read_bytes()
        assert (tmp_path / f"new.sha256{suffix}").read_bytes() == expected


@pytest.mark.parametrize("seed", range(4))
def test_random_trees(tmp_path: Path, pieces: str, seed: int) -> None:
    """Random trees, changed at random: always the full --create's output."""
    import random

    rng = random.Random(seed)
    t = tmp_path / "t"
    dirs = [t]
    for i in range(60):
        if rng.random() < 0.2:
            dirs.append(rng.choice(dirs) / f"d{i}")
            dirs[-1].mkdir(parents=True)
        else:
            name = rng.choice(["f", "F", "f.x", "g_"]) + str(i)
            _write(rng.choice(dirs) / name, b"%d" % i)
    _create(tmp_path, "old.sha256")
    files = sorted(p for p in t.rglob("*") if p.is_file())
    for path in rng.sample(files, len(files) // 5):
        choice = rng.random()
        if choice < 0.3:
            path.unlink()
        elif choice < 0.6:
            path.write_bytes(b"changed")
        else:
            os.chmod(path, 0o600)
    for i in range(10):
        _write(rng.choice(dirs) / f"new{i}", b"new")
    status, stderr = _updated(tmp_path)
    assert status == 0, stderr
