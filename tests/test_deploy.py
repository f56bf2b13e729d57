"""deploy/ and docker-compose.yml: parsed and checked here, as no Docker engine or Slurm
runs in the tests. The Slurm script is run for real against stand-in srun and scontrol."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from dmp_cli.cli.worker import worker as worker_command
from tests.servers import REPO

ROOT = Path(REPO)
QUEUES = {"dmp.hash", "dmp.transfer", "dmp.big", "dmp.coord"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    with open(ROOT / "docker-compose.yml") as stream:
        document = yaml.safe_load(stream)
    assert isinstance(document, dict)
    return document


_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def interpolate(value: Any) -> Any:
    """What `docker compose` makes of ``${VAR:-default}`` with nothing set: the default."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: m.group(2) or "", value).replace("$$", "$")
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


def test_compose_variables_all_have_defaults(compose: dict[str, Any]) -> None:
    """A site can start the file as it is: every variable has a default."""
    text = (ROOT / "docker-compose.yml").read_text()
    for match in re.finditer(r"\$\{[^}]*\}", text):
        assert _VARIABLE.fullmatch(match.group()) and ":-" in match.group(), match.group()


def workers(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service for name, service in compose["services"].items() if name.startswith("worker")
    }


def test_compose_has_redis_minio_and_workers(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"redis", "minio", "minio-init"} <= set(services)
    assert "--requirepass" in services["redis"]["command"]
    assert "healthcheck" in services["redis"] and "healthcheck" in services["minio"]
    for service in services.values():  # nothing listens beyond the host unless a site says
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:")
    assert set(compose["volumes"]) == {"redis-data", "minio-data"}


