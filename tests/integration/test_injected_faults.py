"""No exception escapes a file: one injected into an operation or a store method, for one
file, fails that file alone, with one line naming it, for all five commands, embedded and
on the fleet; the rest of the run goes on and the summary counts it. A transient one
(a reset connection, ESTALE) is tried again, with backoff, and the file then goes through.

The real `dmp` runs as a subprocess through ``tests.integration.faults``, which wraps the
stores and operations so that they raise as a plan file says (see that module).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dmp_cli.layout import digest_key
from tests.integration.fleet import fleet_env, worker
from tests.integration.vaultkit import make_tree, sha
from tests.servers import Service

pytestmark = pytest.mark.integration

VICTIM = "data/victim.txt"
FILES = {
    "data/a.txt": b"alpha\n",
    "data/b.txt": b"bravo bravo\n",
    VICTIM: b"the file that fails\n",
    "data/sub/c.txt": b"charlie\n" * 100,
}
OTHERS = [name for name in FILES if name != VICTIM]
TRANSFERS = ("vault", "archive", "fetch")


@dataclass(frozen=True)
class Case:
    command: str  # create, check, vault, archive, fetch
    target: str  # op.NAME or store.METHOD
    error: str = "RuntimeError"  # see faults.error
    times: int = 0  # raise only this many times (0: always)
    path: bool = False  # --archive --path into a second file:// store


CASES = {
    "create-op": Case("create", "op.hash"),
    "check-op": Case("check", "op.check", "KeyError"),
    "check-op-eio": Case("check", "op.check", "EIO"),
    "vault-op": Case("vault", "op.head", "KeyError"),
    "vault-head": Case("vault", "store.head"),
    "archive-op": Case("archive", "op.upload", "KeyError"),
    "archive-put": Case("archive", "store.put_file"),
    "archive-path-has": Case("archive", "store.has", path=True),
    "archive-path-copy": Case("archive", "store.copy", "KeyError", path=True),
    "fetch-op": Case("fetch", "op.download"),
    "fetch-get": Case("fetch", "store.get_file", "KeyError"),
    "fetch-get-reset": Case("fetch", "store.get_file", "ConnectionResetError"),
    # Transient, once: tried again, and then it goes through.
    "archive-put-reset-once": Case("archive", "store.put_file", "ConnectionResetError", 1),
    "fetch-get-estale-once": Case("fetch", "store.get_file", "ESTALE", 1),
    "check-op-estale-once": Case("check", "op.check", "ESTALE", 1),
}

TEXT = {
    "RuntimeError": "RuntimeError: injected fault",
    "KeyError": "KeyError: 'digest'",
    "EIO": "Input/output error (injected)",
    "ESTALE": "Stale file handle (injected)",
    "ConnectionResetError": "Connection reset by peer (injected)",
}


@dataclass
class Site:
    work: Path
    vault: Path
    plan: Path
    env: dict[str, str]

    def dmp(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(
            [sys.executable, "-m", "tests.integration.faults", *args],
            cwd=cwd or self.work,
            env=self.env,
            capture_output=True,
            timeout=120,
        )
        assert b"Traceback" not in result.stderr, result.stderr.decode()
        assert b"unexpected error" not in result.stderr, result.stderr.decode()
        return result


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults") / "plan.json"


@pytest.fixture(scope="module")
def fleet(
    redis: Service, plan_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One worker, with the faults installed, for every fleet case (it reads the plan
    at each call)."""
    logs = tmp_path_factory.mktemp("fault-workers")
    cmd = ["-m", "tests.integration.faults"]
    with worker(
        redis.url,
        "faulty",
        logs,
        concurrency=2,
        module=cmd,
        DMP_TEST_FAULTS=str(plan_file),
        DMP_RETRY_DELAYS="0.01,0.02",
    ):
        yield redis.url


