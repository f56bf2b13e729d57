"""`--vault`, `--archive` and `--fetch` with `--detach`: the job the fleet runs does what
the attached command does, and `dmp job watch` follows it to the end with its exit status."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dmp_cli.layout import digest_key
from tests.integration.fleet import Vault, new_vault, run, worker
from tests.integration.vaultkit import FILES, make_tree, sha
from tests.servers import Service

pytestmark = pytest.mark.integration

OBJECTS = {digest_key(sha(data)): data for data in FILES.values()}


@pytest.fixture(scope="module")
def fleet(
    redis: Service, s3_server: Service, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Two workers on the session's Redis, both able to reach the S3 server."""
    logdir = tmp_path_factory.mktemp("detach-logs")
    env = {"AWS_ENDPOINT_URL": s3_server.url}
    with worker(redis.url, "d1", logdir, **env), worker(redis.url, "d2", logdir, **env):
        yield redis.url


@pytest.fixture(params=["file", "s3"])
def vault(request: pytest.FixtureRequest, tmp_path: Path) -> Vault:
    s3_url = request.getfixturevalue("s3_server").url if request.param == "s3" else None
    return new_vault(request.param, tmp_path, s3_url)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    make_tree(work)
    return work


def dmp(
    fleet: str | None, vault: Vault, cwd: Path, *args: str
) -> subprocess.CompletedProcess[bytes]:
    result = run(*args, cwd=cwd, broker_url=fleet, **vault.env)
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    return result


def submit(fleet: str, vault: Vault, cwd: Path, *args: str) -> str:
    """Submit a manifest command with --detach; returns the job id it printed."""
    submitted = dmp(fleet, vault, cwd, "manifest", *args, "--detach", "-m", "manifest.sha256")
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.decode().strip()
    assert len(job) == 12
    assert (
        f"dmp: job {job} submitted; follow it with `dmp job watch {job}`\n"
        in submitted.stderr.decode()
    )
    return job


def watch(
    fleet: str, vault: Vault, cwd: Path, job: str, files: int = len(FILES)
) -> tuple[int, str, dict[str, int]]:
    """`dmp job watch` to the end: its exit status, its stderr, and the job's counts."""
    watched = dmp(fleet, vault, cwd, "job", "watch", job)
    status = dmp(fleet, vault, cwd, "--json", "job", "status", job)
    record = json.loads(status.stdout.splitlines()[0])
    assert record["state"] == ("failed" if record["failed"] else "done")
    assert status.returncode == watched.returncode  # status and watch say the same
    assert record["files"] == record["total"] == files
    return watched.returncode, watched.stderr.decode(), record["counts"]


def test_detached_archive_equals_attached(
    fleet: str, vault: Vault, work: Path, tmp_path: Path
) -> None:
    job = submit(fleet, vault, work, "--archive")
    code, err, counts = watch(fleet, vault, work, job)
    assert code == 0, err
    # The manifest names a.txt's content twice: uploaded once, the copy skipped, as attached.
    assert counts == {"uploaded": 3, "skipped": 1}
    assert vault.objects() == OBJECTS
    status = dmp(fleet, vault, work, "--json", "job", "status", job)
    record = json.loads(status.stdout.splitlines()[0])
    assert record["bytes_total"] == sum(len(data) for data in FILES.values())  # an ETA by bytes

    attached = new_vault(
        "file" if vault.url.startswith("file:") else "s3", tmp_path, vault.endpoint
    )
    archived = dmp(fleet, attached, work, "manifest", "--archive", "-m", "manifest.sha256")
    assert archived.returncode == 0, archived.stderr
    assert attached.objects() == vault.objects()

    again = submit(fleet, vault, work, "--archive")
    code, err, counts = watch(fleet, vault, work, again)
    assert code == 0, err
    assert counts == {"skipped": 4}  # a rerun uploads nothing
    assert vault.objects() == OBJECTS


def test_detached_archive_to_path(fleet: str, vault: Vault, tmp_path: Path) -> None:
    """With --path the files go under it, and into the vault by server-side copy."""
    # moto's server answers 404 to a PUT of a key with a newline (S3 takes it), so this
    # tree leaves that name out.
    files = {name: data for name, data in FILES.items() if "\n" not in name}
    work = tmp_path / "plain"
    work.mkdir()
    make_tree(work, files)
    dest = new_vault("file" if vault.url.startswith("file:") else "s3", tmp_path, vault.endpoint)
    job = submit(fleet, vault, work, "--archive", "--path", dest.url)
    code, err, counts = watch(fleet, vault, work, job, len(files))
    assert code == 0, err
    assert counts == {"uploaded": 2, "skipped": 1}
    assert vault.objects() == {digest_key(sha(data)): data for data in files.values()}
    assert dest.objects() == {
        "data/a.txt": files["data/a.txt"],
        "data/sub/b.bin": files["data/sub/b.bin"],
    }

    again = submit(fleet, vault, work, "--archive", "--path", dest.url)
    code, err, counts = watch(fleet, vault, work, again, len(files))
    assert (code, counts) == (0, {"skipped": 3}), err


