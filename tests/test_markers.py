"""Every module of integration tests is marked, so that `pytest -m "not integration"`
runs the fast unit tests alone (tests/conftest.py stops an unmarked test that starts a
process)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

INTEGRATION = Path(__file__).parent / "integration"
MODULES = sorted(path.stem for path in INTEGRATION.glob("test_*.py"))


def marks_of(module: str) -> list[str]:
    marks = getattr(importlib.import_module(f"tests.integration.{module}"), "pytestmark", [])
    return [mark.name for mark in (marks if isinstance(marks, list) else [marks])]


def test_there_are_integration_modules() -> None:
    assert "test_fleet" in MODULES and "test_create" in MODULES


@pytest.mark.parametrize("module", MODULES)
def test_integration_module_is_marked(module: str) -> None:
    assert "integration" in marks_of(module), f"tests/integration/{module}.py: add pytestmark"
