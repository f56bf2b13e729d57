"""What tar keeps, kept: modes, times, owners, symbolic links and empty directories, recorded
by --create --meta beside the manifest, stored by --archive, restored by --fetch and compared
by --check --meta; embedded on a file:// vault and on moto's S3, and through the fleet."""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.fleet import new_vault, run, worker
from tests.integration.manifest_helpers import without_pace
from tests.integration.vaultkit import one_error
from tests.servers import Service

pytestmark = pytest.mark.integration

OLD = 978_307_200_123_456_789  # 2001-01-01, with nanoseconds
OLDER = 946_684_800_000_000_000  # 2000-01-01


def make_tree(root: Path) -> Path:
    """Modes 600/640/755/2775, old times, an owner with no name, relative, absolute,
    dangling and escaping links, a link to a directory, empty directories, a newline."""
    tree = root / "t"
    (tree / "group").mkdir(parents=True)
    (tree / "empty").mkdir()
    (tree / "deep" / "er" / "est").mkdir(parents=True)
    files = {
        "private": (b"secret\n", 0o600),
        "shared": (b"for the group\n", 0o640),
        "tool": (b"#!/bin/sh\n", 0o755),
        "group/inside": (b"in a setgid directory\n", 0o664),
        "new\nline": (b"odd name\n", 0o644),
    }
    for name, (data, mode) in files.items():
        path = tree / name
        path.write_bytes(data)
        os.chmod(path, mode)
    if os.geteuid() == 0:
        os.chown(tree / "shared", 4321, 8765)  # numbers no name stands for
    os.symlink("shared", tree / "relative")
    os.symlink("/etc/hostname", tree / "absolute")  # a file outside: hashed through
    os.symlink("nowhere", tree / "dangling")
    os.symlink("../../outside", tree / "escaping")
    os.symlink("group", tree / "to-dir")
    os.chmod(tree / "group", 0o2775)
    os.chmod(tree / "deep" / "er", 0o700)
    for path in sorted(tree.rglob("*"), key=lambda p: -len(p.parts)):
        os.utime(path, ns=(OLDER, OLD), follow_symlinks=False)
    os.utime(tree, ns=(OLDER, OLDER))
    return tree


def snapshot(tree: Path) -> dict[str, tuple[object, ...]]:
    """Every entry below and including ``tree``: type, mode, mtime, owner, group, and a
    link's target or a file's content. Not compared: atime, ctime, inode numbers."""
    found: dict[str, tuple[object, ...]] = {}
    for path in [tree, *tree.rglob("*")]:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            what: object = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            what = "dir"
        else:
            what = hashlib.sha256(path.read_bytes()).hexdigest()
        mode = None if stat.S_ISLNK(st.st_mode) else stat.S_IMODE(st.st_mode)
        key = path.relative_to(tree.parent).as_posix()
        found[key] = (what, mode, st.st_mtime_ns, st.st_uid, st.st_gid)
    return found


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    make_tree(tmp_path)
    (tmp_path / "restore").mkdir()
    yield tmp_path


def _ok(result: object) -> None:
    assert getattr(result, "returncode") == 0, getattr(result, "stderr").decode()  # noqa: B009