def _site(tmp_path: Path, plan: Path, broker: str | None) -> Site:
    work = tmp_path / "work"
    work.mkdir()
    make_tree(work, FILES)
    vault = tmp_path / "vault"
    vault.mkdir()
    env = fleet_env(
        broker,
        DMP_VAULT=f"file://{vault}",
        DMP_TEST_FAULTS=str(plan),
        DMP_RETRY_DELAYS="0.01,0.02",
        # The faults are a file's own (a listing's are test_vault_planning.py's): each
        # checksum is asked about by HEAD, as a vault this small would otherwise be listed.
        DMP_VAULT_PLANNING="head",
    )
    return Site(work, vault, plan, env)


def _arm(site: Site, case: Case) -> None:
    plan = {
        "target": case.target,
        "victim": VICTIM.rsplit("/", 1)[1],
        "digest": sha(FILES[VICTIM]),
        "error": case.error,
        "times": case.times,
    }
    site.plan.write_text(json.dumps(plan))
    site.plan.with_suffix(".count").unlink(missing_ok=True)


def _disarm(site: Site) -> None:
    site.plan.write_text("{}")


def _run(site: Site, case: Case, tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    """Set the scene for the case (faults off), then run its command with them on."""
    _disarm(site)
    if case.command in ("vault", "fetch"):
        assert site.dmp("manifest", "--archive", "-m", "manifest.sha256").returncode == 0
    args = ["manifest", f"--{case.command}"]
    cwd = site.work
    if case.command == "create":
        args += ["--dir", "data", "--recursive"]
    else:
        args += ["-m", str(site.work / "manifest.sha256")]
    if case.path:
        args += ["--path", f"file://{tmp_path / 'archive'}", "--all"]
    if case.command == "fetch":
        cwd = tmp_path / "restore"
        cwd.mkdir()
    _arm(site, case)
    try:
        return site.dmp(*args, cwd=cwd)
    finally:
        _disarm(site)


def _check_outcome(site: Site, case: Case, result: subprocess.CompletedProcess[bytes]) -> None:
    out, err = result.stdout.decode(), result.stderr.decode()
    lines = err.splitlines()
    if case.times:  # transient, once: retried, and every file went through
        assert result.returncode == 0, err
        assert "victim" not in err, err
        assert site.plan.with_suffix(".count").read_text() == "x" * case.times  # it did fail
        named = [*OTHERS, VICTIM]
    else:
        assert result.returncode == 1, err
        about = [line for line in lines if "victim" in line]
        assert len(about) == 1 and about[0].startswith(f"dmp: {VICTIM}: "), lines
        assert TEXT[case.error] in about[0], about
        unforeseen = case.error not in ("EIO", "ESTALE", "ConnectionResetError")
        if unforeseen and case.target.startswith("op.") and case.command in TRANSFERS:
            assert digest_key(sha(FILES[VICTIM])) in about[0], about  # names the object too
        named = OTHERS
    for name in named:  # the rest went on
        assert re.search(rf"(?m)^{re.escape(name)}(: | *$)", out) or sha(FILES[name]) in out, out
    failed = 0 if case.times else 1
    summary = {
        "create": None,
        "check": "could not be read" if failed else None,
        "vault": f"{len(FILES)} files, {len(FILES)} distinct checksums: "
        f"{len(FILES) - failed} in the vault, 0 missing, {failed} failed",
        "archive": f"uploaded, 0 skipped as already archived, {failed} failed",
        "fetch": f"fetched, 0 already present, {failed} failed",
    }[case.command]
    if case.command == "create" and failed:
        assert lines[-1] == "dmp: 1 input could not be read; the manifest is incomplete", lines
    if summary:
        assert summary in lines[-1], lines
    if case.command == "archive":
        stored = sorted(p.name for p in site.vault.rglob("*") if p.is_file())
        expect = {sha(FILES[n])[16:] for n in named}
        assert set(stored) == expect, stored


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_embedded(case: Case, plan_file: Path, tmp_path: Path) -> None:
    site = _site(tmp_path, plan_file, None)
    _check_outcome(site, case, _run(site, case, tmp_path))


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_on_the_fleet(case: Case, fleet: str, plan_file: Path, tmp_path: Path) -> None:
    site = _site(tmp_path, plan_file, fleet)
    _check_outcome(site, case, _run(site, case, tmp_path))
