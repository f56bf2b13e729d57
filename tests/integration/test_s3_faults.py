"""dmp against an S3 store that behaves worse than AWS: moto's server behind a proxy
(tests/integration/s3proxy.py) that throttles, fails, resets and cuts requests short,
or mishandles conditional PUTs.

Run with ``-s`` to see the figures: requests, faults by kind, the client's retries.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dmp_cli.layout import digest_key
from dmp_cli.quoting import quote_name
from dmp_cli.store.s3 import PROBE_NAME
from tests.integration.fleet import Vault, fleet_env, new_vault, worker
from tests.integration.manifest_helpers import without_pace
from tests.integration.s3proxy import FAULTS, MORE_FAULTS, FaultProxy, fault_proxy
from tests.integration.vaultkit import (
    incomplete,
    listing,
    make_tree,
    sha,
    small_tree,
    stderr_lines,
)
from tests.servers import Service, moto_client, run_dmp

pytestmark = pytest.mark.integration

MiB = 1 << 20
# A file costs about four requests (archive, vault, fetch: PUT, HEAD, HEAD and GET) plus
# the retries, and moto behind the proxy is the bottleneck (on the fleet, also botocore's
# backoff, which a worker process waits out file by file). 1,000 small files a tree, one
# tree embedded and one on the fleet (2,004 files in all with the big ones): on this
# 2-core machine the embedded round trip takes about 40 s, the fleet's about 60 s (more
# worker processes or smaller batches did not make it faster: the CPU is the limit).
SMALL_FILES = 1000
BIG_FILES = {"big/two-parts.bin": 6 * MiB + 1, "big/three-parts.bin": 11 * MiB}
ENV = {
    # Parts as small as S3 allows, so that a few files go multipart.
    "DMP_MULTIPART_THRESHOLD": str(5 * MiB),
    "DMP_MULTIPART_CHUNKSIZE": str(5 * MiB),
    # dmp's own retries of a file (after botocore's), short: this is not a busy server.
    "DMP_RETRY_DELAYS": "0.05,0.2,0.5",
    "DMP_BATCH_ITEMS": "64",
}


@dataclass
class Site:
    work: Path
    files: dict[str, bytes]
    vault: Vault
    proxy: FaultProxy
    env: dict[str, str]

    def dmp(self, *args: str, cwd: Path | None = None, broker: str | None = None) -> Any:
        # A process of its own, embedded too: the proxy in this one wants the CPU.
        env = fleet_env(broker, **self.env)
        result = run_dmp(*args, cwd=cwd or self.work, env=env, timeout=300, subprocess=True)
        assert b"Traceback" not in result.stderr, result.stderr.decode()
        return result

    def stored(self) -> dict[str, bytes]:
        """The vault's objects, read straight from moto (not through the proxy)."""
        return self.vault.objects()

    def expected(self) -> set[str]:
        return {digest_key(sha(data)) for data in self.files.values()}


@pytest.fixture
def site(s3_server: Service, tmp_path: Path) -> Iterator[Site]:
    vault = new_vault("s3", tmp_path, s3_server.url)
    work = tmp_path / "work"
    work.mkdir()
    files = {**small_tree(SMALL_FILES, seed=1)}
    rng = random.Random(2)
    files.update({name: rng.randbytes(size) for name, size in BIG_FILES.items()})
    make_tree(work, files)
    with fault_proxy(s3_server.url, rate=0.10, seed=3) as proxy:
        env = {**ENV, "DMP_VAULT": vault.url, "AWS_ENDPOINT_URL": proxy.url}
        yield Site(work, files, vault, proxy, env)


def _skipped(result: Any, site: Site) -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in result.stdout.splitlines()[:-1]]
    return [(r["path"], r["digest"]) for r in rows if r["status"] == "skipped"]


def summary(result: Any) -> dict[str, Any]:
    return dict(json.loads(result.stdout.splitlines()[-1]))


def figures(site: Site, label: str, result: Any, json_summary: bool = True) -> dict[str, Any]:
    counts = site.proxy.reset()
    figures = {
        "run": label,
        **counts.figures(),
        "conditional_puts": counts.conditional_puts,
        **(
            {"failed": summary(result).get("failed")}
            if json_summary
            else {"exit": result.returncode}
        ),
    }
    print(json.dumps(figures))
    return figures


@pytest.fixture(scope="module")
def fleet_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fault-fleet")


@pytest.mark.parametrize("where", ["embedded", "fleet"])
def test_archive_vault_fetch_through_faults(
    site: Site, redis: Service, fleet_logs: Path, tmp_path: Path, where: str
) -> None:
    """One request in ten meets a fault (every kind): no file fails, every object hashes
    to its key, the fetched tree is the source's, and nothing partial is left. Embedded,
    the probe learns that moto refuses a conditional PUT of an object it has; on the
    fleet, DMP_CONDITIONAL_PUT=on, set for the command alone, reaches the workers: they
    trust the store without a probe."""
    if where == "fleet":
        env = site.env
        # Two processes each: a process takes its batch's files one by one, and waits
        # out botocore's backoff before each retry.
        with (
            worker(redis.url, "f1", fleet_logs, concurrency=2, **env),
            worker(redis.url, "f2", fleet_logs, concurrency=2, **env),
        ):
            site.env = {**env, "DMP_CONDITIONAL_PUT": "on"}
            _round_trip(site, tmp_path, where, redis.url)
    else:
        _round_trip(site, tmp_path, where, None)


