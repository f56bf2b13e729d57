"""--fetch into a target that takes no more files: full (ENOSPC), over quota (EDQUOT) or
read-only (EROFS) stops the run at the first file, with one line naming it, as a missing
bucket does; a permission denied (EACCES) fails that file alone. No partial file either
way, and what was fetched before the stop is whole and stays.

Real filesystems: a 1 MiB tmpfs mounted for the test (full; read-only), and a fetch run
without the power to pass over a file's permissions into a directory it may not write.
EDQUOT is injected with ``tests.integration.faults``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dmp_cli.manifest import Entry, format_line
from tests.integration.fleet import fleet_env, run, worker
from tests.integration.manifest_helpers import without_pace
from tests.integration.vaultkit import sha, stderr_lines, vault_path
from tests.servers import REPO, Service, dmp_env, run_dmp

pytestmark = pytest.mark.integration

# Thirty files of 100 KiB, ten to a directory: about ten fit in a 1 MiB tmpfs.
FILES = {f"d{i // 10}/f{i:02}": bytes([i]) * (100 << 10) for i in range(30)}
# Root without the capabilities that pass over a file's permissions: it meets them as any
# user does. (Not another user: one may not be able to run this interpreter at all, as
# none but root can load pyenv's, whose libpython lies under root's home.)
BOUND = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"]


@contextmanager
def tmpfs(where: Path, *options: str) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted at ``where`` for the test (root needed: CI runs as root)."""
    where.mkdir(exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", ",".join(("size=1m", *options)), "tmpfs", str(where)]
    done = subprocess.run(mount, capture_output=True)
    if done.returncode:
        pytest.fail(f"cannot mount a tmpfs at {where}: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode:
            subprocess.run(["umount", "--lazy", str(where)], check=True)


def stock(root: Path, files: dict[str, bytes] = FILES) -> tuple[Path, Path]:
    """A file:// vault under ``root`` holding the files' content, and their manifest."""
    vault = root / "vault"
    for data in files.values():
        path = vault_path(vault, data)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    manifest = root / "m.sha256"
    manifest.write_bytes(b"".join(format_line(Entry(sha(d), n)) for n, d in files.items()))
    return vault, manifest


def fetched_whole(target: Path) -> list[str]:
    """The files under ``target``, each checked whole; no temporary among them."""
    names = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    for name in names:
        assert (target / name).read_bytes() == FILES[name], name
    return names


def stopped_at(err: list[str], reason: str) -> str:
    """The one line of a stopped fetch: the file it stopped at."""
    assert len(err) == 1, err
    found = re.fullmatch(
        rf"dmp: (d\d/f\d\d): {re.escape(reason)}; fetch stopped, as no later file could be "
        "written",
        err[0],
    )
    assert found, err
    return found[1]


@pytest.fixture(params=["embedded", "fleet"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    if request.param == "embedded":
        yield None
        return
    redis: Service = request.getfixturevalue("redis")
    with worker(redis.url, "fetcher", tmp_path):
        yield redis.url


def test_full_disk_stops_the_fetch(tmp_path: Path, broker: str | None) -> None:
    vault, manifest = stock(tmp_path)
    env = {"DMP_VAULT": f"file://{vault}"}
    with tmpfs(tmp_path / "full") as target:
        args = ["manifest", "--fetch", "-m", str(manifest)]
        result = run(*args, cwd=target, broker_url=broker, **env)
        failed = stopped_at(stderr_lines(result), "No space left on device")
        assert result.returncode == 1
        names = fetched_whole(target)
        assert failed not in names  # no partial file
        assert 0 < len(names) < len(FILES) // 2
        shown = result.stdout.decode().splitlines()
        assert set(shown) <= {f"{n}: fetched (100.0 KiB)" for n in names}, shown
        if broker is not None:  # its job, looked at from elsewhere, says the stop once
            listed = run("--json", "job", "list", cwd=target, broker_url=broker)
            job = json.loads(listed.stdout.splitlines()[0])["id"]
            status = run("job", "status", job, cwd=target, broker_url=broker)
            assert stopped_at(stderr_lines(status), "No space left on device") == failed
        if broker is None:  # once there is room, a fetch again brings the rest
            subprocess.run(["mount", "-o", "remount,size=4m", str(target)], check=True)
            again = run(*args, cwd=target, broker_url=None, **env)
            assert again.returncode == 0, again.stderr
            assert without_pace(stderr_lines(again)[-1]).endswith(
                f" fetched, {len(names)} already present, 0 failed"
            )
            assert fetched_whole(target) == sorted(FILES)


def test_read_only_target_stops_the_fetch_at_the_first_file(tmp_path: Path) -> None:
    vault, manifest = stock(tmp_path)
    env = fleet_env(None, DMP_VAULT=f"file://{vault}")
    with tmpfs(tmp_path / "ro", "ro") as target:
        result = run_dmp("manifest", "--fetch", "-m", str(manifest), cwd=target, env=env)
        assert stopped_at(stderr_lines(result), "Read-only file system") == "d0/f00"
        assert (result.returncode, result.stdout) == (1, b"")
        assert os.listdir(target) == []


def test_quota_exceeded_stops_the_fetch(tmp_path: Path) -> None:
    vault, manifest = stock(tmp_path)
    plan = tmp_path / "plan.json"
    victim = "d1/f15"
    fault = {"target": "store.get_file", "victim": "f15", "error": "EDQUOT"}
    plan.write_text(json.dumps({**fault, "digest": sha(FILES[victim])}))
    target = tmp_path / "restore"
    target.mkdir()
    env = fleet_env(None, DMP_VAULT=f"file://{vault}", DMP_TEST_FAULTS=str(plan), DMP_JOBS="1")
    faulty = [sys.executable, "-m", "tests.integration.faults"]
    result = subprocess.run(
        [*faulty, "manifest", "--fetch", "-m", str(manifest)],
        cwd=target,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert stopped_at(stderr_lines(result), "Disk quota exceeded (injected)") == victim
    names = fetched_whole(target)
    assert victim not in names
    assert names[:15] == sorted(FILES)[:15]  # those before it, in order, all fetched


def test_permission_denied_fails_only_that_directory(tmp_path: Path) -> None:
    bound = subprocess.run([*BOUND, "true"], capture_output=True, check=False)
    if bound.returncode:  # no CAP_SETPCAP: not root, or a container that keeps it
        pytest.skip(f"cannot drop capabilities here: {bound.stderr.decode().strip()}")
    files = {name: FILES[name] for name in ("d0/f00", "d0/f01", "d1/f10", "d1/f11", "d2/f20")}
    vault, manifest = stock(tmp_path, files)
    target = tmp_path / "restore"
    target.mkdir()
    (target / "d1").mkdir(mode=0o555)  # not writable, even by its owner
    env = dmp_env(DMP_VAULT=f"file://{vault}", PYTHONPATH=REPO)
    result = subprocess.run(
        [*BOUND, sys.executable, "-m", "dmp_cli", "manifest", "--fetch", "-m", str(manifest)],
        cwd=target,
        env=env,
        capture_output=True,
        timeout=120,
    )
    err = stderr_lines(result)
    assert result.returncode == 1, err
    assert [*err[:-1], without_pace(err[-1])] == [
        "dmp: d1/f10: Permission denied",
        "dmp: d1/f11: Permission denied",
        "dmp: 3 files (300.0 KiB) fetched, 0 already present, 2 failed",
    ]
    assert os.listdir(target / "d1") == []
    assert sorted(p.name for p in target.rglob("f*")) == ["f00", "f01", "f20"]


def test_full_disk_stops_a_detached_fetch(tmp_path: Path, redis: Service) -> None:
    """Detached, the fetch stops as it does attached: the job fails, and `dmp job watch`
    says which file it stopped at in the one line the attached command says (not once for
    every file in flight that met the full disk too), `dmp job status` as its reason; no
    partial file is left. The coordinator runs on a worker, with a second process for batches."""
    vault, manifest = stock(tmp_path)
    env = {"DMP_VAULT": f"file://{vault}"}
    url = redis.url.rsplit("/", 1)[0] + "/13"  # a database of its own: this worker alone
    with (
        worker(url, "coordinator", tmp_path, concurrency=2),
        tmpfs(tmp_path / "full") as target,
    ):
        args = ["manifest", "--fetch", "-m", str(manifest), "--detach"]
        submitted = run(*args, cwd=target, broker_url=url, **env)
        assert submitted.returncode == 0, submitted.stderr
        job = submitted.stdout.decode().strip()
        watched = run("job", "watch", job, cwd=target, broker_url=url, timeout=120, **env)
        status = run("job", "status", job, cwd=target, broker_url=url, **env)
        record = run("--json", "job", "status", job, cwd=target, broker_url=url, **env)
        names = fetched_whole(target)  # before the tmpfs goes
    assert (watched.returncode, status.returncode, record.returncode) == (1, 1, 1)
    said = stderr_lines(watched)
    assert re.fullmatch(rf"dmp: job {job} failed: 30 files \(.*\)", said[-1]), said
    failed = stopped_at(said[:-1], "No space left on device")
    stop = f"{failed}: No space left on device; fetch stopped, as no later file could be written"
    assert f"failed:   {stop}\n".encode() in status.stdout
    assert status.stderr == b""  # the stop is its reason, above, not a line a file
    assert failed not in names  # no partial file
    assert 0 < len(names) < len(FILES) // 2
    # Machines still get every file's row, the stop marked on those it stopped.
    rows = [json.loads(line) for line in record.stdout.splitlines()[1:]]
    assert rows and all(row["fatal"] for row in rows), rows
    assert failed in {row["path"] for row in rows}
