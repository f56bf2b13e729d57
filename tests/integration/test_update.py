"""`--create --update OLD`: a file unchanged since OLD (same size, mtime, ctime, inode and
device in OLD's companion) keeps OLD's checksum and is not read; every other file is
hashed; the manifest and companion are those of a full `--create`. Embedded, attached to
the fleet and detached.

That a file was not read is seen in two ways: the `--json` row's ``reused``, and an OLD
whose checksums were all replaced by false ones (its companion's trailer made to match):
a file whose line carries a false checksum was not read, one with its true checksum was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.fleet import fleet_env, run, worker
from tests.servers import Service, run_dmp

pytestmark = pytest.mark.integration

# What each file of the tree undergoes after OLD is made, and whether it is then reused.
CHANGES = {
    "same": True,
    "sub/same": True,
    "touched": False,  # its mtime set again to the one recorded: its ctime moved
    "rewritten": False,  # other bytes of the same size, its mtime put back
    "moved": False,  # replaced by a rename: another inode (mtime, size and bytes kept)
    "chmod": False,
    "new": False,
}


def _tree(root: Path) -> None:
    (root / "t" / "sub").mkdir(parents=True)
    for name in [*CHANGES, "deleted"]:
        if name != "new":
            (root / "t" / name).write_bytes(f"content of {name}\n".encode())


def _change(root: Path) -> None:
    t = root / "t"
    st = os.stat(t / "touched")
    os.utime(t / "touched", ns=(st.st_atime_ns, st.st_mtime_ns))
    st = os.stat(t / "rewritten")
    (t / "rewritten").write_bytes(b"CONTENT OF REWRITTEN\n")
    os.utime(t / "rewritten", ns=(st.st_atime_ns, st.st_mtime_ns))
    shutil.copy2(t / "moved", root / "moved.tmp")
    os.rename(root / "moved.tmp", t / "moved")
    os.chmod(t / "chmod", 0o600)
    (t / "new").write_bytes(b"new\n")
    (t / "deleted").unlink()


def _faked(root: Path, old: str, fake: str) -> None:
    """A copy of manifest ``old`` (and companion) whose checksums are all false, its
    companion's trailer made to name the new manifest's sha256."""
    lines = (root / old).read_bytes().splitlines(keepends=True)
    faked = b"".join(_false(line) for line in lines)
    (root / fake).write_bytes(faked)
    records = (root / f"{old}.meta").read_bytes().splitlines(keepends=True)
    trailer = json.loads(records[-1])
    trailer["manifest_sha256"] = hashlib.sha256(faked).hexdigest()
    records[-1] = json.dumps(trailer, separators=(",", ":")).encode() + b"\n"
    (root / f"{fake}.meta").write_bytes(b"".join(records))


def _false(line: bytes) -> bytes:
    digest, rest = line[:64], line[64:]
    return hashlib.sha256(b"false " + digest).hexdigest().encode() + rest


def _digests(manifest: Path) -> dict[str, str]:
    found = {}
    for line in manifest.read_text().splitlines():
        digest, _, name = line.partition("  ")
        found[json.loads(name).removeprefix("t/")] = digest
    return found


def _rows(stdout: bytes) -> dict[str, dict[str, object]]:
    records = [json.loads(line) for line in stdout.splitlines()]
    return {str(r["path"]).removeprefix("t/"): r for r in records if r["type"] == "file"}


def _summary(stdout: bytes) -> dict[str, object]:
    return next(r for r in map(json.loads, stdout.splitlines()) if r["type"] == "summary")


@pytest.fixture(scope="module")
def fleet(redis: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logdir = tmp_path_factory.mktemp("update-logs")
    with worker(redis.url, "u1", logdir, concurrency=2):
        yield redis.url


WALK = ("--dir", "t", "-r")


def _create(
    root: Path, broker: str | None, detach: bool, *args: str, inputs: tuple[str, ...] = WALK
) -> None:
    """A --create of the tree, detached (followed to its end) or not."""
    if not detach:
        made = run("manifest", "--create", *inputs, *args, cwd=root, broker_url=broker)
        assert made.returncode == 0, made.stderr
        assert b"Traceback" not in made.stderr
        return
    submitted = run("manifest", "--create", *inputs, *args, "--detach", cwd=root, broker_url=broker)
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.decode().strip()
    watched = run("job", "watch", job, cwd=root, broker_url=broker, timeout=120)
    assert watched.returncode == 0, watched.stderr


@pytest.mark.parametrize("mode", ["embedded", "attached", "detached", "detached-list"])
def test_update_reuses_exactly_the_unchanged_files(
    tmp_path: Path, mode: str, request: pytest.FixtureRequest
) -> None:
    broker = None if mode == "embedded" else request.getfixturevalue("fleet")
    detach = mode.startswith("detached")
    _tree(tmp_path)
    _create(tmp_path, None, False, "-m", "old.sha256")
    _faked(tmp_path, "old.sha256", "false.sha256")
    _change(tmp_path)
    inputs = WALK
    if mode == "detached-list":  # the files named in a list, in the walk's order
        names = sorted(f"t/{name}" for name in CHANGES)
        (tmp_path / "list").write_text("".join(f"{name}\n" for name in names))
        inputs = ("--files-from", "list", "--meta")

    args = {"inputs": inputs}
    _create(tmp_path, broker, detach, "-m", "new.sha256", "--update", "old.sha256", **args)
    _create(tmp_path, broker, detach, "-m", "marked.sha256", "--update", "false.sha256", **args)
    _create(tmp_path, None, False, "-m", "full.sha256", **args)

    for suffix in ("", ".meta"):
        full = (tmp_path / f"full.sha256{suffix}").read_bytes()
        assert (tmp_path / f"new.sha256{suffix}").read_bytes() == full, suffix
    true, marked = _digests(tmp_path / "full.sha256"), _digests(tmp_path / "marked.sha256")
    assert set(marked) == set(CHANGES)  # the deleted file dropped out, the new one is in
    reused = {name for name in marked if marked[name] != true[name]}
    assert reused == {name for name, kept in CHANGES.items() if kept}
    assert not list(tmp_path.glob("*.dmp-tmp"))

    if mode != "detached":  # the --json rows and summary say the same
        shown = run(
            "--json", "manifest", "--create", "--dir", "t", "-r", "-m", "json.sha256",
            "--update", "false.sha256", cwd=tmp_path, broker_url=broker,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        rows = _rows(shown.stdout)
        assert {name: row["reused"] for name, row in rows.items()} == CHANGES
        summary = _summary(shown.stdout)
        hashed = [name for name, kept in CHANGES.items() if not kept]
        assert summary["reused"] == len(CHANGES) - len(hashed)
        assert summary["hashed_files"] == len(hashed)
        assert summary["hashed_bytes"] == sum((tmp_path / "t" / n).stat().st_size for n in hashed)


def test_verbose_summary_says_what_was_reused(tmp_path: Path) -> None:
    _tree(tmp_path)
    _create(tmp_path, None, False, "-m", "old.sha256")
    (tmp_path / "t" / "new").write_bytes(b"12345\n")
    made = run(
        "-v", "manifest", "--create", "--dir", "t", "-r", "-m", "new.sha256",
        "--update", "old.sha256", cwd=tmp_path, broker_url=None,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert b"7 checksums reused from old.sha256, 1 file (6 B) hashed" in made.stderr


def test_a_list_out_of_the_walks_order_is_looked_up_in_an_index(tmp_path: Path) -> None:
    """--files-from in reverse order: reused all the same (through the on-disk index,
    whose temporary directory is gone after the run)."""
    _tree(tmp_path)
    _create(tmp_path, None, False, "-m", "old.sha256")
    _faked(tmp_path, "old.sha256", "false.sha256")
    names = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "t").rglob("*") if p.is_file())
    (tmp_path / "list").write_text("\n".join(reversed(names)) + "\n")
    temp = tmp_path / "temp"
    temp.mkdir()
    made = run_dmp(
        "--json", "manifest", "--create", "--files-from", "list", "--update", "false.sha256",
        cwd=tmp_path, env=fleet_env(None, TMPDIR=str(temp)), subprocess=True,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    rows = _rows(made.stdout)
    assert list(rows) == [name.removeprefix("t/") for name in reversed(names)]
    assert all(row["reused"] for row in rows.values())
    assert not list(temp.iterdir())


def _version_1(root: Path, name: str) -> None:
    """``name``'s companion rewritten as format version 1 writes it."""
    path = root / f"{name}.meta"
    lines = [json.loads(line) for line in path.read_bytes().splitlines()]
    lines[0]["version"] = 1
    for record in lines[1:-1]:
        for key in ("ctime_ns", "ino", "dev", "nlink", "xattrs"):
            record.pop(key, None)
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in lines))