def _round_trip(site: Site, tmp_path: Path, where: str, broker: str | None) -> None:
    entries, distinct = len(site.files), len(site.expected())
    archived = site.dmp("--json", "manifest", "--archive", "-m", "manifest.sha256", broker=broker)
    faults, puts = site.proxy.counts.log, site.proxy.counts.puts
    seen = [figures(site, f"{where} --archive", archived)]
    probes = sum(n for path, n in puts.items() if PROBE_NAME in path)
    assert probes == 0 if where == "fleet" else probes >= 2, seen
    assert seen[0]["conditional_puts"] >= distinct - len(BIG_FILES), seen
    assert archived.returncode == 0, archived.stderr.decode()
    counts = summary(archived)
    assert counts["failed"] == 0 and counts["uploaded"] + counts["skipped"] == entries
    # Every distinct content uploaded once; copies skipped (a 412 that answered a retry
    # of a PUT that had gone through counts as uploaded).
    assert counts["uploaded"] == distinct, (counts, _skipped(archived, site), faults)

    stored = site.stored()
    probes = [key for key in stored if key.startswith(PROBE_NAME)]
    wrong = [
        key for key, data in stored.items() if key not in probes and digest_key(sha(data)) != key
    ]
    print(json.dumps({"run": f"{where} vault", "objects": len(stored), "wrong": len(wrong)}))
    assert wrong == [] and set(stored) - set(probes) == site.expected()
    assert probes == []  # its DELETE tried again as a file's request is
    s3 = moto_client(site.vault.endpoint)
    try:
        assert incomplete(s3, site.vault.url.split("/")[2]) == []
    finally:
        s3.close()

    queried = site.dmp("--json", "manifest", "--vault", "-m", "manifest.sha256", broker=broker)
    seen.append(figures(site, f"{where} --vault", queried))
    assert queried.returncode == 0 and b"WARNING" not in queried.stderr
    assert summary(queried)["failed"] == 0

    restore = tmp_path / "restore"
    restore.mkdir()
    manifest = str(site.work / "manifest.sha256")
    fetched = site.dmp("--json", "manifest", "--fetch", "-m", manifest, cwd=restore, broker=broker)
    seen.append(figures(site, f"{where} --fetch", fetched))
    assert fetched.returncode == 0, fetched.stderr.decode()
    assert summary(fetched)["failed"] == 0
    assert listing(restore) == sorted(site.files)  # no temporary or partial file left
    for name, data in site.files.items():
        assert (restore / name).read_bytes() == data, name
    kinds = {kind for figure in seen for kind in figure["by_kind"]}
    assert kinds == set(FAULTS), seen  # every kind was met
    assert sum(figure["retries"] for figure in seen) > 0


def test_a_key_that_always_fails_fails_its_file_alone(s3_server: Service, tmp_path: Path) -> None:
    """Every request for one object meets a fault (503, 500 or a reset, at random): that
    file fails, with one line naming it, after the retries; the others are archived."""
    vault = new_vault("s3", tmp_path, s3_server.url)
    files = small_tree(40, seed=4)
    make_tree(tmp_path, files)
    doomed = "d3/f0010.dat"
    key = digest_key(sha(files[doomed]))
    kinds = ("slowdown", "internal", "reset-before")
    with fault_proxy(s3_server.url, key=key, kinds=kinds) as proxy:
        env = {**ENV, "DMP_VAULT": vault.url, "AWS_ENDPOINT_URL": proxy.url}
        env["AWS_MAX_ATTEMPTS"] = "2"
        result = run_dmp(
            "manifest",
            "--archive",
            "-m",
            "manifest.sha256",
            cwd=tmp_path,
            env=fleet_env(None, **env),
        )
        counts = proxy.counts
    print(json.dumps({"run": "one key always faulted", **counts.figures()}))
    lines = stderr_lines(result)
    assert result.returncode == 1, lines
    named = [line for line in lines if line.startswith(f"dmp: {quote_name(doomed).decode()}: ")]
    assert len(named) == 1 and key in named[0], lines
    assert len(lines) == 2, lines  # the file's line and the summary
    assert lines[-1].startswith("dmp: 34 files ("), lines  # the other contents, uploaded
    assert without_pace(lines[-1]).endswith(", 5 skipped as already archived, 1 failed"), lines
    assert set(vault.objects()) == {digest_key(sha(d)) for d in files.values()} - {key}
    assert sum(counts.faulted.values()) == 2 * 4  # botocore's two attempts, dmp's four


# ---------------------------------------------------------------- three requests in ten

