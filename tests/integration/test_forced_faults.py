"""One fault, forced, on one kind of request: the vault stays exact, the counts true, and
nothing is left behind. moto's server behind the fault proxy (tests/integration/s3proxy.py),
aimed at one request: an answer lost after the store acted (on a PUT, each request of a
multipart upload, a DELETE, a HEAD), an answer cut inside its headers, and failures (past
botocore's own attempts) of the requests that are no file's: the bucket check, the
conditional-PUT probe and its DELETE, the metadata companion's upload.

Each case runs on a four-file tree (one file in two parts), embedded and on the fleet:
--archive (and again, on the complete vault), then --vault and --fetch where the fault
can meet them, the fault armed anew before each run.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dmp_cli.layout import digest_key
from dmp_cli.store.s3 import PROBE_NAME
from tests.integration.fleet import Vault, fleet_env, new_vault, worker
from tests.integration.manifest_helpers import without_pace
from tests.integration.s3proxy import Aim, FaultProxy, fault_proxy
from tests.integration.vaultkit import incomplete, listing, sha, stderr_lines
from tests.servers import Service, moto_client, run_dmp

pytestmark = pytest.mark.integration

MiB = 1 << 20
FILES = {
    "data/a.txt": b"alpha\n",
    "data/b.txt": b"bravo bravo\n",
    "data/sub/c.txt": b"charlie\n" * 100,
    "data/big.bin": random.Random(5).randbytes(6 * MiB + 1),  # two parts of 5 MiB
}
SMALL = digest_key(sha(FILES["data/a.txt"]))
ENV = {
    "DMP_MULTIPART_THRESHOLD": str(5 * MiB),
    "DMP_MULTIPART_CHUNKSIZE": str(5 * MiB),
    "DMP_RETRY_DELAYS": "0.05,0.1,0.2",
}
MANIFEST = "manifest.sha256"
COMPANION = MANIFEST + ".meta"
ALL = ("archive", "vault", "fetch")


@dataclass(frozen=True)
class Case:
    aim: Aim
    kind: str  # the fault
    commands: tuple[str, ...] = ("archive",)  # where the aim can meet a request


# ``first=3``: past botocore's three attempts, so that dmp's own retries are needed.
CASES = {
    "lost-put": Case(Aim(kind="put", key=SMALL, first=1), "reset-after"),
    "lost-create-multipart": Case(Aim(kind="create-multipart", first=1), "reset-after"),
    "lost-upload-part": Case(Aim(kind="upload-part", first=1), "reset-after"),
    "lost-complete-multipart": Case(Aim(kind="complete-multipart", first=1), "reset-after"),
    "lost-probe-delete": Case(Aim(kind="delete", key=PROBE_NAME, first=1), "reset-after"),
    "lost-head": Case(Aim(kind="head", first=1), "reset-after", ALL),
    "headers-cut-head": Case(Aim(kind="head", first=1), "headers-cut", ALL),
    "headers-cut-get": Case(Aim(kind="get", first=1), "headers-cut", ("fetch",)),
    "bucket-check": Case(Aim(kind="head-bucket", first=3), "reset-before", ALL),
    "probe-put": Case(Aim(kind="put", key=PROBE_NAME, first=3), "slowdown"),
    "probe-delete": Case(Aim(kind="delete", key=PROBE_NAME, first=3), "internal"),
    "companion": Case(Aim(kind="put", key="<companion>", first=3), "slowdown"),
}


@dataclass
class Site:
    work: Path
    vault: Vault
    proxy: FaultProxy
    env: dict[str, str]
    companion_key: str

    def dmp(self, case: Case, *args: str, cwd: Path | None = None) -> Any:
        """A run with the case's fault armed anew; its stderr lines checked for the
        summary last."""
        aim = case.aim
        if aim.key == "<companion>":
            aim = Aim(aim.kind, aim.method, self.companion_key, aim.first)
        self.proxy.arm(aim, (case.kind,))
        try:
            result = run_dmp(*args, cwd=cwd or self.work, env=self.env, timeout=120)
        finally:
            self.proxy.arm(None)
        assert b"Traceback" not in result.stderr, result.stderr.decode()
        return result


@pytest.fixture(scope="module")
def proxy(s3_server: Service) -> Iterator[FaultProxy]:
    with fault_proxy(s3_server.url) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def fleet(
    redis: Service, proxy: FaultProxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("forced-fault-workers")
    with worker(redis.url, "forced", logs, concurrency=2, AWS_ENDPOINT_URL=proxy.url, **ENV):
        yield redis.url


def _site(tmp_path: Path, s3_server: Service, proxy: FaultProxy, broker: str | None) -> Site:
    vault = new_vault("s3", tmp_path, s3_server.url)
    work = tmp_path / "work"
    for name, data in FILES.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(data)
    env = fleet_env(broker, **ENV, DMP_VAULT=vault.url, AWS_ENDPOINT_URL=proxy.url)
    made = run_dmp(
        "manifest", "--create", "--dir", "data", "-r", "-m", MANIFEST, "--meta", cwd=work, env=env
    )
    assert made.returncode == 0, made.stderr.decode()
    companion = digest_key(sha((work / COMPANION).read_bytes()))
    return Site(work, vault, proxy, env, companion)


def _summary(result: Any, pattern: str) -> None:
    """Exit 0, and the summary is the run's last line."""
    lines = stderr_lines(result)
    assert result.returncode == 0, lines
    assert re.fullmatch(pattern, without_pace(lines[-1])), lines


