"""Vault planning counted at full size: the requests a --vault or --archive of 100,000
entries sends to a vault of 100,000 objects, counted at the fault proxy in front of a real
moto server over HTTP.

The server is ``tests.bulkmoto``'s with its LIST requests answered from a sorted index
(``indexed``): the same keys, in the same pages, as stock moto gives, but without reading
every key of the bucket for every request, which would make each run here take a minute
or more. The requests counted are the client's own, whatever the server does with them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from tests.bulkmoto import bulk_content, bulk_digest, bulk_moto
from tests.integration.s3proxy import FaultProxy, fault_proxy
from tests.servers import Service, dmp_env, run_dmp

pytestmark = [pytest.mark.integration, pytest.mark.full_size]

BUCKET = "dmp-counted"
OBJECTS = 100_000


@pytest.fixture(scope="module")
def vault() -> Iterator[Service]:
    with bulk_moto(BUCKET, OBJECTS, timeout=300, indexed=True) as server:
        yield server


@pytest.fixture
def proxy(vault: Service) -> Iterator[FaultProxy]:
    with fault_proxy(vault.url) as proxy:
        yield proxy


def _run(proxy: FaultProxy, cwd: Path, *args: str) -> CompletedProcess[bytes]:
    proxy.reset()
    env = dmp_env(
        AWS_ENDPOINT_URL=proxy.url, DMP_VAULT=f"s3://{BUCKET}/object", DMP_VAULT_PLANNING="auto"
    )
    result = run_dmp("manifest", *args, "-v", cwd=cwd, env=env, timeout=600, subprocess=True)
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    return result


def _manifest(where: Path, count: int) -> Path:
    path = where / "m.sha256"
    path.write_text("".join(f"{bulk_digest(i)}  data/f{i}\n" for i in range(count)))
    return path


def test_a_vault_of_100000_entries_takes_at_most_1000_requests(
    proxy: FaultProxy, tmp_path: Path
) -> None:
    m = _manifest(tmp_path, OBJECTS)
    result = _run(proxy, tmp_path, "--vault", "-m", str(m))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(b": in the vault\n") == OBJECTS
    requests = proxy.counts.kinds()
    assert requests["head"] == 0, requests
    assert sum(requests.values()) <= 1000, requests
    assert b"dmp: planning by listing" in result.stderr


def test_ten_entries_against_100000_objects_use_heads(proxy: FaultProxy, tmp_path: Path) -> None:
    m = _manifest(tmp_path, 10)
    result = _run(proxy, tmp_path, "--vault", "-m", str(m))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(b": in the vault\n") == 10
    requests = proxy.counts.kinds()
    assert requests["head"] == 10, requests
    assert sum(requests.values()) <= 30, requests
    assert b"dmp: planning by HEAD" in result.stderr


def test_an_archive_rerun_of_100000_files_uploads_nothing(
    proxy: FaultProxy, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(OBJECTS):
        (data / f"f{i}").write_bytes(bulk_content(i))
    m = _manifest(tmp_path, OBJECTS)
    result = _run(proxy, tmp_path, "--archive", "-m", str(m))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(b": already archived\n") == OBJECTS
    requests = proxy.counts.kinds()
    assert requests["put"] == 0 and requests["upload-part"] == 0, requests
    assert sum(requests.values()) <= 1000, requests