HEAVY_FILES = 300  # and the two big ones: the rate, not the count, is what is tested
HEAVY_RATE = 0.30
SUMMARIES = {
    "archive": r"dmp: \d+ files? \([\d.]+ [KMG]?i?B\) uploaded, \d+ skipped as already "
    r"archived, \d+ failed",
    "vault": r"dmp: \d+ files, \d+ distinct checksums: \d+ in the vault, \d+ missing, \d+ failed",
    "fetch": r"dmp: \d+ files? \([\d.]+ [KMG]?i?B\) fetched, \d+ already present, \d+ failed",
}


@pytest.fixture
def heavy(s3_server: Service, tmp_path: Path) -> Iterator[Site]:
    """A smaller tree, its manifest and companion made by dmp, behind a proxy that faults
    three requests in ten, with every kind of fault, answers cut in their headers too."""
    vault = new_vault("s3", tmp_path, s3_server.url)
    work = tmp_path / "work"
    work.mkdir()
    rng = random.Random(7)
    big = {name: rng.randbytes(size) for name, size in BIG_FILES.items()}
    files = {f"t/{name}": data for name, data in {**small_tree(HEAVY_FILES, seed=6), **big}.items()}
    for name, data in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(data)
    kinds = (*FAULTS, *MORE_FAULTS)
    with fault_proxy(s3_server.url, rate=HEAVY_RATE, kinds=kinds, seed=8, latency=0.05) as proxy:
        env = {**ENV, "DMP_VAULT": vault.url, "AWS_ENDPOINT_URL": proxy.url}
        site = Site(work, files, vault, proxy, env)
        made = site.dmp(
            "manifest", "--create", "--dir", "t", "-r", "-m", "manifest.sha256", "--meta"
        )
        assert made.returncode == 0, made.stderr.decode()
        yield site


def _until_done(
    site: Site, command: str, *args: str, cwd: Path | None = None, broker: str | None = None
) -> list[Any]:
    """Run the command until it exits 0, three runs at most: each run's summary is its
    last line, whatever its status."""
    runs = []
    for _ in range(3):
        result = site.dmp("manifest", f"--{command}", *args, cwd=cwd, broker=broker)
        lines = stderr_lines(result)
        assert lines and re.fullmatch(SUMMARIES[command], without_pace(lines[-1])), lines
        runs.append(result)
        figures(site, f"--{command} run {len(runs)}", result, json_summary=False)
        print("\n".join(lines[:-1][-5:]))  # what failed, if anything
        if result.returncode == 0:
            return runs
    raise AssertionError(f"--{command} never exited 0 in three runs: {stderr_lines(runs[-1])[-5:]}")


def _vault_exact(site: Site, companion: str) -> None:
    """Exactly the manifest's contents and the companion: no probe, no partial object, no
    incomplete multipart upload."""
    stored = site.stored()
    assert set(stored) == site.expected() | {companion}, sorted(set(stored) ^ site.expected())
    assert all(digest_key(sha(data)) == key for key, data in stored.items())
    s3 = moto_client(site.vault.endpoint)
    try:
        assert incomplete(s3, site.vault.url.split("/")[2]) == []
    finally:
        s3.close()


@pytest.mark.parametrize("where", ["embedded", "fleet"])
def test_three_faults_in_ten_are_overcome_within_three_runs(
    heavy: Site, redis: Service, fleet_logs: Path, tmp_path: Path, where: str
) -> None:
    """At 30 %, every command exits 0 within three runs, each run's summary its last
    line; then the vault holds exactly the manifest's contents and the companion, a rerun
    of --archive says it uploaded nothing, and the fetched tree is the source's."""
    site = heavy
    if where == "fleet":
        with (
            worker(redis.url, "h1", fleet_logs, concurrency=2, **site.env),
            worker(redis.url, "h2", fleet_logs, concurrency=2, **site.env),
        ):
            _converge(site, tmp_path, redis.url)
    else:
        _converge(site, tmp_path, None)


def _converge(site: Site, tmp_path: Path, broker: str | None) -> None:
    m = ("-m", "manifest.sha256")
    companion = digest_key(sha((site.work / "manifest.sha256.meta").read_bytes()))
    _until_done(site, "archive", *m, broker=broker)
    _vault_exact(site, companion)
    rerun = site.dmp("manifest", "--archive", *m, broker=broker)
    last = stderr_lines(rerun)[-1]
    figures(site, "--archive again", rerun, json_summary=False)
    assert last.startswith("dmp: 0 files (0 B) uploaded, "), stderr_lines(rerun)
    _vault_exact(site, companion)
    _until_done(site, "vault", *m, broker=broker)
    restore = tmp_path / "restore"
    restore.mkdir()
    _until_done(site, "fetch", "-m", str(site.work / "manifest.sha256"), cwd=restore, broker=broker)
    assert listing(restore) == sorted(site.files)  # no temporary or partial file left
    for name, data in site.files.items():
        assert (restore / name).read_bytes() == data, name