def _round_trip(site: Path, env: dict[str, str], broker_url: str | None = None) -> None:
    """Create with --meta, archive, fetch into ``restore``: the same tree, entry for entry."""
    before = snapshot(site / "t")
    create = ["manifest", "--create", "--dir", "t", "-r", "-m", "t.sha256", "--meta"]
    _ok(run(*create, cwd=site, broker_url=broker_url, **env))
    _ok(run("manifest", "--archive", "-m", "t.sha256", cwd=site, broker_url=broker_url, **env))
    fetched = run(
        "manifest",
        "--fetch",
        "-m",
        "../t.sha256",
        cwd=site / "restore",
        broker_url=broker_url,
        **env,
    )
    _ok(fetched)
    assert b"metadata restored from ../t.sha256.meta: 5 links, 6 directories, 0 failed" in (
        fetched.stderr
    )
    assert snapshot(site / "restore" / "t") == before
    last = fetched.stderr.decode().splitlines()[-1]
    assert without_pace(last) == "dmp: 7 files (62 B) fetched, 0 already present, 0 failed"
    assert not (site / "outside").exists()  # the escaping link was made, not written through
    checked = run(
        "manifest", "--check", "--meta", "-m", "../t.sha256", cwd=site / "restore", broker_url=None
    )
    _ok(checked)
    assert b"METADATA" not in checked.stdout


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_a_round_trip_brings_back_what_tar_would(site: Path, kind: str, s3_server: Service) -> None:
    vault = new_vault(kind, site, s3_server.url)
    _round_trip(site, vault.env)
    # The companion is in the vault under its sha256, and the one-line manifest beside it
    # brings it back, verified.
    companion = (site / "t.sha256.meta").read_bytes()
    named = (site / "t.sha256.meta.sha256").read_bytes()
    assert named == f'{hashlib.sha256(companion).hexdigest()}  "t.sha256.meta"\n'.encode()
    again = site / "again"
    again.mkdir()
    _ok(
        run(
            "manifest",
            "--fetch",
            "-m",
            "../t.sha256.meta.sha256",
            cwd=again,
            broker_url=None,
            **vault.env,
        )
    )
    assert (again / "t.sha256.meta").read_bytes() == companion


