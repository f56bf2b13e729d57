"""The table of operations: every name loads its operation, and only where it is needed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dmp_cli import ops


@pytest.mark.parametrize("name", sorted(ops.TABLE))
def test_each_name_in_the_table_loads_its_operation(name: str) -> None:
    op = ops.operation_named(name)
    assert isinstance(op, ops.Operation)
    assert op.name == name
    assert op.kind in ("cpu", "io")
    assert ops.kind_of(name) == op.kind


def test_the_kinds_of_the_operations() -> None:
    kinds = {name: ops.kind_of(name) for name in ops.TABLE}
    assert kinds == {
        "hash": "cpu",
        "check": "cpu",
        "head": "io",
        "upload": "io",
        "download": "io",
        "vault-list": "io",
        "pack": "io",
    }


def test_an_unknown_operation_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        ops.operation_named("no-such-operation")


@pytest.mark.integration  # a fresh interpreter
def test_hashing_does_not_load_the_transfers() -> None:
    probe = (
        "import sys; from dmp_cli import ops; ops.operation_named({!r}); print({!r} in sys.modules)"
    )
    for name, loaded in (("hash", "False"), ("check", "False"), ("head", "True")):
        code = probe.format(name, "dmp_cli.transfer")
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == loaded, name
