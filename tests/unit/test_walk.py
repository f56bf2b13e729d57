"""The fanned-out walk's lister: listings asked for ahead, merged in the walk's order.

The workers are stood in for by a fake app that runs ``dmp.list_dirs`` at once, in this
process; the order and the content must be the embedded walk's whatever the budget."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from dmp_cli.inputs import Inputs, walk_items
from dmp_tasks import walk


class _Result:
    ids = itertools.count()

    def __init__(self, value: Any) -> None:
        self.value, self.id = value, f"task-{next(self.ids)}"
        self.forgotten = False

    def get(self, **_: Any) -> Any:
        return self.value

    def forget(self) -> None:
        self.forgotten = True


class _App:
    """Runs each listing task when it is sent; counts them."""

    def __init__(self) -> None:
        self.sent: list[list[str]] = []
        self.listed: list[str] = []

    def signature(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        assert name == "dmp.list_dirs"
        assert kwargs == {}  # no credential where DMP_AUTH is none
        app = self

        class _Signature:
            def apply_async(self, queue: str) -> _Result:
                app.sent.append(list(args[0]))
                found = walk.list_dirs(*args)
                app.listed += [name for name, *_ in found]
                return _Result(found)

        return _Signature()


def _tree(root: Path) -> None:
    for path in [
        "a/1", "a/b/2", "a/b/c/3", "a/b/c/d/4", "a/e/5", "a/z", "b/6", "b/.h/7",
        "c/x/y/z/8", "c/9", "d1/10", "d2/11", "d3/12", "top",
    ]:  # fmt: skip
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(path)
    (root / "empty" / "deeper").mkdir(parents=True)
    (root / "a" / "link").symlink_to("b")


@pytest.mark.parametrize("budget", [1, 3, 5, 20_000])
@pytest.mark.parametrize("recursive", [True, False])
def test_fleet_walk_is_the_embedded_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: int, recursive: bool
) -> None:
    _tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(walk, "ENTRIES_A_TASK", budget)
    monkeypatch.setattr(walk, "DIRS_A_TASK", 2)
    inputs = Inputs(dirs=[".", "a", "c"], recursive=recursive)
    embedded = list(walk_items(inputs, lambda *_: None))
    app = _App()
    lister = walk.FleetLister(app, str(tmp_path), inputs.dirs, recursive)
    fanned = list(walk_items(inputs, lambda *_: None, lister))
    assert [item["path"] for item in fanned] == [item["path"] for item in embedded]
    assert all(item["size"] == (tmp_path / item["path"]).stat().st_size for item in fanned)
    assert len(app.listed) == len(set(app.listed))  # no directory listed twice
    assert not lister.listed and not lister.asked  # nothing left behind
    if recursive and budget == 20_000:
        assert len(app.sent) < 4  # a few tasks, not one a directory
