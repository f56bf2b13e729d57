"""--vault and --archive planned by listing the vault, against a real moto server already
full (``tests.bulkmoto``), its requests counted at a fault proxy in front of it.

The vault holds VAULT_OBJECTS objects: fewer than the 100,000 of the bench (populating
and listing moto costs time in CI), so that it is listed whole in two pages; a vault of
100,000 objects is only sampled, by a run of a few entries that asks by HEAD. Each way,
listing (whole, by 16 prefixes or by 256) and a HEAD per checksum, gives the same rows,
line for line: embedded, on the fleet, and through a proxy that cuts listings short.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest

from dmp_cli.runs import listing_choice
from tests.bulkmoto import bulk_content, bulk_digest, bulk_moto
from tests.integration.fleet import worker
from tests.integration.s3proxy import Aim, FaultProxy, fault_proxy
from tests.servers import Service, dmp_env, run_dmp

pytestmark = pytest.mark.integration

BUCKET = "dmp-planning"
VAULT_OBJECTS = 1200
BIG_VAULT = 100_000
MISSING = [bulk_digest(VAULT_OBJECTS + i) for i in range(3)]  # never put in the vault
LISTED = "dmp: planning by listing"
BY_HEAD = "dmp: planning by HEAD"


@pytest.fixture(scope="module")
def vault() -> Iterator[Service]:
    with bulk_moto(BUCKET, VAULT_OBJECTS) as server:
        yield server


@pytest.fixture
def proxy(vault: Service) -> Iterator[FaultProxy]:
    with fault_proxy(vault.url) as proxy:
        yield proxy


@pytest.fixture
def big_proxy() -> Iterator[FaultProxy]:
    with bulk_moto(BUCKET, BIG_VAULT, timeout=300) as big, fault_proxy(big.url) as proxy:
        yield proxy


@pytest.fixture(params=[1, 16, 256], ids=["whole", "by-16", "by-256"])
def parts(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """The vault listed whole, by its 16 or by its 256 prefixes, whatever its size."""
    monkeypatch.setattr(listing_choice, "LEVELS", (request.param,))
    return int(request.param)


def env(proxy: FaultProxy, **more: str) -> dict[str, str]:
    return dmp_env(
        AWS_ENDPOINT_URL=proxy.url,
        DMP_VAULT=f"s3://{BUCKET}/object",
        DMP_RETRY_DELAYS="0.05,0.1,0.2",
        **more,
    )


def manifest(where: Path, count: int, missing: int = 0, copies: int = 0) -> Path:
    """Entries for the first ``count`` objects of the vault, ``missing`` checksums it
    lacks, and ``copies`` entries repeating earlier content."""
    lines = [f"{bulk_digest(i)}  data/f{i}\n" for i in range(count)]
    lines += [f"{digest}  data/missing{i}\n" for i, digest in enumerate(MISSING[:missing])]
    lines += [f"{bulk_digest(i)}  data/copy{i}\n" for i in range(copies)]
    path = where / "m.sha256"
    path.write_text("".join(lines))
    return path


def prefixes(count: int, missing: int = 0, width: int = 2) -> int:
    """The prefixes of the vault (first-level, or of ``width`` characters) that
    ``manifest`` names."""
    digests = [bulk_digest(i) for i in range(count)] + MISSING[:missing]
    return len({digest[:width] for digest in digests})


def lists(parts: int, count: int, missing: int = 0) -> int:
    """The LIST requests of a listing by ``parts`` of the vault for ``manifest``'s
    checksums, with the estimate's first page of 00/ (fewer than 1,000 keys here)."""
    if parts == 1:
        return 1 + -(-VAULT_OBJECTS // 1000)
    return 1 + prefixes(count, missing, 1 if parts == 16 else 2)


# The vault's size as its estimate says: a page of 00/, times 256.
ESTIMATE = 256 * sum(1 for i in range(VAULT_OBJECTS) if bulk_digest(i).startswith("00"))


def run(proxy: FaultProxy, cwd: Path, *args: str, **more: str) -> CompletedProcess[bytes]:
    proxy.reset()
    # On the fleet in a process of its own, as a Celery client leaves threads behind.
    fleet = "DMP_BROKER_URL" in more
    result = run_dmp(
        "manifest", *args, cwd=cwd, env=env(proxy, **more), timeout=240, subprocess=fleet
    )
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    return result


def records(result: CompletedProcess[bytes]) -> list[dict[str, Any]]:
    """--json's records, without the run's pace (which differs from run to run)."""
    pace = {"seconds", "files_per_second", "bytes_per_second"}
    out = []
    for line in result.stdout.splitlines():
        record = json.loads(line)
        out.append({k: v for k, v in record.items() if k not in pace})
    return out


def notes(result: CompletedProcess[bytes]) -> list[str]:
    return [line for line in result.stderr.decode().splitlines() if "planning by" in line]


def test_many_entries_are_answered_by_listing_in_few_requests(
    proxy: FaultProxy, tmp_path: Path
) -> None:
    m = manifest(tmp_path, VAULT_OBJECTS, missing=3, copies=5)
    listed = run(proxy, tmp_path, "--vault", "-m", str(m), "-v")
    by_listing = proxy.counts.kinds()
    headed = run(proxy, tmp_path, "--vault", "-m", str(m), "-v", DMP_VAULT_PLANNING="head")
    by_head = proxy.counts.kinds()
    assert listed.returncode == headed.returncode == 0
    assert listed.stdout == headed.stdout  # row for row, line for line
    assert listed.stdout.count(b": in the vault\n") == VAULT_OBJECTS + 5
    assert listed.stdout.count(b": NOT in the vault\n") == 3
    summary = [line for line in listed.stderr.splitlines() if b"distinct checksums" in line]
    assert summary and summary[0].split(b", in ")[0] in headed.stderr
    # The vault listed whole (two pages), after the estimate's LIST: no HEAD at all.
    (note,) = notes(listed)
    assert note == (
        f"{LISTED} the whole vault: 3 LIST requests instead of 1,203 HEAD requests "
        f"(a vault of about {ESTIMATE:,} objects)"
    )
    assert by_listing["head"] == 0
    assert by_listing["list"] == lists(1, VAULT_OBJECTS, 3) == 3
    assert sum(by_listing.values()) <= 300
    assert by_head["head"] == VAULT_OBJECTS + 3 and by_head["list"] == 0
    assert notes(headed) == [
        f"{BY_HEAD}: a request per distinct checksum (DMP_VAULT_PLANNING=head)"
    ]


def test_the_json_records_are_the_same_either_way(proxy: FaultProxy, tmp_path: Path) -> None:
    m = manifest(tmp_path, 300, missing=2, copies=2)
    listed = run(proxy, tmp_path, "--vault", "-m", str(m), "--json", DMP_VAULT_PLANNING="list")
    assert proxy.counts.kinds()["head"] == 0
    headed = run(proxy, tmp_path, "--vault", "-m", str(m), "--json", DMP_VAULT_PLANNING="head")
    assert records(listed) == records(headed)
    assert records(listed)[-1]["present"] == 302


def test_a_few_entries_are_asked_about_by_head(big_proxy: FaultProxy, tmp_path: Path) -> None:
    """10 entries against a vault of 100,000 objects: listing would take a request for
    each of their 10 first-level prefixes, and one for the estimate, more than 10 HEADs."""
    m = manifest(tmp_path, 10)
    result = run(big_proxy, tmp_path, "--vault", "-m", str(m), "-v")
    assert result.returncode == 0
    assert result.stdout.count(b": in the vault\n") == 10
    estimate = 256 * sum(1 for i in range(BIG_VAULT) if bulk_digest(i).startswith("00"))
    (note,) = notes(result)
    assert note == (
        f"{BY_HEAD}: 10 HEAD requests instead of {prefixes(10) + 1} LIST requests "
        f"(a vault of about {estimate:,} objects)"
    )
    counts = big_proxy.counts.kinds()
    assert counts["list"] == 1 and counts["head"] == 10
    assert sum(counts.values()) <= 30


def test_a_few_entries_in_a_small_vault_are_answered_by_listing_it_whole(
    proxy: FaultProxy, tmp_path: Path
) -> None:
    m = manifest(tmp_path, 10)
    result = run(proxy, tmp_path, "--vault", "-m", str(m), "-v")
    assert result.returncode == 0
    assert result.stdout.count(b": in the vault\n") == 10
    (note,) = notes(result)
    assert note == (
        f"{LISTED} the whole vault: 3 LIST requests instead of 10 HEAD requests "
        f"(a vault of about {ESTIMATE:,} objects)"
    )
    counts = proxy.counts.kinds()
    assert counts["list"] == 3 and counts["head"] == 0


def test_each_split_gives_the_same_rows(proxy: FaultProxy, tmp_path: Path, parts: int) -> None:
    m = manifest(tmp_path, 700, missing=3, copies=4)
    expected = run(proxy, tmp_path, "--vault", "-m", str(m), DMP_VAULT_PLANNING="head")
    listed = run(proxy, tmp_path, "--vault", "-m", str(m), "-v")
    assert listed.returncode == expected.returncode == 0
    assert listed.stdout == expected.stdout
    assert listed.stdout.count(b": NOT in the vault\n") == 3
    counts = proxy.counts.kinds()
    assert counts["head"] == 0 and counts["list"] == lists(parts, 700, 3)
    (note,) = notes(listed)
    what = "the whole vault" if parts == 1 else f"{lists(parts, 700, 3) - 1} prefixes"
    assert note.startswith(f"{LISTED} {what}: ")


def test_an_archive_rerun_uploads_nothing(proxy: FaultProxy, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(VAULT_OBJECTS):
        (data / f"f{i}").write_bytes(bulk_content(i))
    m = manifest(tmp_path, VAULT_OBJECTS)
    listed = run(proxy, tmp_path, "--archive", "-m", str(m), "-v")
    by_listing = proxy.counts.kinds()
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count(b": already archived\n") == VAULT_OBJECTS
    assert by_listing["put"] == 0 and by_listing["head"] == 0
    assert sum(by_listing.values()) <= 300
    (note,) = notes(listed)
    assert note.startswith(f"{LISTED} the whole vault: 3 LIST requests instead of")
    assert "instead of 1,200 conditional PUT requests" in note
    headed = run(proxy, tmp_path, "--archive", "-m", str(m), DMP_VAULT_PLANNING="head")
    assert headed.returncode == 0
    assert listed.stdout == headed.stdout
    # Without a plan, a put-if-absent each, every one refused.
    assert proxy.counts.kinds()["put"] >= VAULT_OBJECTS


def test_an_archive_uploads_what_the_listing_did_not_see(proxy: FaultProxy, tmp_path: Path) -> None:
    """Content the vault lacks goes up by a put-if-absent; what it has, not at all."""
    data = tmp_path / "data"
    data.mkdir()
    lines = []
    for i in range(200):
        (data / f"f{i}").write_bytes(bulk_content(i))
        lines.append(f"{bulk_digest(i)}  data/f{i}\n")
    fresh = data / "fresh"
    fresh.write_bytes(b"content the vault lacks, %d\n" % os.getpid())
    from hashlib import sha256

    lines.append(f"{sha256(fresh.read_bytes()).hexdigest()}  data/fresh\n")
    (tmp_path / "m.sha256").write_text("".join(lines))
    result = run(proxy, tmp_path, "--archive", "-m", "m.sha256", DMP_VAULT_PLANNING="list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(b": already archived\n") == 200
    assert b"data/fresh: uploaded" in result.stdout
    assert proxy.counts.kinds()["put"] >= 1
    assert proxy.counts.conditional_puts >= 1
    again = run(proxy, tmp_path, "--archive", "-m", "m.sha256", DMP_VAULT_PLANNING="list")
    assert again.stdout.count(b": already archived\n") == 201
    assert proxy.counts.kinds()["put"] == 0


@pytest.mark.parametrize("fault", ["cut", "internal"])
def test_a_listing_cut_short_is_listed_again_whole(
    proxy: FaultProxy, tmp_path: Path, fault: str, parts: int
) -> None:
    m = manifest(tmp_path, 300, missing=2)
    expected = run(proxy, tmp_path, "--vault", "-m", str(m), DMP_VAULT_PLANNING="head")
    # Listed whole, the second page (a continuation) is cut too.
    proxy.arm(Aim(kind="list", first=6), kinds=(fault,))
    listed = run(proxy, tmp_path, "--vault", "-m", str(m), "-v", DMP_VAULT_PLANNING="list")
    assert proxy.counts.faulted[fault] == 6
    assert proxy.counts.kinds()["head"] == 0  # every prefix listed in the end, none asked by HEAD
    assert listed.returncode == expected.returncode == 0
    assert listed.stdout == expected.stdout


def test_a_prefix_that_cannot_be_listed_is_asked_about_by_head(
    proxy: FaultProxy, tmp_path: Path
) -> None:
    m = manifest(tmp_path, 200, missing=2)
    expected = run(proxy, tmp_path, "--vault", "-m", str(m), DMP_VAULT_PLANNING="head")
    proxy.arm(Aim(kind="list"), kinds=("internal",))  # every listing fails, always
    listed = run(proxy, tmp_path, "--vault", "-m", str(m), "-v", DMP_VAULT_PLANNING="list")
    assert listed.returncode == 0
    assert listed.stdout == expected.stdout
    assert proxy.counts.kinds()["head"] == 202
    assert b"checksums are asked about one by one" in listed.stderr


def test_on_the_fleet_the_rows_are_the_same(
    proxy: FaultProxy, redis: Service, tmp_path: Path
) -> None:
    m = manifest(tmp_path, 800, missing=2, copies=3)
    expected = run(proxy, tmp_path, "--vault", "-m", str(m), DMP_VAULT_PLANNING="head")
    url = redis.url.rsplit("/", 1)[0] + "/11"
    worker_env = {k: v for k, v in env(proxy).items() if k.startswith(("AWS_", "DMP_V"))}
    with worker(url, "lister", tmp_path, concurrency=2, **worker_env):
        listed = run(proxy, tmp_path, "--vault", "-m", str(m), "-v", DMP_BROKER_URL=url)
    assert listed.returncode == expected.returncode == 0, listed.stderr
    assert listed.stdout == expected.stdout
    counts = proxy.counts.kinds()
    assert counts["head"] == 0 and counts["list"] == lists(1, 800, 2)
    (note,) = notes(listed)
    assert note.startswith(f"{LISTED} the whole vault: 3 LIST requests")
    # The listing's job is judged as the --vault that sent it.
    jobs = run_dmp("job", "list", cwd=tmp_path, env=env(proxy, DMP_BROKER_URL=url))
    assert jobs.returncode == 0, jobs.stderr
    assert jobs.stdout.count(b"dmp manifest --vault") >= 2


@pytest.mark.parametrize("value", ["sometimes", "HEADS"])
def test_a_bad_setting_is_a_usage_error(proxy: FaultProxy, tmp_path: Path, value: str) -> None:
    m = manifest(tmp_path, 3)
    result = run(proxy, tmp_path, "--vault", "-m", str(m), DMP_VAULT_PLANNING=value)
    assert result.returncode == 2
    assert result.stderr.decode() == (
        f"dmp: DMP_VAULT_PLANNING must be auto, head or list, not {value!r}\n"
    )
    assert result.stdout == b""
    assert proxy.counts.requests == 0
