"""The layers as .importlinter writes them down, for the tests that hold the code to them."""

from __future__ import annotations

import configparser
from pathlib import Path

from tests.servers import REPO

PACKAGES = ("dmp_cli", "dmp_tasks")


def layers() -> list[list[str]]:
    """The layers, top to bottom, each as its modules' names (optional ones unwrapped)."""
    config = configparser.ConfigParser()
    config.read(Path(REPO) / ".importlinter")
    raw = config["importlinter:contract:layers"]["layers"]
    rows = [line.strip() for line in raw.splitlines() if line.strip()]
    return [[name.strip().strip("()") for name in row.replace("|", ":").split(":")] for row in rows]


def modules() -> set[str]:
    """Every module of dmp's packages, found on disk (nothing is imported)."""
    found = set()
    for package in PACKAGES:
        for path in (Path(REPO) / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            found.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def core() -> list[str]:
    """The modules of the bottom layer that exist."""
    existing = modules()
    return sorted(name for name in layers()[-1] if name in existing)