def _exact(site: Site) -> None:
    """Exactly the manifest's contents and the companion; no probe, no upload left."""
    stored = site.vault.objects()
    assert set(stored) == {digest_key(sha(d)) for d in FILES.values()} | {site.companion_key}
    assert all(digest_key(sha(data)) == key for key, data in stored.items())
    s3 = moto_client(site.vault.endpoint)
    try:
        assert incomplete(s3, site.vault.url.split("/")[2]) == []
    finally:
        s3.close()


def _run_case(site: Site, case: Case, tmp_path: Path) -> None:
    n = len(FILES)
    m = ("manifest", "--archive", "-m", MANIFEST)
    archived = site.dmp(case, *m)
    _summary(
        archived,
        rf"dmp: {n} files \([\d.]+ MiB\) uploaded, 0 skipped as already archived, 0 failed",
    )
    metadata = [line for line in stderr_lines(archived) if line.startswith("dmp: metadata ")]
    assert len(metadata) == 1 and " uploaded as " in metadata[0], metadata
    assert (site.work / (COMPANION + ".sha256")).exists()
    faulted = sum(site.proxy.reset().faulted.values())
    again = site.dmp(case, *m)
    _summary(again, rf"dmp: 0 files \(0 B\) uploaded, {n} skipped as already archived, 0 failed")
    faulted += sum(site.proxy.reset().faulted.values())
    if "vault" in case.commands:
        queried = site.dmp(case, "manifest", "--vault", "-m", MANIFEST)
        _summary(
            queried,
            rf"dmp: {n} files, {n} distinct checksums: {n} in the vault, 0 missing, 0 failed",
        )
        faulted += sum(site.proxy.reset().faulted.values())
    if "fetch" in case.commands:
        restore = tmp_path / "restore"
        restore.mkdir()
        fetched = site.dmp(
            case, "manifest", "--fetch", "-m", str(site.work / MANIFEST), cwd=restore
        )
        _summary(fetched, rf"dmp: {n} files \([\d.]+ MiB\) fetched, 0 already present, 0 failed")
        faulted += sum(site.proxy.reset().faulted.values())
        assert listing(restore) == sorted(FILES)
        for name, data in FILES.items():
            assert (restore / name).read_bytes() == data, name
    assert faulted >= min(case.aim.first, 1), "the fault never met a request"
    _exact(site)


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_embedded(case: Case, s3_server: Service, proxy: FaultProxy, tmp_path: Path) -> None:
    _run_case(_site(tmp_path, s3_server, proxy, None), case, tmp_path)


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_on_the_fleet(
    case: Case, s3_server: Service, proxy: FaultProxy, fleet: str, tmp_path: Path
) -> None:
    _run_case(_site(tmp_path, s3_server, proxy, fleet), case, tmp_path)


def test_a_companion_that_cannot_be_archived(
    s3_server: Service, proxy: FaultProxy, tmp_path: Path
) -> None:
    """Every request for the companion is throttled: after the retries, its failure is
    said before the summary, which stays the run's last line (the files went in); the
    run fails, and no checksum file names a companion the vault lacks. (The command
    stores the companion itself, on the fleet too.)"""
    site = _site(tmp_path, s3_server, proxy, None)
    case = Case(Aim(key="<companion>"), "slowdown")
    result = site.dmp(case, "manifest", "--archive", "-m", MANIFEST)
    lines = stderr_lines(result)
    assert result.returncode == 1, lines
    n = len(FILES)
    pattern = rf"dmp: {n} files \([\d.]+ MiB\) uploaded, 0 skipped as already archived, 0 failed"
    assert re.fullmatch(pattern, without_pace(lines[-1])), lines
    assert lines[-2].startswith(f"dmp: {COMPANION}: metadata not archived: s3://"), lines
    assert "throttled by the server (SlowDown)" in lines[-2], lines
    assert not (site.work / (COMPANION + ".sha256")).exists()
    counts = site.proxy.reset()
    assert counts.faulted["slowdown"] == 3 * 4  # botocore's three attempts, dmp's four
    stored = site.vault.objects()
    assert set(stored) == {digest_key(sha(d)) for d in FILES.values()}
