"""The layers of .importlinter cover every module: one added outside them would go
unchecked, so it fails here until it is given its layer."""

from __future__ import annotations

from tests.layers import layers, modules

# The package itself (its metadata, and the public names imported on first use) and
# `python -m dmp_cli`, which only calls the CLI.
OUTSIDE = {"dmp_cli", "dmp_cli.__main__"}


def test_every_module_is_in_a_layer() -> None:
    placed = {name for row in layers() for name in row}

    def in_a_layer(module: str) -> bool:
        parts = module.split(".")
        return any(".".join(parts[:i]) in placed for i in range(1, len(parts) + 1))

    assert sorted(m for m in modules() - OUTSIDE if not in_a_layer(m)) == []


def test_the_layers_run_from_the_front_ends_down_to_the_core() -> None:
    rows = layers()
    assert rows[0] == ["dmp_cli.cli", "dmp_cli.api"]
    assert rows[2] == ["dmp_tasks"]
    assert {"dmp_cli.errors", "dmp_cli.manifest", "dmp_cli.urls"} <= set(rows[-1])
