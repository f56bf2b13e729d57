"""deploy/ and docker-compose.yml: parsed and checked here, as no Docker engine, systemd or
Slurm runs in the tests. The scripts in them (the Slurm script, minio-init's and Flower's,
the workers' healthcheck) run for real, against stand-ins for srun, scontrol, mc and
Flower, and against a real worker for the healthcheck; systemd-analyze verifies the unit,
and docker-compose (or docker compose) reads the compose file where one is installed."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from dmp_cli.cli.worker import worker as worker_command
from tests.integration.fleet import fleet_env, worker
from tests.servers import REPO, redis_server

ROOT = Path(REPO)
QUEUES = {"dmp.hash", "dmp.transfer", "dmp.big", "dmp.coord"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    with open(ROOT / "docker-compose.yml") as stream:
        document = yaml.safe_load(stream)
    assert isinstance(document, dict)
    return document


# ${VAR}, ${VAR:-default}, ${VAR:?message}; not $${...}, which is the container's shell's.
_VARIABLE = re.compile(r"(?<!\$)\$\{(\w+)(?:(:-|:\?)([^}]*))?\}")
# What a site must set in .env: compose refuses to start without them.
SECRETS = {"DMP_REDIS_PASSWORD", "MINIO_ROOT_PASSWORD", "DMP_S3_SECRET_KEY"}
SET = {name: f"{name.lower()}-value" for name in SECRETS}


def interpolate(value: Any, env: dict[str, str] = SET) -> Any:
    """What `docker compose` makes of ``${VAR:-default}`` and ``${VAR:?message}`` with
    only ``env`` set."""
    if isinstance(value, str):

        def variable(match: re.Match[str]) -> str:
            name, kind, rest = match.groups()
            if name in env:
                return env[name]
            assert kind != ":?", f"compose refuses to start: {rest}"
            return rest or ""

        return _VARIABLE.sub(variable, value).replace("$$", "$")
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    return value


def _variables() -> dict[str, set[str]]:
    """Each variable of docker-compose.yml, with how it is used: ':-', ':?' or ''."""
    found: dict[str, set[str]] = {}
    for match in _VARIABLE.finditer((ROOT / "docker-compose.yml").read_text()):
        found.setdefault(match.group(1), set()).add(match.group(2) or "")
    return found


def test_compose_variables_have_defaults_but_the_secrets(compose: dict[str, Any]) -> None:
    """Every variable has a default, but the passwords: compose refuses to start without
    them, rather than with a password everyone can read here."""
    variables = _variables()
    assert {name for name, kinds in variables.items() if ":?" in kinds} == SECRETS
    for name, kinds in variables.items():
        assert kinds == ({":?"} if name in SECRETS else {":-"}), name
    text = (ROOT / "docker-compose.yml").read_text()
    for name in SECRETS:
        assert text.count(f"${{{name}:?set {name} in .env}}") == text.count(f"${{{name}")


def _env_example() -> dict[str, str]:
    lines = (ROOT / "deploy" / "fleet.env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_env_example_names_every_variable_and_sets_no_password() -> None:
    example = _env_example()
    assert set(_variables()) | {"DMP_FLOWER_PASSWORD"} == set(example)
    for name in SECRETS | {"DMP_FLOWER_PASSWORD"}:
        assert example[name] == "", name  # so that compose refuses the example as it is


def test_compose_file_is_one_that_docker_compose_1_29_reads(compose: dict[str, Any]) -> None:
    """No top-level `name:` (Compose v2 only); services, volumes and extension fields."""
    assert set(compose) - {"services", "volumes"} == {"x-worker"}


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


def test_compose_images_are_pinned(compose: dict[str, Any]) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, service in compose["services"].items():
        image, _, tag = service["image"].rpartition(":")
        assert image and "/" not in tag, name
        if "build" in service:
            assert tag == version, name  # the image built here is dmp's version
        else:
            assert tag != "latest" and re.search(r"\d", tag), name
    dockerfile = (ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base), base


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
        assert service["depends_on"]["minio-init"]["condition"] == (
            "service_completed_successfully"
        )
        assert service["stop_signal"] == "SIGTERM"
        (volume,) = interpolate(service["volumes"])
        outside, inside = volume.split(":")
        assert outside == inside  # the same paths as on the submitting hosts
        build = service["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    assert served == QUEUES
    big = workers(compose)["worker-big"]["command"]
    assert big[big.index("--concurrency") + 1] == "1"


def test_compose_workers_use_a_user_of_the_vault_not_minios_root(
    compose: dict[str, Any],
) -> None:
    init = compose["services"]["minio-init"]["environment"]
    for name, service in workers(compose).items():
        env = service["environment"]
        assert not any("MINIO_ROOT" in str(value) for value in env.values()), name
        assert env["AWS_ACCESS_KEY_ID"] == init["DMP_S3_ACCESS_KEY"]
        assert env["AWS_SECRET_ACCESS_KEY"] == init["DMP_S3_SECRET_KEY"]
        assert env["DMP_VAULT"] == init["DMP_VAULT"]  # the bucket minio-init makes


def test_compose_workers_run_as_dmp_uid(compose: dict[str, Any]) -> None:
    dockerfile = (ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    assert "ARG DMP_UID=" in dockerfile and "ARG DMP_GID=" in dockerfile
    for name, service in workers(compose).items():
        args = service["build"]["args"]
        assert args == {"DMP_UID": "${DMP_UID:-1000}", "DMP_GID": "${DMP_GID:-1000}"}, name
        assert service["user"] == f"{args['DMP_UID']}:{args['DMP_GID']}", name
        assert interpolate(service["user"], {**SET, "DMP_UID": "5001"}) == "5001:1000"


def test_compose_workers_healthcheck_asks_the_worker_by_its_name(
    compose: dict[str, Any],
) -> None:
    for name, service in workers(compose).items():
        args = service["command"]
        assert args[args.index("--name") + 1] == "dmp@%h", name  # %h: the container's host
        kind, command = service["healthcheck"]["test"]
        assert kind == "CMD-SHELL"
        assert interpolate(command) == HEALTHCHECK


HEALTHCHECK = 'celery -A dmp_tasks inspect ping --timeout 10 -d "dmp@$HOSTNAME"'


@pytest.mark.integration  # a real redis-server and worker
def test_compose_worker_healthcheck_passes_on_a_live_worker(tmp_path: Path) -> None:
    env = {"HOSTNAME": socket.gethostname()}
    env["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    with redis_server() as server, worker(server.url, "dmp", tmp_path):
        checked = subprocess.run(
            ["sh", "-c", HEALTHCHECK],
            env=fleet_env(server.url, **env),
            capture_output=True,
            timeout=60,
        )
    assert checked.returncode == 0, checked.stderr
    assert b"pong" in checked.stdout


def _stub(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def _minio_init(tmp_path: Path, vault: str, attached: bool) -> subprocess.CompletedProcess[str]:
    """minio-init's script as compose gives it to the container's sh, against a stand-in
    mc that writes down its arguments and keeps the policy it is given."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    init = compose["services"]["minio-init"]
    (script,) = interpolate(init["command"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / "mc.record"
    policies = "dmp-vault" if attached else ""
    _stub(
        bin_dir / "mc",
        f'echo "$*" >> {record}\n'
        f'[ "$1 $2 $3" = "admin policy create" ] && cp "$6" {tmp_path}/policy.json\n'
        f'[ "$1 $2 $3" = "admin user info" ] && echo "PolicyName: {policies}"\n'
        "exit 0\n",
    )
    env = {**interpolate(init["environment"]), "DMP_VAULT": vault}
    return subprocess.run(
        ["sh", "-c", script],
        env={**env, "PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.integration  # runs sh
@pytest.mark.parametrize("attached", [False, True], ids=["first-start", "again"])
def test_minio_init_makes_the_vaults_bucket_and_a_user_for_it(
    tmp_path: Path, attached: bool
) -> None:
    made = _minio_init(tmp_path, "s3://site-vault/objects", attached)
    assert made.returncode == 0, made.stderr
    calls = (tmp_path / "mc.record").read_text().splitlines()
    assert calls[1] == "mb --ignore-existing vault/site-vault"
    assert "admin user add vault dmp-worker dmp_s3_secret_key-value" in calls
    attach = "admin policy attach vault dmp-vault --user dmp-worker"
    assert (attach in calls) is not attached  # attaching again is an error in mc
    policy = json.loads((tmp_path / "policy.json").read_text())
    resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
    assert resources == {"arn:aws:s3:::site-vault", "arn:aws:s3:::site-vault/*"}
    actions = {a for statement in policy["Statement"] for a in statement["Action"]}
    assert "s3:PutObject" in actions and not any("Delete" in a or "*" in a for a in actions)


@pytest.mark.integration  # runs sh
def test_minio_init_refuses_a_vault_that_is_not_s3(tmp_path: Path) -> None:
    made = _minio_init(tmp_path, "file:///srv/vault", attached=False)
    assert made.returncode == 1
    assert (
        made.stderr == "minio-init: DMP_VAULT must be s3://BUCKET/PREFIX, not file:///srv/vault\n"
    )
    assert not (tmp_path / "mc.record").exists()


@pytest.mark.integration  # runs sh
@pytest.mark.parametrize("password", ["", "s3cret"], ids=["unset", "set"])
def test_flower_is_optional_and_starts_only_with_a_password(
    compose: dict[str, Any], tmp_path: Path, password: str
) -> None:
    flower = compose["services"]["flower"]
    assert flower["profiles"] == ["flower"]  # not started by a plain `up`
    assert not any("flower" in s.get("depends_on", {}) for s in compose["services"].values())
    _stub(tmp_path / "celery", 'echo "celery $* auth=$FLOWER_BASIC_AUTH"\n')
    (script,) = interpolate(flower["command"])
    env = interpolate(flower["environment"], {**SET, "DMP_FLOWER_PASSWORD": password})
    started = subprocess.run(
        ["sh", "-c", script],
        env={**env, "PATH": f"{tmp_path}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    if password:
        assert (started.returncode, started.stdout) == (
            0,
            "celery flower --port=5555 auth=dmp:s3cret\n",
        )
    else:
        assert (started.returncode, started.stderr) == (
            1,
            "flower: set DMP_FLOWER_PASSWORD in .env\n",
        )


def _compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    return None


@pytest.mark.integration  # runs docker-compose or docker compose
def test_compose_config_accepts_the_file_with_passwords_set(tmp_path: Path) -> None:
    """Compose itself (v2, or the 1.29 of Debian) reads the file, and refuses the env
    example until its passwords are set."""
    command = _compose_command()
    if command is None:
        pytest.fail("docker-compose is needed (apt-get install docker-compose)")
    env_file = tmp_path / "site.env"
    example = _env_example()
    env_file.write_text("".join(f"{k}={v}\n" for k, v in {**example, **SET}.items()))
    base = [*command, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml")]
    clean = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    accepted = subprocess.run(
        [*base, "--env-file", str(env_file), "config", "-q"], env=clean, capture_output=True
    )
    assert accepted.returncode == 0, accepted.stderr
    refused = subprocess.run(
        [*base, "--env-file", str(ROOT / "deploy" / "fleet.env.example"), "config", "-q"],
        env=clean,
        capture_output=True,
    )
    assert refused.returncode != 0
    assert b"in .env" in refused.stderr


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
# What the unit's comment and docs/fleet.md run: the queues as an instance, escaped.
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
    """The instance docs/fleet.md runs, escaped by systemd-escape, is a unit that
    systemd-analyze verifies without a warning, and %I in it is the list of queues again."""
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


SHARED_UNIT = ROOT / "deploy" / "systemd" / "dmp-shared-worker@.service"


def test_shared_fleet_unit_is_root_with_only_the_capabilities_to_become_a_user() -> None:
    """docs/security.md's shared fleet: root, but only able to become users (no
    CAP_DAC_OVERRIDE), every message authenticated with MUNGE, after munged."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(SHARED_UNIT)
    service = unit["Service"]
    assert service["ExecStart"].split()[1:4] == ["worker", "--queues", "%I"]
    assert service["User"] == "root"
    assert set(service["CapabilityBoundingSet"].split()) == {"CAP_SETUID", "CAP_SETGID", "CAP_KILL"}
    assert service["Environment"] == "DMP_AUTH=munge"
    assert service["NoNewPrivileges"] == "yes"
    assert "munge.service" in unit["Unit"]["After"].split()
    assert "munge.service" in unit["Unit"]["Requires"].split()
    assert service["EnvironmentFile"] == "/etc/dmp/worker.env"


@pytest.mark.integration  # runs systemd-analyze
def test_shared_fleet_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is needed (apt-get install systemd)")
    name = f"dmp-shared-worker@{SYSTEMD_QUEUES.replace(',', chr(92) + 'x2c')}.service"
    (tmp_path / SHARED_UNIT.name).write_text(
        SHARED_UNIT.read_text().replace("/opt/dmp/bin/dmp", shutil.which("true") or "/bin/true")
    )
    verified = subprocess.run(
        [analyze, "verify", "--man=no", str(tmp_path / name)], capture_output=True, text=True
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


def test_the_docs_run_the_commands_checked_here() -> None:
    fleet = (ROOT / "docs" / "fleet.md").read_text()  # Running a fleet: the deploy commands
    assert f"systemd-escape --template=dmp-worker@.service {SYSTEMD_QUEUES})" in fleet
    for page in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
        # an unescaped instance: never as a unit
        assert "dmp-worker@dmp.hash,dmp" not in page.read_text(), page
    # The fleet.env lines work on a fresh account: the directory is made first.
    made = fleet.index("install -d -m 700 ~/.config/dmp\n")
    assert made < fleet.index("install -m 600 /dev/null ~/.config/dmp/fleet.env")