def test_compose_workers_cover_every_queue(compose: dict[str, Any]) -> None:
    served: set[str] = set()
    for name, service in workers(compose).items():
        args = service["command"]
        # The command must parse as `dmp worker` options (click raises otherwise).
        worker_command.make_context("worker", interpolate(args))
        served |= set(args[args.index("--queues") + 1].split(","))
        env = service["environment"]
        assert env["DMP_BROKER_URL"].startswith("redis://:${DMP_REDIS_PASSWORD")
        assert env["DMP_BROKER_URL"].endswith("@redis:6379/0"), name
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["stop_signal"] == "SIGTERM"
        (volume,) = interpolate(service["volumes"])
        outside, inside = volume.split(":")
        assert outside == inside  # the same paths as on the submitting hosts
        build = service["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    assert served == QUEUES
    big = workers(compose)["worker-big"]["command"]
    assert big[big.index("--concurrency") + 1] == "1"


def test_worker_image() -> None:
    dockerfile = (ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    instructions = [
        line.split()[0] for line in dockerfile.splitlines() if line and not line.startswith("#")
    ]
    assert instructions[0] == "FROM"
    assert "USER" in instructions  # never run the worker as root
    assert 'ENTRYPOINT ["dmp", "worker"]' in dockerfile
    for source in ("dmp_cli", "dmp_tasks", "pyproject.toml"):
        assert source in dockerfile and (ROOT / source).exists()


UNIT = ROOT / "deploy" / "systemd" / "dmp-worker@.service"
# What the unit's comment and the README run: the queues as an instance, escaped.
SYSTEMD_QUEUES = "dmp.hash,dmp.transfer,dmp.big,dmp.coord"


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(UNIT)
    return unit


def test_systemd_unit() -> None:
    unit = _unit()
    service = unit["Service"]
    argv = service["ExecStart"].split()
    assert argv[1:4] == ["worker", "--queues", "%I"]  # unescaped: commas, not \x2c
    # What systemd runs, with the instance unescaped and DMP_WORKER_ARGS unset, parses.
    worker_command.make_context("worker", [SYSTEMD_QUEUES if a == "%I" else a for a in argv[2:-1]])
    assert argv[-1] == "$DMP_WORKER_ARGS"
    assert service["KillSignal"] == "SIGTERM"
    assert service["EnvironmentFile"] == "/etc/dmp/worker.env"
    assert service["User"] != "root"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    # Workers see the submitters' paths: nothing hides /tmp or /home or makes them read-only.
    for hiding in ("PrivateTmp", "ProtectHome", "TemporaryFileSystem", "InaccessiblePaths"):
        assert hiding not in service, hiding
    assert service.get("ProtectSystem", "no") in {"no", "yes", "full"}  # /usr, /etc only


def test_systemd_unit_documentation_is_installed_by_its_instructions() -> None:
    (documentation,) = _unit()["Unit"]["Documentation"].split()
    scheme, _, path = documentation.partition(":")
    assert scheme == "file"
    comment = [line for line in UNIT.read_text().splitlines() if line.startswith("#")]
    assert any(line.split()[-2:] == ["dmp/README.md", path] for line in comment), path


@pytest.mark.integration  # runs systemd-escape and systemd-analyze
def test_systemd_instance_names_the_queues(tmp_path: Path) -> None:
    """The README's instance, escaped by systemd-escape, is a unit that systemd-analyze
    verifies without a warning, and %I in it is the list of queues again."""
    escape, analyze = shutil.which("systemd-escape"), shutil.which("systemd-analyze")
    if escape is None or analyze is None:
        pytest.fail("systemd-escape and systemd-analyze are needed (apt-get install systemd)")
    escaped = subprocess.run(
        [escape, "--template=dmp-worker@.service", SYSTEMD_QUEUES],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert escaped == "dmp-worker@dmp.hash\\x2cdmp.transfer\\x2cdmp.big\\x2cdmp.coord.service"
    instance = escaped.removeprefix("dmp-worker@").removesuffix(".service")
    unescaped = subprocess.run(
        [escape, "--unescape", instance], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert unescaped == SYSTEMD_QUEUES
    # systemd-analyze checks that ExecStart's program exists: any program stands in for
    # /opt/dmp/bin/dmp here.
    (tmp_path / UNIT.name).write_text(
        UNIT.read_text().replace("/opt/dmp/bin/dmp", shutil.which("true") or "/bin/true")
    )
    verified = subprocess.run(
        [analyze, "verify", "--man=no", str(tmp_path / escaped)],
        capture_output=True,
        text=True,
    )
    assert (verified.returncode, verified.stderr) == (0, "")


SBATCH = ROOT / "deploy" / "slurm" / "dmp-workers.sbatch"


@pytest.mark.integration  # runs bash -n
def test_sbatch_directives() -> None:
    directives = [
        line.split()[1] for line in SBATCH.read_text().splitlines() if line.startswith("#SBATCH ")
    ]
    assert "--requeue" in directives
    assert any(d.startswith("--signal=B:TERM@") for d in directives)
    assert subprocess.run(["bash", "-n", str(SBATCH)]).returncode == 0


def _stand_ins(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """srun runs its command here as task 0; scontrol and dmp write down what they got.
    dmp is in a directory of its own that DMP_SETUP puts on the PATH, as a module or a
    virtualenv would. The dmp stand-in runs until SIGTERM, or ends at once with the status
    in STAND_IN_EXIT."""
    bin_dir, venv, record = tmp_path / "bin", tmp_path / "venv", tmp_path / "record"
    bin_dir.mkdir()
    venv.mkdir()
    scripts = {
        bin_dir / "srun": 'while [[ "$1" == --* ]]; do shift; done\n'
        'export SLURM_PROCID=0\nexec "$@"\n',
        bin_dir / "scontrol": f'echo "scontrol $*" >> {record}\n',
        venv / "dmp": 'echo "dmp $* idle=$DMP_WORKER_IDLE_EXIT broker=${DMP_BROKER_URL:+set}"'
        f" >> {record}\n"
        'if [[ -n "${STAND_IN_EXIT:-}" ]]; then exit "$STAND_IN_EXIT"; fi\n'
        f"trap 'echo dmp-got-TERM >> {record}; exit 0' TERM\n"
        "while true; do sleep 0.05; done\n",
    }
    for path, body in scripts.items():
        path.write_text("#!/bin/bash\n" + body)
        path.chmod(0o755)
    setup = tmp_path / "setup.sh"
    # As module systems do: an unset variable, and a status that is not 0 on the way.
    setup.write_text(f'[[ -n "$NOT_SET_ANYWHERE" ]]\nPATH="{venv}:$PATH"\ntrue\n')
    env_file = tmp_path / "fleet.env"
    env_file.write_text("DMP_BROKER_URL=redis://:secret@redis.example:6379/0\n")
    env = {  # no USER: Slurm does not always set it
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "SLURM_JOB_ID": "4242",
        "SLURM_CPUS_PER_TASK": "8",
        "DMP_ENV_FILE": str(env_file),
        "DMP_SETUP": str(setup),
    }
    return env, record


def _sbatch(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["bash", str(SBATCH)],
        env=env,
        cwd=env["HOME"],
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.integration  # runs the batch script
def test_sbatch_runs_workers_and_requeues_at_walltime(tmp_path: Path) -> None:
    env, record = _stand_ins(tmp_path)
    proc = _sbatch(env)
    try:
        deadline = time.monotonic() + 10
        while not (record.exists() and "dmp worker" in record.read_text()):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # what --signal=B:TERM@300 does before walltime
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    lines = record.read_text().splitlines()
    started = lines[0].split()
    assert started[:2] == ["dmp", "worker"]
    assert started[started.index("--concurrency") + 1] == "8"
    name = started[started.index("--name") + 1]
    assert name.startswith("dmp-4242-0-0@")
    # Logs outlive the job: under HOME, not the job's TMPDIR.
    logs = tmp_path / ".local" / "state" / "dmp" / "slurm"
    assert started[started.index("--logfile") + 1] == f"{logs}/worker-4242-0-0.log"
    assert logs.is_dir()
    assert started[-2:] == ["idle=30", "broker=set"]
    assert lines[1:] == ["dmp-got-TERM", "scontrol requeue 4242"]
    assert proc.returncode == 0
    assert b"secret" not in err


@pytest.mark.integration  # runs the batch script
@pytest.mark.parametrize(("status", "message"), [(0, ""), (3, "workers ended with status 3")])
def test_sbatch_ends_without_requeue_when_workers_stop(
    tmp_path: Path, status: int, message: str
) -> None:
    """Idle workers exit 0 by themselves (--idle-exit): the job ends and gives its nodes
    back. Failed ones end it too, rather than requeueing it into the same failure."""
    env, record = _stand_ins(tmp_path)
    env |= {"STAND_IN_EXIT": str(status), "DMP_WORKER_IDLE_EXIT": "5", "DMP_LOG_DIR": "logs"}
    proc = _sbatch(env)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == status
    (line,) = record.read_text().splitlines()  # no scontrol requeue
    assert line.startswith("dmp worker ") and line.endswith(" idle=5 broker=set")
    assert err.decode() == (f"dmp-workers: {message}; see logs\n" if message else "")


@pytest.mark.integration  # runs the batch script
@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (None, "no dmp on the PATH"),
        ("missing.sh", "DMP_SETUP: {tmp}/missing.sh not readable"),
        ("broken.sh", "DMP_SETUP: {tmp}/broken.sh failed with status 7"),
    ],
    ids=["no-setup", "missing", "failing"],
)
def test_sbatch_setup_hook_errors(tmp_path: Path, setup: str | None, message: str) -> None:
    env, record = _stand_ins(tmp_path)
    (tmp_path / "broken.sh").write_text("return 7\n")
    if setup is None:
        del env["DMP_SETUP"]
    else:
        env["DMP_SETUP"] = str(tmp_path / setup)
    proc = _sbatch(env)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 1
    (line,) = err.decode().splitlines()
    assert line.startswith("dmp-workers: " + message.format(tmp=tmp_path))
    assert not record.exists()  # no worker started
