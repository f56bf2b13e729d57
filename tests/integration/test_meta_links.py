"""What `tar --xattrs --acls` keeps besides, kept: hard links (one file fetched, its other
names linked to it), extended attributes and POSIX ACLs (access and default), recorded by
--create, restored by --fetch and compared by --check --meta; embedded on a file:// vault
and on moto's S3, and through the fleet, attached and detached. Both trees are compared
with `getfattr`, `getfacl` and the link counts `stat` gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.fleet import new_vault, run, worker
from tests.integration.manifest_helpers import without_pace
from tests.integration.vaultkit import stderr_lines
from tests.servers import REPO, Service, dmp_env

pytestmark = pytest.mark.integration

OLD = 978_307_200_123_456_789  # 2001-01-01, with nanoseconds
ROOT = os.geteuid() == 0
# Root without CAP_SYS_ADMIN, which trusted.* attributes need: the target refuses them.
NO_ADMIN = ["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-all"]
CREATE = ["manifest", "--create", "--dir", "t", "-r", "-m", "t.sha256"]


def make_tree(root: Path) -> Path:
    """Three names of one file across directories and a pair of another, user.*
    attributes on files and a directory (one not UTF-8), an access ACL naming a user by
    number, a directory with a default ACL whose files inherit it, and, as root, a
    trusted.* attribute."""
    tree = root / "t"
    for sub in ("d", "shared", "plain"):
        (tree / sub).mkdir(parents=True)
    (tree / "a").write_bytes(b"one file, three names\n")
    os.link(tree / "a", tree / "d" / "a2")
    os.link(tree / "a", tree / "plain" / "a3")
    (tree / "pair").write_bytes(b"two names\n")
    os.link(tree / "pair", tree / "pair2")
    (tree / "d" / "b").write_bytes(b"with an ACL\n")
    (tree / "plain" / "c").write_bytes(b"nothing special\n")
    os.setxattr(tree / "a", "user.color", b"blue")
    os.setxattr(tree / "d" / "b", "user.raw", b"\x00\xff\x01")
    os.setxattr(tree / "d", "user.dir", b"yes")
    _acl("-m", "u:4242:r", tree / "d" / "b")
    _acl("-d", "-m", "u:4243:rwx,g:4244:rx", tree / "shared")
    (tree / "shared" / "inherits").write_bytes(b"in a directory with a default ACL\n")
    os.chmod(tree / "d" / "b", 0o640)
    if ROOT:
        os.setxattr(tree / "pair", "trusted.note", b"root only")
    for path in sorted(tree.rglob("*"), key=lambda p: -len(p.parts)):
        os.utime(path, ns=(OLD, OLD), follow_symlinks=False)
    return tree


def _acl(*args: str | Path) -> None:
    subprocess.run(["setfacl", *map(str, args)], check=True)


def _blocks(text: str) -> dict[str, str]:
    """`getfattr -R` and `getfacl -R` output by the entry it describes (their order
    follows the directory's, which two trees need not share)."""
    found = {}
    for block in text.strip().split("\n\n"):
        head, _, rest = block.partition("\n")
        found[head] = rest
    return found


def attributes(top: Path) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """Of the tree ``t`` under ``top``: `getfattr -d -m -` (every attribute, not
    following links), `getfacl` and each entry's link count (`stat -c %h`)."""
    getfattr = ["getfattr", "-R", "-P", "-h", "-d", "-m", "-", "-e", "base64", "t"]
    xattrs = subprocess.run(getfattr, cwd=top, check=True, capture_output=True, text=True)
    acls = subprocess.run(
        ["getfacl", "-R", "-P", "-n", "t"], cwd=top, check=True, capture_output=True, text=True
    )
    names = sorted(str(p.relative_to(top)) for p in (top / "t").rglob("*"))
    counts = subprocess.run(
        ["stat", "-c", "%n %h", *names], cwd=top, check=True, capture_output=True, text=True
    )
    return _blocks(xattrs.stdout), _blocks(acls.stdout), counts.stdout.splitlines()


def inodes(top: Path) -> dict[str, int]:
    return {str(p.relative_to(top)): os.lstat(p).st_ino for p in (top / "t").rglob("*")}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    make_tree(tmp_path)
    (tmp_path / "restore").mkdir()
    yield tmp_path


def _ok(result: subprocess.CompletedProcess[bytes]) -> None:
    assert result.returncode == 0, result.stderr.decode()


def _archived(site: Path, env: dict[str, str], broker_url: str | None = None) -> None:
    _ok(run(*CREATE, cwd=site, broker_url=broker_url, **env))
    _ok(run("manifest", "--archive", "-m", "t.sha256", cwd=site, broker_url=broker_url, **env))


FETCHED = sorted(
    [
        b"t/a: fetched (22 B)",
        b"t/d/a2: fetched (22 B)",
        b"t/d/b: fetched (12 B)",
        b"t/pair: fetched (10 B)",
        b"t/pair2: fetched (10 B)",
        b"t/plain/a3: fetched (22 B)",
        b"t/plain/c: fetched (16 B)",
        b"t/shared/inherits: fetched (34 B)",
    ]
)


def _round_trip(site: Path, env: dict[str, str], broker_url: str | None = None) -> None:
    """Create, archive, fetch into ``restore``: the same attributes, ACLs and links; a
    linked name counts as fetched, as before; --check --meta finds nothing; a second
    fetch changes nothing."""
    before = attributes(site)
    _archived(site, env, broker_url)
    fetch = ["manifest", "--fetch", "-m", "../t.sha256"]
    fetched = run(*fetch, cwd=site / "restore", broker_url=broker_url, **env)
    _ok(fetched)
    assert sorted(fetched.stdout.splitlines()) == FETCHED
    last = fetched.stderr.decode().splitlines()[-1]
    assert without_pace(last) == "dmp: 8 files (148 B) fetched, 0 already present, 0 failed"
    assert attributes(site / "restore") == before
    restored = inodes(site / "restore")
    assert restored["t/a"] == restored["t/d/a2"] == restored["t/plain/a3"]
    assert restored["t/pair"] == restored["t/pair2"] != restored["t/a"]
    checked = run(
        *fetch[:1], "--check", "--meta", *fetch[2:], cwd=site / "restore", broker_url=None
    )
    _ok(checked)
    assert b"METADATA" not in checked.stdout
    again = run(*fetch, cwd=site / "restore", broker_url=broker_url, **env)
    _ok(again)
    assert inodes(site / "restore") == restored
    assert attributes(site / "restore") == before


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_links_attributes_and_acls_come_back(site: Path, kind: str, s3_server: Service) -> None:
    _round_trip(site, new_vault(kind, site, s3_server.url).env)


def test_the_companion_records_what_is_restored(site: Path) -> None:
    _ok(run(*CREATE, cwd=site, broker_url=None))
    lines = (site / "t.sha256.meta").read_bytes().splitlines()[1:-1]
    records = {r["path"]: r for r in map(json.loads, lines)}
    assert records["t/a"]["nlink"] == 3 and records["t/pair"]["nlink"] == 2
    assert set(records["t/d/b"]["xattrs"]) == {"user.raw", "system.posix_acl_access"}
    assert set(records["t/shared"]["xattrs"]) == {"system.posix_acl_default"}
    assert set(records["t/shared/inherits"]["xattrs"]) == {"system.posix_acl_access"}
    assert "xattrs" not in records["t/plain/c"]


@pytest.fixture(scope="module")
def fleet(
    redis: Service, s3_server: Service, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Two workers (a file's names may be fetched by either), both able to reach S3."""
    logdir = tmp_path_factory.mktemp("meta-links-logs")
    url = redis.url.rsplit("/", 1)[0] + "/4"  # a database of its own: no other test's workers
    env = {"AWS_ENDPOINT_URL": s3_server.url}
    with worker(url, "links1", logdir, **env), worker(url, "links2", logdir, **env):
        yield url


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_through_the_fleet_too(site: Path, kind: str, fleet: str, s3_server: Service) -> None:
    vault = new_vault(kind, site, s3_server.url)
    _round_trip(site, vault.env, broker_url=fleet)
    # Detached: the files written by the workers, the rest by its coordinator.
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
        **vault.env,
    )
    _ok(detached)
    _ok(run("job", "watch", detached.stdout.decode().strip(), cwd=site, broker_url=fleet))
    assert attributes(elsewhere) == attributes(site)
    restored = inodes(elsewhere)
    assert restored["t/a"] == restored["t/d/a2"] == restored["t/plain/a3"]


@pytest.mark.skipif(not ROOT, reason="only root records trusted.* attributes")
def test_an_attribute_the_target_refuses_is_one_line_and_the_rest_comes_back(
    site: Path,
) -> None:
    bound = subprocess.run([*NO_ADMIN, "true"], capture_output=True, check=False)
    if bound.returncode:
        pytest.skip(f"cannot drop capabilities here: {bound.stderr.decode().strip()}")
    env = new_vault("file", site).env
    _archived(site, env)
    fetch = [sys.executable, "-m", "dmp_cli", "manifest", "--fetch", "-m", "../t.sha256"]
    for attempt in ("first", "again"):
        result = subprocess.run(
            [*NO_ADMIN, *fetch],
            cwd=site / "restore",
            env=dmp_env(PYTHONPATH=REPO, **env),
            capture_output=True,
            timeout=120,
        )
        err = stderr_lines(result)
        assert result.returncode == 1, err
        said = [line for line in err if "t/pair" in line]
        refused = "extended attribute trusted.note not restored: Operation not permitted"
        assert said == [f"dmp: t/{name}: {refused}" for name in ("pair", "pair2")], err
        moved = "6 files (128 B) fetched, 0" if attempt == "first" else "0 files (0 B) fetched, 6"
        assert without_pace(err[-1]) == f"dmp: {moved} already present, 2 failed"
    # Its content, its other name and everything else are there all the same.
    restored = site / "restore"
    assert (restored / "t" / "pair").read_bytes() == b"two names\n"
    assert os.lstat(restored / "t" / "pair").st_ino == os.lstat(restored / "t" / "pair2").st_ino
    xattrs, acls, counts = attributes(site)
    del xattrs["# file: t/pair"], xattrs["# file: t/pair2"]  # trusted.note, under both names
    got = attributes(restored)
    assert {k: v for k, v in got[0].items() if "t/pair" not in k} == xattrs
    assert got[1:] == (acls, counts)


def test_check_meta_says_an_attribute_changed_and_a_link_broken(site: Path) -> None:
    _ok(run(*CREATE, cwd=site, broker_url=None))
    tree = site / "t"
    top = os.lstat(tree).st_mtime_ns
    os.setxattr(tree / "a", "user.color", b"red")
    os.removexattr(tree / "d" / "b", "user.raw")
    _acl("-m", "u:4245:rw", tree / "shared" / "inherits")
    copy = tree / "pair2.new"
    copy.write_bytes((tree / "pair2").read_bytes())  # the same content, another file
    os.utime(copy, ns=(OLD, OLD))
    os.chmod(copy, os.lstat(tree / "pair2").st_mode)
    os.rename(copy, tree / "pair2")
    os.utime(tree, ns=(top, top))
    checked = run("manifest", "--check", "--meta", "-m", "t.sha256", cwd=site, broker_url=None)
    assert checked.returncode == 1
    said = sorted(line for line in checked.stdout.splitlines() if b": METADATA " in line)
    acl = "user::rw-,user:4243:rwx,group::r-x,group:4244:r-x,mask::rw-,other::r--"
    wider = "user::rw-,user:4243:rwx,user:4245:rw-,group::r-x,group:4244:r-x,mask::rwx,other::r--"
    assert said == [
        b"t/a: METADATA xattr user.color 'blue' != 'red'",
        b"t/d/a2: METADATA xattr user.color 'blue' != 'red'",
        b"t/d/b: METADATA xattr user.raw base64:AP8B != none",
        b"t/pair2: METADATA "
        + (b"xattr trusted.note 'root only' != none, " if ROOT else b"")
        + b"hard link of t/pair != another file",
        b"t/plain/a3: METADATA xattr user.color 'blue' != 'red'",
        b"t/shared/inherits: METADATA mode 0664 != 0674, "  # the ACL's mask is the group's
        + f"xattr system.posix_acl_access {acl} != {wider}".encode(),
    ]
    assert checked.stderr.endswith(b"dmp: WARNING: 6 entries' metadata did NOT match\n")


def test_a_later_name_is_not_lost_when_its_first_name_fails(site: Path) -> None:
    """The first name is in the way (another content, no --overwrite): the later names
    are fetched each on their own, whole, and said not to be linked."""
    env = new_vault("file", site).env
    _archived(site, env)
    target = site / "restore" / "t"
    target.mkdir()
    (target / "a").write_bytes(b"something else\n")
    result = run(
        "manifest", "--fetch", "-m", "../t.sha256", cwd=site / "restore", broker_url=None, **env
    )
    assert result.returncode == 1
    err = stderr_lines(result)
    assert err[0].startswith("dmp: t/a: exists with another checksum")
    assert sorted(err[1:3]) == [
        "dmp: t/d/a2: not a hard link of t/a as recorded: their contents differ",
        "dmp: t/plain/a3: not a hard link of t/a as recorded: their contents differ",
    ]
    for name in ("d/a2", "plain/a3"):
        assert (target / name).read_bytes() == b"one file, three names\n"
    assert (target / "a").read_bytes() == b"something else\n"


def test_a_later_name_already_there_as_a_copy_is_linked(site: Path) -> None:
    """A later name present as a file of its own with the content (fetched while its
    first name was not yet there, or copied): linked to the first at the end."""
    env = new_vault("file", site).env
    _archived(site, env)
    target = site / "restore" / "t"
    (target / "plain").mkdir(parents=True)
    (target / "plain" / "a3").write_bytes(b"one file, three names\n")
    fetched = run(
        "manifest", "--fetch", "-m", "../t.sha256", cwd=site / "restore", broker_url=None, **env
    )
    _ok(fetched)
    assert b"t/plain/a3: already present\n" in fetched.stdout
    restored = inodes(site / "restore")
    assert restored["t/a"] == restored["t/d/a2"] == restored["t/plain/a3"]
    assert attributes(site / "restore") == attributes(site)


def test_an_older_companion_restores_as_before(site: Path) -> None:
    """Format version 1 recorded neither links nor attributes: each name comes back as a
    file of its own, with no attribute, and --check --meta finds nothing amiss."""
    env = new_vault("file", site).env
    _archived(site, env)
    companion = site / "t.sha256.meta"
    header, *records = map(json.loads, companion.read_bytes().splitlines())
    header["version"] = 1
    for record in records:
        for key in ("ctime_ns", "ino", "dev", "nlink", "xattrs"):
            record.pop(key, None)
    companion.write_text("".join(json.dumps(v) + "\n" for v in (header, *records)))
    fetch = ["manifest", "--fetch", "-m", "../t.sha256"]
    _ok(run(*fetch, cwd=site / "restore", broker_url=None, **env))
    restored = site / "restore" / "t"
    assert len({os.lstat(restored / n).st_ino for n in ("a", "d/a2", "plain/a3")}) == 3
    assert os.listxattr(restored / "a") == []
    assert os.listxattr(restored / "d") == []
    checked = run(
        "manifest", "--check", "--meta", "-m", "../t.sha256", cwd=site / "restore", broker_url=None
    )
    _ok(checked)
