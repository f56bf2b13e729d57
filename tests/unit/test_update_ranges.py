"""--create --dir --update in pieces hands back what it keeps of the earlier files as byte
ranges of them (``dmp_cli.earlier_piece.Part``), copied into the new files: an unchanged
piece is one range of each file, and the output is byte for byte a full --create's
however it is copied."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from dmp_cli.earlier_piece import Piece
from dmp_cli.reuse import Earlier
from dmp_cli.rewalk import rewalk_piece
from dmp_cli.runs import creation, updating
from tests.servers import run_dmp


def _general(*args: object) -> None:
    """In place of the general way, where an --update must go in pieces."""
    raise AssertionError("went the general way")


def _tree(root: Path) -> None:
    for d in range(4):
        sub = root / "t" / f"d{d}"
        sub.mkdir(parents=True)
        for i in range(30):
            (sub / f"f{i:02d}").write_bytes(b"x" * (d * 30 + i))
    (root / "t" / "d1" / "empty").mkdir()
    (root / "t" / "d2" / "to-d0").symlink_to("../d0")


def _dmp(root: Path, *args: str) -> None:
    made = run_dmp("manifest", "--create", "--dir", "t", "-r", *args, cwd=root)
    assert made.returncode == 0, made.stderr


def _same(root: Path, name: str, other: str) -> None:
    for suffix in ("", ".meta"):
        assert (root / f"{name}{suffix}").read_bytes() == (root / f"{other}{suffix}").read_bytes()


@pytest.mark.parametrize("piece_bytes", [300, 1 << 19])
def test_an_unchanged_piece_is_one_range_of_each_file(
    tmp_path: Path, piece_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path)
    _dmp(tmp_path, "-m", "old.sha256")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(updating, "PIECE_BYTES", piece_bytes)
    earlier = Earlier("old.sha256")
    cuts = list(updating._cut(earlier, updating.Totals()))
    for cut in cuts:
        piece = Piece(
            "t", True, cut.lo, cut.hi, cut.span, cut.mspan, cut.first, cut.mfirst, earlier.companion
        )
        result = rewalk_piece(piece)
        assert result.companion == [cut.span]
        assert result.manifest == ([cut.mspan] if cut.mspan[0] != cut.mspan[1] else [])
        assert result.reused == result.files == result.entries
    if piece_bytes < 1000:
        assert len(cuts) > 5


@pytest.mark.parametrize("small", [False, True], ids=["whole", "small-pieces"])
def test_copied_without_copy_file_range(
    tmp_path: Path, small: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the kernel cannot copy between the files, the bytes are read and written."""
    if small:
        monkeypatch.setattr(updating, "PIECE_BYTES", 700)
        monkeypatch.setattr(updating, "PIECE_FILES", 3)
    _tree(tmp_path)
    _dmp(tmp_path, "-m", "old.sha256")
    (tmp_path / "t" / "d1" / "f03").write_bytes(b"changed")
    (tmp_path / "t" / "d3" / "new").write_bytes(b"new")
    calls = []

    def refused(*args: object) -> int:
        calls.append(args)
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(os, "copy_file_range", refused)
    _dmp(tmp_path, "-m", "full.sha256")
    with monkeypatch.context() as inside:
        inside.setattr(creation, "_hash_all", _general)
        _dmp(tmp_path, "-m", "new.sha256", "--update", "old.sha256")
    _same(tmp_path, "new.sha256", "full.sha256")
    assert calls


def test_a_manifest_whose_last_line_has_no_newline(tmp_path: Path) -> None:
    """Its last line is kept, with the newline a --create writes."""
    _tree(tmp_path)
    _dmp(tmp_path, "-m", "old.sha256")
    manifest, meta = tmp_path / "old.sha256", tmp_path / "old.sha256.meta"
    text = manifest.read_bytes()
    manifest.write_bytes(text[:-1])
    old, new = (hashlib.sha256(data).hexdigest().encode() for data in (text, text[:-1]))
    meta.write_bytes(meta.read_bytes().replace(old, new))
    _dmp(tmp_path, "-m", "full.sha256")
    with pytest.MonkeyPatch.context() as inside:
        inside.setattr(creation, "_hash_all", _general)
        _dmp(tmp_path, "-m", "new.sha256", "--update", "old.sha256")
    _same(tmp_path, "new.sha256", "full.sha256")
