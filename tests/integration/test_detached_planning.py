"""A detached --vault or --archive plans as an attached one does: its coordinator lists the
vault (with threads of its own) when that needs fewer requests than a HEAD per checksum,
and DMP_VAULT_PLANNING where the job is submitted decides the way. Against a real moto
server already full (``tests.bulkmoto``), requests counted at a fault proxy, the job run by
a real worker on a real redis-server."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from dmp_cli.layout import digest_key
from tests.bulkmoto import bulk_content, bulk_digest, bulk_moto
from tests.integration.fleet import worker
from tests.integration.s3proxy import FaultProxy, fault_proxy
from tests.servers import Service, dmp_env, run_dmp

pytestmark = pytest.mark.integration

BUCKET = "dmp-detached-planning"
OBJECTS = 1000
ENTRIES = 600
MISSING = [bulk_digest(OBJECTS + i) for i in range(2)]  # never put in the vault


@pytest.fixture(scope="module")
def vault() -> Iterator[Service]:
    with bulk_moto(BUCKET, OBJECTS) as server:
        yield server


@pytest.fixture
def proxy(vault: Service) -> Iterator[FaultProxy]:
    with fault_proxy(vault.url) as proxy:
        yield proxy


@pytest.fixture
def fleet(proxy: FaultProxy, redis: Service, tmp_path: Path) -> Iterator[str]:
    url = redis.url.rsplit("/", 1)[0] + "/12"
    with worker(url, "planner", tmp_path, concurrency=2, **_stores(proxy)):
        yield url


def _stores(proxy: FaultProxy) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": proxy.url,
        "DMP_VAULT": f"s3://{BUCKET}/object",
        "DMP_RETRY_DELAYS": "0.05,0.1,0.2",
    }


def _dmp(cwd: Path, *args: str, **env: str) -> CompletedProcess[bytes]:
    result = run_dmp(*args, cwd=cwd, env=dmp_env(**env), timeout=240, subprocess=True)
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    return result


def _manifest(where: Path) -> Path:
    lines = [f"{bulk_digest(i)}  data/f{i}\n" for i in range(ENTRIES)]
    lines += [f"{digest}  data/missing{i}\n" for i, digest in enumerate(MISSING)]
    lines += [f"{bulk_digest(i)}  data/copy{i}\n" for i in range(3)]  # repeated content
    path = where / "m.sha256"
    path.write_text("".join(lines))
    return path


def _detached(proxy: FaultProxy, fleet: str, cwd: Path, *args: str, **env: str) -> dict:
    """Submit ``args`` detached, watch the job to its end; its --json status record."""
    settings = {**_stores(proxy), "DMP_BROKER_URL": fleet, **env}
    submitted = _dmp(cwd, "manifest", *args, "--detach", **settings)
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.decode().strip()
    watched = _dmp(cwd, "job", "watch", job, **settings)
    assert watched.returncode == 0, watched.stderr
    status = _dmp(cwd, "--json", "job", "status", job, **settings)
    record: dict = json.loads(status.stdout.splitlines()[0])
    return record


def test_a_detached_vault_is_answered_by_listing(
    proxy: FaultProxy, fleet: str, tmp_path: Path
) -> None:
    m = _manifest(tmp_path)
    proxy.reset()
    record = _detached(proxy, fleet, tmp_path, "--vault", "-m", str(m))
    # Each entry answered on its own, copies too, as a detached --vault always does.
    assert record["counts"] == {"present": ENTRIES + 3, "missing": len(MISSING)}
    kinds = proxy.counts.kinds()
    assert kinds["head"] == 0, kinds  # not one HEAD per checksum: the vault was listed
    assert 0 < kinds["list"] <= 260, kinds
    # Which way and why, as -v says it attached, is in the log of the coordinator's worker.
    assert "planning by listing" in (tmp_path / "planner.log").read_text()

    # The same job asked to plan by HEAD where it is submitted: a HEAD per entry.
    proxy.reset()
    record = _detached(proxy, fleet, tmp_path, "--vault", "-m", str(m), DMP_VAULT_PLANNING="head")
    assert record["counts"] == {"present": ENTRIES + 3, "missing": len(MISSING)}
    kinds = proxy.counts.kinds()
    assert kinds["head"] == ENTRIES + 3 + len(MISSING), kinds
    assert kinds["list"] == 0, kinds


def test_a_detached_archive_rerun_lists_and_uploads_what_the_vault_lacks(
    proxy: FaultProxy, fleet: str, tmp_path: Path
) -> None:
    m = tmp_path / "m.sha256"
    data = tmp_path / "data"
    data.mkdir()
    lines = []
    for i in range(500):
        (data / f"f{i}").write_bytes(bulk_content(i))
        lines.append(f"{bulk_digest(i)}  data/f{i}\n")
    for i in range(2):  # two files the vault does not hold: they must be uploaded
        body = f"detached planning {i}, {tmp_path.name}\n".encode()
        (data / f"new{i}").write_bytes(body)
        lines.append(f"{hashlib.sha256(body).hexdigest()}  data/new{i}\n")
    m.write_text("".join(lines))
    proxy.reset()
    record = _detached(proxy, fleet, tmp_path, "--archive", "-m", str(m))
    # What the listing saw is not sent again; only the new content goes up.
    assert record["counts"] == {"skipped": 500, "uploaded": 2}, record
    kinds = proxy.counts.kinds()
    assert kinds["list"] > 0 and kinds["head"] == 0, kinds
    put = " ".join(target for (method, target), _ in proxy.counts.seen.items() if method == "PUT")
    # Only what the listing did not see is offered to the vault (beside the probe of
    # whether it honours a put-if-absent, which an attached run makes too).
    assert all(digest_key(line[:64]) in put for line in lines[500:]), put
    assert not any(digest_key(bulk_digest(i)) in put for i in range(500)), put