def test_the_companion_records_in_manifest_order(site: Path) -> None:
    create = ["manifest", "--create", "--dir", "t", "-r", "-m", "t.sha256", "--meta"]
    _ok(run(*create, cwd=site, broker_url=None))
    lines = (site / "t.sha256.meta").read_bytes().splitlines()
    header, *records, trailer = (json.loads(line) for line in lines)
    assert header == {"format": "dmp-meta", "version": 2}
    manifest = (site / "t.sha256").read_bytes()
    assert trailer["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
    entries = [r["path"] for r in records if r.get("entry")]
    assert len(entries) == manifest.count(b"\n") == trailer["entries"]
    kinds = {r["path"]: r["type"] for r in records}
    assert kinds["t/empty"] == kinds["t/deep/er/est"] == "dir"
    assert kinds["t/dangling"] == kinds["t/to-dir"] == kinds["t/relative"] == "link"
    assert next(r for r in records if r["path"] == "t/shared")["mode"] == "0640"
    assert "t/new\nline" in entries


@pytest.mark.parametrize(
    ("args", "companion"),
    [
        (["--dir", "t", "-r", "-m", "x"], "x.meta"),
        (["--dir", "t", "-m", "x"], "x.meta"),
        (["--dir", "t", "-r", "-m", "x", "--no-meta"], None),
        (["t/tool", "-m", "x"], None),
        (["t/tool", "-m", "x", "--meta"], "x.meta"),
        (["--dir", "t", "--meta-file", "elsewhere.json"], "elsewhere.json"),
    ],
    ids=["dir", "dir-flat", "no-meta", "names", "names-meta", "stdout-meta-file"],
)
def test_a_walk_into_a_manifest_file_records_by_default(
    site: Path, args: list[str], companion: str | None
) -> None:
    before = set(os.listdir(site))
    _ok(run("manifest", "--create", *args, cwd=site, broker_url=None))
    made = set(os.listdir(site)) - before
    assert made == ({"x"} if "x" in args else set()) | ({companion} if companion else set())


def test_check_meta_reports_what_differs_on_lines_of_its_own(site: Path) -> None:
    create = ["manifest", "--create", "--dir", "t", "-r", "-m", "t.sha256", "--meta"]
    _ok(run(*create, cwd=site, broker_url=None))
    os.chmod(site / "t" / "shared", 0o644)
    os.unlink(site / "t" / "dangling")
    plain = run("manifest", "--check", "-m", "t.sha256", cwd=site, broker_url=None)
    _ok(plain)
    checked = run("manifest", "--check", "--meta", "-m", "t.sha256", cwd=site, broker_url=None)
    assert checked.returncode == 1
    content = checked.stdout.partition(b"t: METADATA")[0]
    assert content == plain.stdout  # sha256sum's lines, byte for byte
    assert b"t/shared: METADATA mode 0640 != 0644\n" in checked.stdout
    assert b"t/dangling: METADATA type link != missing\n" in checked.stdout
    assert checked.stderr.endswith(b"dmp: WARNING: 3 entries' metadata did NOT match\n")


def _mangle(lines: list[bytes], how: str) -> list[bytes]:
    if how == "truncated":
        return lines[:-3]
    if how == "reordered":
        entries = [i for i, line in enumerate(lines) if b'"entry":true' in line]
        first, second = entries[0], entries[1]
        lines[first], lines[second] = lines[second], lines[first]
        return lines
    if how == "malformed":
        lines[3] = lines[3][:-5] + b"\n"
        return lines
    if how == "other-path":
        entry = next(i for i, line in enumerate(lines) if b'"entry":true' in line)
        lines[entry] = lines[entry].replace(b'"path":"t/', b'"path":"u/')
        return lines
    raise AssertionError(how)


@pytest.mark.parametrize(
    ("how", "says"),
    [
        ("truncated", "cut short"),
        ("reordered", "not that of manifest line"),
        ("malformed", "not a JSON record"),
        ("other-path", "not that of manifest line"),
        ("other-manifest", "made with another manifest"),
    ],
    ids=["truncated", "reordered", "malformed", "other-path", "other-manifest"],
)
def test_a_companion_that_does_not_match_is_one_error_and_nothing_is_written(
    site: Path, how: str, says: str
) -> None:
    env = new_vault("file", site).env
    create = ["manifest", "--create", "--dir", "t", "-r", "-m", "t.sha256", "--meta"]
    _ok(run(*create, cwd=site, broker_url=None, **env))
    _ok(run("manifest", "--archive", "-m", "t.sha256", cwd=site, broker_url=None, **env))
    companion = site / "t.sha256.meta"
    if how == "other-manifest":
        manifest = site / "t.sha256"  # the same paths, another content
        manifest.write_bytes(b"0" * 64 + manifest.read_bytes()[64:])
    else:
        companion.write_bytes(b"".join(_mangle(companion.read_bytes().splitlines(True), how)))
    for args in (["--fetch"], ["--check", "--meta"]):
        result = run(
            "manifest", *args, "-m", "../t.sha256", cwd=site / "restore", broker_url=None, **env
        )
        one_error(result, 1, says)
        assert result.stdout == b""
    assert os.listdir(site / "restore") == []


def tar_listing(tree: Path) -> list[str]:
    """What `tar -tv` says of a tree (owners by number): modes, owners, sizes, times to
    the minute, link targets."""
    packed = subprocess.run(
        ["tar", "--numeric-owner", "-C", str(tree.parent), "-cf", "-", tree.name],
        check=True,
        capture_output=True,
    ).stdout
    listed = subprocess.run(
        ["tar", "--numeric-owner", "-tvf", "-"], input=packed, check=True, capture_output=True
    )
    return sorted(listed.stdout.decode("utf-8", "replace").splitlines())


def test_tar_lists_both_trees_alike(site: Path) -> None:
    _round_trip(site, new_vault("file", site).env)
    assert tar_listing(site / "restore" / "t") == tar_listing(site / "t")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root gives files away")
@pytest.mark.parametrize("by_name", [False, True], ids=["by-number", "by-name"])
def test_owners_come_back_by_number_or_by_name(site: Path, by_name: bool) -> None:
    """A record whose number and name disagree on this system (moved between sites):
    by number unless --owner-names asks for the name."""
    env = new_vault("file", site).env
    create = ["manifest", "--create", "--dir", "t", "-r", "-m", "t.sha256", "--meta"]
    _ok(run(*create, cwd=site, broker_url=None, **env))
    _ok(run("manifest", "--archive", "-m", "t.sha256", cwd=site, broker_url=None, **env))
    companion = site / "t.sha256.meta"
    records = [json.loads(line) for line in companion.read_bytes().splitlines()]
    for rec in records:
        if rec.get("path") == "t/tool":
            rec.update(uid=4242, gid=4343, user="nobody", group="nogroup")
    companion.write_bytes(b"".join(json.dumps(rec).encode() + b"\n" for rec in records))
    fetch = ["manifest", "--fetch", "-m", "../t.sha256", *(["--owner-names"] if by_name else [])]
    _ok(run(*fetch, cwd=site / "restore", broker_url=None, **env))
    st = os.lstat(site / "restore" / "t" / "tool")
    nobody = (pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid)
    assert (st.st_uid, st.st_gid) == (nobody if by_name else (4242, 4343))
    assert stat.S_IMODE(st.st_mode) == 0o755


def test_fetch_again_leaves_everything_as_it_is(site: Path) -> None:
    env = new_vault("file", site).env
    _round_trip(site, env)
    before = snapshot(site / "restore" / "t")
    again = run(
        "manifest", "--fetch", "-m", "../t.sha256", cwd=site / "restore", broker_url=None, **env
    )
    _ok(again)
    assert snapshot(site / "restore" / "t") == before


def test_a_link_in_the_way_is_not_written_through(site: Path) -> None:
    """A link the fetch did not make, where a recorded directory goes: refused, and
    nothing reaches what it points to."""
    env = new_vault("file", site).env
    create = ["manifest", "--create", "--dir", "t", "-r", "-m", "t.sha256", "--meta"]
    _ok(run(*create, cwd=site, broker_url=None, **env))
    _ok(run("manifest", "--archive", "-m", "t.sha256", cwd=site, broker_url=None, **env))
    victim = site / "victim"
    victim.mkdir()
    (site / "restore" / "t").mkdir()
    os.symlink(victim, site / "restore" / "t" / "empty")
    result = run(
        "manifest", "--fetch", "-m", "../t.sha256", cwd=site / "restore", broker_url=None, **env
    )
    assert result.returncode == 1
    assert b"dmp: t/empty: is a symbolic link; dmp does not write through it\n" in result.stderr
    assert os.listdir(victim) == [] and stat.S_IMODE(os.stat(victim).st_mode) == 0o755


@pytest.fixture(scope="module")
def fleet(redis: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logdir = tmp_path_factory.mktemp("meta-fleet-logs")
    url = redis.url.rsplit("/", 1)[0] + "/11"  # a database of its own: no other test's workers
    with worker(url, "meta1", logdir), worker(url, "meta2", logdir):
        yield url


def test_through_the_fleet_the_same_companion_and_the_same_tree(site: Path, fleet: str) -> None:
    env = new_vault("file", site).env
    create = ["manifest", "--create", "--dir", "t", "-r", "--meta"]
    _ok(run(*create, "-m", "local.sha256", cwd=site, broker_url=None))
    _ok(run(*create, "-m", "fleet.sha256", cwd=site, broker_url=fleet))
    detached = run(*create, "-m", "detached.sha256", "--detach", cwd=site, broker_url=fleet)
    _ok(detached)
    job = detached.stdout.decode().strip()
    _ok(run("job", "watch", job, cwd=site, broker_url=fleet))
    local = (site / "local.sha256.meta").read_bytes()
    assert (site / "fleet.sha256.meta").read_bytes() == local
    assert (site / "detached.sha256.meta").read_bytes() == local
    _round_trip(site, env, broker_url=fleet)
    # A detached fetch: files written (and their metadata applied) by the workers, the
    # links and directories by its coordinator, at the end.
    elsewhere = site / "elsewhere"
    elsewhere.mkdir()
    detached = run(
        "manifest",
        "--fetch",
        "--detach",
        "-m",
        "../t.sha256",
        cwd=elsewhere,
        broker_url=fleet,
        **env,
    )
    _ok(detached)
    _ok(run("job", "watch", detached.stdout.decode().strip(), cwd=site, broker_url=fleet))
    assert snapshot(elsewhere / "t") == snapshot(site / "restore" / "t")


def test_a_detached_check_meta_says_what_differs_and_fails(site: Path, fleet: str) -> None:
    """--check --meta --detach: the job passes while nothing differs; else `dmp job watch`
    says each entry that differs in the line the attached check prints, and the job
    fails with the attached check's warning."""
    create = ["manifest", "--create", "--dir", "t", "-r", "-m", "t.sha256", "--meta"]
    _ok(run(*create, cwd=site, broker_url=None))
    check = ["manifest", "--check", "--meta", "-m", "t.sha256"]

    def detached() -> tuple[subprocess.CompletedProcess[bytes], str]:
        submitted = run(*check, "--detach", cwd=site, broker_url=fleet)
        _ok(submitted)
        job = submitted.stdout.decode().strip()
        return run("job", "watch", job, cwd=site, broker_url=fleet), job

    _ok(detached()[0])
    os.chmod(site / "t" / "shared", 0o644)
    os.unlink(site / "t" / "dangling")
    attached = run(*check, cwd=site, broker_url=None)
    said = [line for line in attached.stdout.splitlines() if b": METADATA " in line]
    assert len(said) == 3, attached.stdout  # the mode, the link, and t's mtime
    watched, job = detached()
    assert watched.returncode == 1
    err = watched.stderr.splitlines()
    assert [line for line in err if b": METADATA " in line] == [b"dmp: " + s for s in said]
    assert b"dmp: 3 entries' metadata did NOT match" in err
    status = run("--json", "job", "status", job, cwd=site, broker_url=fleet)
    assert status.returncode == 1
    rows = [json.loads(line) for line in status.stdout.splitlines()[1:]]
    assert [row["path"] for row in rows if row["status"] == "metadata"] == [
        s.partition(b": METADATA")[0].decode() for s in said
    ]


def _as_version_1(companion: Path) -> None:
    """Rewrite a companion as an older dmp wrote it: format version 1, without the
    fields version 2 added."""
    header, *records = (json.loads(line) for line in companion.read_bytes().splitlines())
    header["version"] = 1
    for record in records:
        for key in ("ctime_ns", "ino", "dev", "nlink", "xattrs"):
            record.pop(key, None)
    lines = [json.dumps(value, ensure_ascii=False) for value in (header, *records)]
    companion.write_text("".join(line + "\n" for line in lines))


def test_records_carry_ctime_inode_device_and_link_count(site: Path) -> None:
    os.link(site / "t" / "tool", site / "t" / "tool-again")
    create = ["manifest", "--create", "--dir", "t", "-r", "-m", "t.sha256"]
    _ok(run(*create, cwd=site, broker_url=None))
    lines = (site / "t.sha256.meta").read_bytes().splitlines()[1:-1]
    records = {r["path"]: r for r in (json.loads(line) for line in lines)}
    for name in ("t/tool", "t/tool-again", "t/empty", "t/dangling"):
        st = os.lstat(site / name)
        got = records[name]
        assert (got["ctime_ns"], got["ino"], got["dev"], got["nlink"]) == (
            st.st_ctime_ns,
            st.st_ino,
            st.st_dev,
            st.st_nlink,
        )
    assert records["t/tool"]["nlink"] == records["t/tool-again"]["nlink"] == 2


def test_an_older_companion_still_restores(site: Path) -> None:
    env = new_vault("file", site).env
    create = ["manifest", "--create", "--dir", "t", "-r", "-m", "t.sha256"]
    _ok(run(*create, cwd=site, broker_url=None, **env))
    _ok(run("manifest", "--archive", "-m", "t.sha256", cwd=site, broker_url=None, **env))
    _as_version_1(site / "t.sha256.meta")
    fetch = ["manifest", "--fetch", "-m", "../t.sha256"]
    _ok(run(*fetch, cwd=site / "restore", broker_url=None, **env))
    assert tar_listing(site / "restore" / "t") == tar_listing(site / "t")


def test_a_companion_from_a_newer_dmp_is_refused_with_its_version(site: Path) -> None:
    env = new_vault("file", site).env
    create = ["manifest", "--create", "--dir", "t", "-r", "-m", "t.sha256"]
    _ok(run(*create, cwd=site, broker_url=None, **env))
    companion = site / "t.sha256.meta"
    first, rest = companion.read_bytes().split(b"\n", 1)
    companion.write_bytes(first.replace(b'"version":2', b'"version":7') + b"\n" + rest)
    result = run(
        "manifest", "--fetch", "-m", "../t.sha256", cwd=site / "restore", broker_url=None, **env
    )
    one_error(result, 1, "made by a newer dmp (companion format version 7;")
    assert os.listdir(site / "restore") == []
