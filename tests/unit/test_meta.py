"""The companion of metadata: written in the walk's order, picked up from a checkpoint
byte for byte, any POSIX name kept, and refused when it is not its manifest's."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from dmp_cli.inputs import Inputs, walk_items
from dmp_cli.manifest import dmp_line
from dmp_cli.meta import Companion, MetaError, Recorder, get_name, record


def _tree(root: Path) -> None:
    for d in range(3):
        sub = root / "t" / f"d{d}"
        (sub / "empty").mkdir(parents=True)
        for f in range(3):
            (sub / f"f{f}").write_bytes(b"x" * f)
        os.symlink("nowhere", sub / "dangling")
    (root / "t" / os.fsdecode(b"not-utf8-\xff")).write_bytes(b"odd")


def _write(recorder: Recorder, items: list[str], start: int = 0) -> bytes:
    """What a --create writes for ``items`` from the ``start``-th file's row on."""
    manifest = b""
    for index, path in enumerate(items):
        if index < start:
            continue
        line = dmp_line("0" * 64, path)
        manifest += line
        recorder.manifest_bytes(line)
        recorder.row(path)
    recorder.finish()
    return manifest


def _walked(recorder: Recorder) -> list[str]:
    paths = []
    for item in walk_items(Inputs(dirs=["t"], recursive=True), lambda *_: None, None, recorder.met):
        recorder.file()
        paths.append(item["path"])
    return paths


@pytest.mark.parametrize("files_done", [0, 1, 5, 9], ids=lambda n: f"after-{n}")
def test_a_companion_picked_up_from_a_checkpoint_is_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files_done: int
) -> None:
    monkeypatch.chdir(tmp_path)
    _tree(tmp_path)
    whole = Recorder(io.BytesIO())
    items = _walked(whole)
    _write(whole, items)
    expected = whole.stream.getvalue()  # type: ignore[attr-defined]

    first = Recorder(io.BytesIO())
    _walked(first)
    manifest = b""
    for path in items[:files_done]:
        line = dmp_line("0" * 64, path)
        manifest += line
        first.manifest_bytes(line)
        first.row(path)
    written = first.stream.getvalue()  # type: ignore[attr-defined]

    state = {**first.state(), "files": files_done, "manifest": manifest}
    resumed = Recorder(io.BytesIO(), state)
    _walked(resumed)
    _write(resumed, items, start=files_done)
    assert written + resumed.stream.getvalue() == expected  # type: ignore[attr-defined]


def test_names_that_are_not_utf8_go_in_base64(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    name = os.fsdecode(b"caf\xe9")
    Path(name).write_bytes(b"")
    os.symlink(os.fsdecode(b"\xfftarget"), "link")
    rec = record(name, entry=True)
    assert "path" not in rec and get_name(rec, "path") == name
    assert get_name(record("link"), "target") == os.fsdecode(b"\xfftarget")


def test_a_record_after_the_last_line_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"")
    manifest = tmp_path / "m"
    manifest.write_bytes(dmp_line("0" * 64, str(tmp_path / "a")))
    stream = io.BytesIO()
    recorder = Recorder(stream)
    recorder.file()
    recorder.manifest_bytes(manifest.read_bytes())
    recorder.row(str(tmp_path / "a"))
    recorder.finish()
    companion = tmp_path / "m.meta"
    companion.write_bytes(stream.getvalue())
    Companion(str(companion), "m.meta", str(manifest), "m").verify()  # as written: fine
    companion.write_bytes(stream.getvalue() + stream.getvalue().splitlines(True)[1])
    with pytest.raises(MetaError, match="a record after the last line"):
        Companion(str(companion), "m.meta", str(manifest), "m").verify()
