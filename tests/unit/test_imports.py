"""The pure core imports nothing heavy: no Celery, no boto3, in a fresh interpreter; and a
core module imports alone, without the API or the layers above it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.layers import core

pytestmark = pytest.mark.integration  # each test runs a fresh interpreter

HEAVY = ("celery", "kombu", "boto3", "botocore", "s3transfer", "redis")

PROBE = """
import json, sys
for name in sys.argv[1:]:
    __import__(name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})))
"""


def heavy_modules_after(*modules: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=set(HEAVY)), *modules],
        capture_output=True,
        text=True,
        check=True,
    )
    return list(json.loads(proc.stdout))


@pytest.mark.parametrize(
    "module",
    [
        "dmp_cli",
        "dmp_cli.manifest",
        "dmp_cli.layout",
        "dmp_cli.digest",
        "dmp_cli.quoting",
        "dmp_cli.runs.check_counts",
        "dmp_cli.api",
    ],
)
def test_core_module_pulls_in_neither_celery_nor_boto3(module: str) -> None:
    assert heavy_modules_after(module) == []


def test_the_probe_sees_heavy_imports() -> None:
    # the probe would notice: importing boto3 really does show up
    assert "boto3" in heavy_modules_after("boto3")


# The core layer, as .importlinter has it: each imports only the core, and nothing that
# talks to a service or a terminal.
CORE = core()
NOT_IN_CORE = (*HEAVY, "click", "tqdm")

LOADED = """
import json, sys
__import__(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


def modules_after(module: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", LOADED, module], capture_output=True, text=True, check=True
    )
    return set(json.loads(proc.stdout))


@pytest.mark.parametrize("module", CORE)
def test_a_core_module_imports_alone(module: str) -> None:
    loaded = modules_after(module)
    assert sorted(m for m in loaded if m.split(".")[0] in NOT_IN_CORE) == []
    assert "dmp_cli.api" not in loaded
    ours = {m for m in loaded if m.split(".")[0] in ("dmp_cli", "dmp_tasks")}
    assert ours <= {"dmp_cli", *CORE}, sorted(ours - {"dmp_cli", *CORE})


def test_the_package_imports_only_its_metadata() -> None:
    loaded = modules_after("dmp_cli")
    assert sorted(m for m in loaded if m.startswith(("dmp_cli.", "dmp_tasks"))) == []


def test_the_public_names_come_on_first_use() -> None:
    code = (
        "import sys, dmp_cli; "
        "assert 'dmp_cli.api' not in sys.modules; "
        "from dmp_cli import CheckResult, DmpError, Entry, check_manifest; "
        "import dmp_cli.api, dmp_cli.errors, dmp_cli.manifest; "
        "assert CheckResult is dmp_cli.api.CheckResult; "
        "assert DmpError is dmp_cli.errors.DmpError and Entry is dmp_cli.manifest.Entry; "
        "assert check_manifest is dmp_cli.api.check_manifest; "
        "assert set(dmp_cli.__all__) <= set(dir(dmp_cli)); "
        "print(dmp_cli.__version__)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0.1.0"


def test_an_unknown_name_is_an_attribute_error() -> None:
    import dmp_cli

    with pytest.raises(AttributeError, match="no_such_name"):
        dmp_cli.no_such_name  # noqa: B018
