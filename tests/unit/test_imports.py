"""The pure core imports nothing heavy: no Celery, no boto3, in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

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
        "dmp_cli.check",
        "dmp_cli.api",
    ],
)
def test_core_module_pulls_in_neither_celery_nor_boto3(module: str) -> None:
    assert heavy_modules_after(module) == []


def test_the_probe_sees_heavy_imports() -> None:
    # the probe would notice: importing boto3 really does show up
    assert "boto3" in heavy_modules_after("boto3")
