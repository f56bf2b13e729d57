"""A command and workers of different versions of dmp: the work is refused, in one line
that says so, rather than misread."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from dmp_cli import __version__
from dmp_tasks.wire import PROTOCOL
from tests.integration.fleet import run, worker
from tests.servers import Service

pytestmark = pytest.mark.integration

OURS = f"dmp {re.escape(__version__)} \\(protocol {PROTOCOL}\\)"
THEIRS = f"dmp {re.escape(__version__)} \\(protocol {PROTOCOL - 1}\\)"
ADVICE = "run the same version of dmp on the workers and where commands are run"


@pytest.fixture(scope="module")
def other(redis: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The only worker on a Redis database of its own, speaking the protocol before ours."""
    logdir = tmp_path_factory.mktemp("other-logs")
    url = redis.url.rsplit("/", 1)[0] + "/12"
    with worker(url, "other", logdir, module=["-m", "tests.integration.other_protocol"]):
        yield url


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "a.txt").write_bytes(b"alpha\n")
    (tmp_path / "b.txt").write_bytes(b"beta\n")
    return tmp_path


def test_an_attached_command_says_its_workers_run_another_version(other: str, work: Path) -> None:
    args = ["manifest", "--create", "a.txt", "b.txt", "-m", "out.sha256"]
    proc = run(*args, cwd=work, broker_url=other)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == b""
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert re.fullmatch(
        f"dmp: job [0-9a-f]+: this worker runs {THEIRS} and the command {OURS}: {ADVICE}",
        lines[0],
    ), lines
    assert not (work / "out.sha256").exists()


def test_a_detached_job_fails_saying_its_coordinator_runs_another_version(
    other: str, work: Path
) -> None:
    args = ["manifest", "--create", "a.txt", "-m", "out.sha256", "--detach"]
    submitted = run(*args, cwd=work, broker_url=other)
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.decode().split()[-1]
    watched = run("job", "watch", job, cwd=work, broker_url=other, timeout=60)
    assert watched.returncode == 1, watched.stderr
    said = watched.stderr.decode()
    why = f"this worker runs {THEIRS} and the job's submitter {OURS}: {ADVICE}"
    assert re.search(why, said), said
    assert not (work / "out.sha256").exists()