def test_detached_vault_and_fetch(fleet: str, vault: Vault, work: Path, tmp_path: Path) -> None:
    job = submit(fleet, vault, work, "--vault")
    code, err, counts = watch(fleet, vault, work, job)
    assert code == 0, err  # missing objects are an answer, not a failure
    assert counts == {"missing": 4}  # each file asked about, as attached

    assert dmp(None, vault, work, "manifest", "--archive", "-m", "manifest.sha256").returncode == 0
    job = submit(fleet, vault, work, "--vault")
    code, err, counts = watch(fleet, vault, work, job)
    assert (code, counts) == (0, {"present": 4}), err

    restore = tmp_path / "restore"
    restore.mkdir()
    shutil.copy(work / "manifest.sha256", restore)
    (restore / "data").mkdir()
    (restore / "data" / "a.txt").write_bytes(FILES["data/a.txt"])  # already right: kept
    job = submit(fleet, vault, restore, "--fetch")
    code, err, counts = watch(fleet, vault, restore, job)
    assert code == 0, err
    assert counts == {"fetched": 3, "present": 1}
    for name, data in FILES.items():
        assert (restore / name).read_bytes() == data


def test_detached_fetch_failure_fails_the_watch(
    fleet: str, vault: Vault, work: Path, tmp_path: Path
) -> None:
    assert dmp(None, vault, work, "manifest", "--archive", "-m", "manifest.sha256").returncode == 0
    restore = tmp_path / "restore"
    (restore / "data").mkdir(parents=True)
    shutil.copy(work / "manifest.sha256", restore)
    (restore / "data" / "a.txt").write_bytes(b"local edits\n")  # no --overwrite
    job = submit(fleet, vault, restore, "--fetch")
    code, err, counts = watch(fleet, vault, restore, job)
    assert code == 1
    assert "dmp: data/a.txt: " in err
    assert counts["fetched"] == 3 and sum(counts.values()) == len(FILES)
    assert (restore / "data" / "a.txt").read_bytes() == b"local edits\n"


@pytest.mark.parametrize(
    "mode", ["--vault", "--archive", "--fetch"], ids=["vault", "archive", "fetch"]
)
def test_detach_needs_a_broker(mode: str, work: Path) -> None:
    result = run(
        "manifest",
        mode,
        "--detach",
        "-m",
        "manifest.sha256",
        cwd=work,
        broker_url=None,
        DMP_VAULT="file:///nonexistent/vault",
    )
    assert result.returncode == 2
    assert (
        result.stderr == b"dmp: --detach needs DMP_BROKER_URL (a fleet of workers to run the job)\n"
    )


def test_detach_of_an_empty_manifest_submits_nothing(
    fleet: str, work: Path, tmp_path: Path
) -> None:
    vault = new_vault("file", tmp_path)
    (work / "manifest.sha256").write_bytes(b"not a manifest line\n")
    result = dmp(fleet, vault, work, "manifest", "--archive", "--detach", "-m", "manifest.sha256")
    assert result.returncode == 1
    assert result.stdout == b""
    assert (
        result.stderr == b"dmp: manifest.sha256: no properly formatted SHA256 checksum "
        b"lines found\n"
    )


def test_detach_warns_of_misformatted_lines(fleet: str, work: Path, tmp_path: Path) -> None:
    """They are skipped, and fail the job, as attached (a line that names no file is a
    file not archived); its coordinator reads the manifest, so they are told of by
    `dmp job watch`, not when the job is submitted."""
    vault = new_vault("file", tmp_path)
    with open(work / "manifest.sha256", "ab") as stream:
        stream.write(b"not a manifest line\n")
    submitted = dmp(
        fleet, vault, work, "manifest", "--archive", "--detach", "-m", "manifest.sha256"
    )
    assert submitted.returncode == 0, submitted.stderr
    assert b"improperly" not in submitted.stderr
    code, err, counts = watch(fleet, vault, work, submitted.stdout.decode().strip())
    assert (code, counts) == (1, {"uploaded": 3, "skipped": 1}), err
    assert "dmp: 1 line is improperly formatted (skipped)\n" in err
    assert vault.objects() == OBJECTS


def test_detached_vault_strict_fails_the_job_on_misformatted_lines(
    fleet: str, work: Path, tmp_path: Path
) -> None:
    """As attached: every good line is asked about, and the job fails at the end."""
    vault = new_vault("file", tmp_path)
    with open(work / "manifest.sha256", "ab") as stream:
        stream.write(b"not a manifest line\n")
    lenient = submit(fleet, vault, work, "--vault")
    assert watch(fleet, vault, work, lenient)[0] == 0
    job = submit(fleet, vault, work, "--vault", "--strict")
    code, err, counts = watch(fleet, vault, work, job)
    assert (code, counts) == (1, {"missing": len(FILES)})
    assert err.splitlines()[0] == "dmp: 1 line is improperly formatted (--strict)"
    status = dmp(fleet, vault, work, "job", "status", job)
    assert b"failed:   1 line is improperly formatted (--strict)\n" in status.stdout


def test_detached_archive_takes_a_copy_when_the_first_file_is_gone(
    fleet: str, work: Path, tmp_path: Path
) -> None:
    """Content whose first file has gone since the manifest was made is archived from a
    copy, as attached; the job still fails for the file that is gone."""
    vault = new_vault("file", tmp_path)
    (work / "data" / "a.txt").unlink()
    job = submit(fleet, vault, work, "--archive")
    code, err, counts = watch(fleet, vault, work, job)
    assert code == 1
    assert "dmp: data/a.txt: " in err
    assert counts == {"missing": 1, "uploaded": 3}
    assert vault.objects() == OBJECTS
