"""dmp_cli.reuse: an earlier manifest's entries found beside a walk, as a stream while both
go in a walk's order, else through the on-disk index; what ``unchanged`` compares."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from dmp_cli.manifest import dmp_line
from dmp_cli.recorder import Recorder, stat_of
from dmp_cli.reuse import Earlier, EarlierError, unchanged


def _earlier(root: Path, names: list[str], links: tuple[str, ...] = ()) -> str:
    """A manifest of ``names`` (files made under ``root``, in that order) and its
    companion, as --create writes them; its path."""
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name in links:
            (root / "target").write_bytes(b"t")
            path.symlink_to(root / "target")
        else:
            path.write_bytes(name.encode())
    manifest = root / "old.sha256"
    with open(manifest, "wb") as out, open(f"{manifest}.meta", "wb") as meta:
        recorder = Recorder(meta)
        for name in names:
            path = str(root / name)
            data = dmp_line(hashlib.sha256(name.encode()).hexdigest(), path)
            out.write(data)
            recorder.manifest_bytes(data)
            recorder.file()
            recorder.row(path, stat_of(path))
        recorder.finish()
    return str(manifest)


def test_in_order_it_is_a_stream(tmp_path: Path) -> None:
    names = ["a", "b/c", "b/d", "b.e", "f"]
    reuse = Earlier(_earlier(tmp_path, names)).reuse()
    try:
        for name in ["0", "a", "b/c", "b/d", "b/x", "b.e", "f", "g"]:
            old = reuse.find(str(tmp_path / name))
            if name in names:
                assert old is not None and old[0] == hashlib.sha256(name.encode()).hexdigest()
                assert unchanged(old, stat_of(str(tmp_path / name)))
            else:
                assert old is None
        assert reuse._index is None
    finally:
        reuse.close()


@pytest.mark.parametrize("which", ["walk", "manifest"], ids=["walk-unordered", "old-unordered"])
def test_out_of_order_it_is_an_index_removed_after(
    tmp_path: Path, which: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    names = ["a", "b", "c"] if which == "walk" else ["c", "a", "b"]
    reuse = Earlier(_earlier(tmp_path / "t", names)).reuse()
    try:
        found = [reuse.find(str(tmp_path / "t" / name)) for name in ["c", "b", "a", "zz", "b"]]
        assert [old and old[0] for old in found] == [
            *(hashlib.sha256(name.encode()).hexdigest() for name in ["c", "b", "a"]),
            None,
            hashlib.sha256(b"b").hexdigest(),
        ]
        assert reuse._index is not None
        assert os.listdir(temp)
    finally:
        reuse.close()
    assert not os.listdir(temp)


def test_a_link_to_a_file_is_never_reused(tmp_path: Path) -> None:
    reuse = Earlier(_earlier(tmp_path, ["a", "l"], links=("l",))).reuse()
    try:
        assert reuse.find(str(tmp_path / "a")) is not None
        assert reuse.find(str(tmp_path / "l")) is None
    finally:
        reuse.close()


def test_unchanged_compares_what_the_companion_recorded(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    fields = stat_of(str(path))
    v2 = ["d" * 64, fields[3], fields[2], fields[6], fields[7], fields[8]]
    assert unchanged(v2, fields)
    for where in range(1, 6):
        other = list(v2)
        other[where] += 1
        assert not unchanged(other, fields)
    v1 = v2[:3]
    assert unchanged(v1, [*fields[:6], fields[6] + 1, *fields[7:]])  # ctime not recorded
    assert not unchanged(v2, ["link", *fields[1:]])


def test_a_record_of_another_path_stops_the_stream(tmp_path: Path) -> None:
    manifest = _earlier(tmp_path, ["a", "b"])
    meta = Path(f"{manifest}.meta")
    meta.write_bytes(meta.read_bytes().replace(b'/b"', b'/x"'))
    reuse = Earlier(manifest).reuse()
    try:
        with pytest.raises(EarlierError, match="its path is not that of manifest line 2"):
            reuse.find(str(tmp_path / "b"))
    finally:
        reuse.close()


def test_a_trailer_of_another_manifest_is_refused_at_once(tmp_path: Path) -> None:
    manifest = _earlier(tmp_path, ["a"])
    meta = Path(f"{manifest}.meta")
    lines = meta.read_bytes().splitlines()
    trailer = json.loads(lines[-1])
    trailer["manifest_sha256"] = "0" * 64
    meta.write_bytes(b"\n".join([*lines[:-1], json.dumps(trailer).encode()]) + b"\n")
    with pytest.raises(EarlierError, match="its last line: it was made with another manifest"):
        Earlier(manifest)