def test_a_version_1_companion_reuses_on_size_and_mtime(tmp_path: Path) -> None:
    _tree(tmp_path)
    _create(tmp_path, None, False, "-m", "old.sha256")
    _faked(tmp_path, "old.sha256", "false.sha256")
    _version_1(tmp_path, "false.sha256")
    os.chmod(tmp_path / "t" / "chmod", 0o600)  # its ctime moves; size and mtime do not
    (tmp_path / "t" / "same").write_bytes(b"longer than it was\n")
    made = run(
        "--json", "manifest", "--create", "--dir", "t", "-r", "-m", "new.sha256",
        "--update", "false.sha256", cwd=tmp_path, broker_url=None,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stderr.decode().splitlines() == [
        "dmp: WARNING: false.sha256.meta is of companion format version 1 (no ctime, inode "
        "or device): a file of the same size and mtime keeps its checksum"
    ]
    rows = _rows(made.stdout)
    assert rows["chmod"]["reused"] is True
    assert rows["same"]["reused"] is False


@pytest.mark.parametrize(
    "case", ["missing", "no-companion", "mismatch", "newer", "cut-short", "other-record"]
)
def test_bad_earlier_manifest_writes_nothing(tmp_path: Path, case: str) -> None:
    _tree(tmp_path)
    _create(tmp_path, None, False, "-m", "old.sha256")
    old, meta = tmp_path / "old.sha256", tmp_path / "old.sha256.meta"
    expected = {
        "missing": "dmp: --update nope.sha256: cannot read the earlier manifest: "
        "No such file or directory",
        "no-companion": "dmp: --update old.sha256: no companion file of metadata "
        "(old.sha256.meta) to tell which files are unchanged; hash them all with --create "
        "alone",
        "mismatch": "it was made with another manifest (its sha256 differs); not the "
        "metadata of old.sha256 (nothing applied)",
        "newer": "dmp: --update: old.sha256.meta: made by a newer dmp (companion format "
        "version 3; this dmp reads versions up to 2); nothing applied",
        "cut-short": "cut short (no last line); not the metadata of old.sha256 (nothing applied)",
        "other-record": "its path is not that of manifest line",
    }[case]
    if case == "no-companion":
        meta.unlink()
    elif case == "mismatch":
        old.write_bytes(b"0" * 64 + old.read_bytes()[64:])
    elif case == "newer":
        meta.write_bytes(meta.read_bytes().replace(b'"version":2', b'"version":3', 1))
    elif case == "other-record":  # found as it is read, the run well under way
        meta.write_bytes(meta.read_bytes().replace(b'"path":"t/touched"', b'"path":"t/touchee"'))
    elif case == "cut-short":
        meta.write_bytes(b"".join(meta.read_bytes().splitlines(keepends=True)[:-1]))
    earlier = "nope.sha256" if case == "missing" else "old.sha256"
    # Refused before a job is submitted (and before the broker is asked for), except a
    # record found wrong as it is read: the job's run stops there.
    for args in ([], ["--detach"]) if case != "other-record" else ([],):
        made = run(
            "manifest", "--create", "--dir", "t", "-r", "-m", "new.sha256",
            "--update", earlier, *args, cwd=tmp_path, broker_url=None,
        )  # fmt: skip
        assert made.returncode == 2, made.stderr
        shown = made.stderr.decode().splitlines()
        assert len(shown) == 1 and expected in shown[0], shown
        assert not list(tmp_path.glob("new.sha256*")), os.listdir(tmp_path)
        assert not list(tmp_path.glob("*.dmp-tmp"))


def test_memory_stays_flat_over_a_long_earlier_manifest(tmp_path: Path) -> None:
    """An earlier manifest of 200,000 entries, looked up through the on-disk index (the
    list is out of its order), with a peak RSS well under what a dict of it would take."""
    count = 200_000
    _tree(tmp_path)
    _create(tmp_path, None, False, "-m", "small.sha256")
    record = json.loads((tmp_path / "small.sha256.meta").read_bytes().splitlines()[-2])
    record.update(type="file", entry=True)
    digest = "ab" * 32
    manifest = b"".join(b'%s  "x/f%07d"\n' % (digest.encode(), i) for i in range(count))
    (tmp_path / "big.sha256").write_bytes(manifest)
    with open(tmp_path / "big.sha256.meta", "wb") as meta:
        meta.write(b'{"format":"dmp-meta","version":2}\n')
        for i in range(count):
            record["path"] = f"x/f{i:07d}"
            meta.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")
        trailer = {"end": True, "records": count, "entries": count}
        trailer["manifest_sha256"] = hashlib.sha256(manifest).hexdigest()
        meta.write(json.dumps(trailer).encode() + b"\n")
    (tmp_path / "list").write_text("t/same\nt/chmod\n")
    script = (
        "import resource, subprocess, sys; "
        "r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
        "sys.exit(r.returncode)"
    )
    measured = subprocess.run(
        [sys.executable, "-c", script, sys.executable, "-m", "dmp_cli", "manifest", "--create",
         "--files-from", "list", "-m", "new.sha256", "--update", "big.sha256"],
        cwd=tmp_path, env=fleet_env(None, DMP_JOBS="1"), capture_output=True, timeout=300,
    )  # fmt: skip
    assert measured.returncode == 0, measured.stderr
    peak_kib = int(measured.stdout.split()[-1])
    assert peak_kib < 100 * 1024, peak_kib


@pytest.mark.parametrize("mode", ["attached", "detached"])
def test_a_wrong_record_found_on_the_fleet_writes_nothing(
    tmp_path: Path, mode: str, fleet: str
) -> None:
    _tree(tmp_path)
    _create(tmp_path, None, False, "-m", "old.sha256")
    meta = tmp_path / "old.sha256.meta"
    meta.write_bytes(meta.read_bytes().replace(b'"path":"t/touched"', b'"path":"t/touchee"'))
    args = ["--dir", "t", "-r", "-m", "new.sha256", "--update", "old.sha256"]
    if mode == "attached":
        made = run("manifest", "--create", *args, cwd=tmp_path, broker_url=fleet)
        assert made.returncode == 2, made.stderr
        assert b"its path is not that of manifest line" in made.stderr
        assert b"Traceback" not in made.stderr
    else:
        submitted = run("manifest", "--create", *args, "--detach", cwd=tmp_path, broker_url=fleet)
        assert submitted.returncode == 0, submitted.stderr
        job = submitted.stdout.decode().strip()
        watched = run("job", "watch", job, cwd=tmp_path, broker_url=fleet, timeout=120)
        assert watched.returncode != 0
        assert b"its path is not that of manifest line" in watched.stderr, watched.stderr
    assert not list(tmp_path.glob("new.sha256*"))
    assert not list(tmp_path.glob("*.dmp-tmp"))
