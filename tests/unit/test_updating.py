"""The pieces an earlier manifest is cut into for --create --dir --update
(``dmp_cli.runs.updating``): together they are the whole of it, each piece's manifest
lines those of its records' entries, their first paths in the walk's order."""

from __future__ import annotations

import hashlib
import itertools
import random
from pathlib import Path

import pytest

from dmp_cli.earlier_piece import Unusable
from dmp_cli.reuse import Earlier
from dmp_cli.runs import updating
from tests.servers import run_dmp


def _tree(root: Path, count: int) -> None:
    for i in range(count):
        sub = root / "t" / f"d{i % 7}" / ("e" if i % 3 else "")
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:03d}").write_bytes(b"x" * i)
    (root / "t" / "link").symlink_to("d0")


@pytest.mark.parametrize("piece_bytes", [1, 300, 5000, 1 << 19])
def test_the_pieces_make_up_the_earlier_manifest(
    tmp_path: Path, piece_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path, 60)
    made = run_dmp("manifest", "--create", "--dir", "t", "-r", "-m", "old.sha256", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    monkeypatch.setattr(updating, "PIECE_BYTES", piece_bytes)
    earlier = Earlier(str(tmp_path / "old.sha256"))
    totals = updating.Totals()
    pieces = list(updating._cut(earlier, totals))
    meta = (tmp_path / "old.sha256.meta").read_bytes()
    text = (tmp_path / "old.sha256").read_bytes()
    records = meta.split(b"\n")[1:-2]
    manifest = text.split(b"\n")[:-1]
    # Each piece's ranges of whole lines, one after another, make up both files.
    assert pieces[0].span[0] == meta.index(b"\n") + 1 and pieces[0].mspan[0] == 0
    assert b"".join(meta[slice(*p.span)] for p in pieces) == b"\n".join(records) + b"\n"
    assert b"".join(text[slice(*p.mspan)] for p in pieces) == text
    assert (totals.old_records, totals.old_entries) == (len(records), len(manifest))
    line, mline = 2, 1
    for piece in pieces:
        assert (piece.first, piece.mfirst) == (line, mline)
        lines, mlines = meta[slice(*piece.span)], text[slice(*piece.mspan)]
        entries = lines.count(b'"entry":true')
        assert mlines.count(b"\n") == entries
        line, mline = line + lines.count(b"\n"), mline + entries
    assert pieces[0].lo is None and pieces[-1].hi is None
    for before, after in itertools.pairwise(pieces):
        assert before.hi == after.lo and before.hi is not None
        assert before.span[1] == after.span[0] and before.mspan[1] == after.mspan[0]
    bounds = [p.hi for p in pieces[:-1] if p.hi is not None]  # none is, as above
    assert bounds == sorted(bounds)
    if piece_bytes < 5000:
        assert len(pieces) > 5


def test_a_manifest_longer_than_its_companion_is_unusable(tmp_path: Path) -> None:
    _tree(tmp_path, 5)
    made = run_dmp("manifest", "--create", "--dir", "t", "-r", "-m", "old.sha256", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    earlier = Earlier(str(tmp_path / "old.sha256"))
    with open(earlier.manifest, "ab") as extra:  # after Earlier has checked its sha256
        extra.write(b"ab" * 32 + b'  "t/extra"\n')
    with pytest.raises(Unusable):
        list(updating._cut(earlier, updating.Totals()))


def test_the_nth_newline() -> None:
    rng = random.Random(7)
    for _ in range(200):
        lines = [b"x" * rng.randrange(0, 90) for _ in range(rng.randrange(1, 60))]
        data = b"\n".join(lines) + b"\n"
        total = data.count(b"\n")
        ends = [i for i, c in enumerate(data) if c == 10]
        for count in range(1, total + 1):
            assert updating._newline(data, count, total) == ends[count - 1]
        start = ends[rng.randrange(total)] + 1  # from a line on
        after = [end for end in ends if end >= start]
        for count in range(1, len(after) + 1):
            assert updating._newline(data, count, len(after), start) == after[count - 1]


def test_a_manifest_whose_last_line_has_no_newline(tmp_path: Path) -> None:
    """Its last piece's lines end one byte past the file's end (read as if the newline
    were there)."""
    _tree(tmp_path, 5)
    made = run_dmp("manifest", "--create", "--dir", "t", "-r", "-m", "old.sha256", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    manifest = tmp_path / "old.sha256"
    text = manifest.read_bytes()
    manifest.write_bytes(text[:-1])
    meta = tmp_path / "old.sha256.meta"
    old = hashlib.sha256(text).hexdigest()
    meta.write_bytes(
        meta.read_bytes().replace(old.encode(), hashlib.sha256(text[:-1]).hexdigest().encode())
    )
    pieces = list(updating._cut(Earlier(str(manifest)), updating.Totals()))
    assert pieces[-1].mspan[1] == len(text)


def test_a_piece_ends_before_a_directory_where_it_can() -> None:
    """So that a directory's files are walked by one piece, not two."""
    file = b'{"path":"t/d%d/f%d","type":"file","entry":true}\n'
    folder = b'{"path":"t/d%d","type":"dir","mode":"0755"}\n'
    first = folder % 0 + b"".join(file % (0, i) for i in range(6))
    block = first + folder % 1 + file % (1, 0) + file % (1, 1)[:10]
    assert updating._piece_end(block, True) == len(first) - 1
    assert updating._piece_end(block, False) == block.rfind(b"\n")
    late = file % (0, 0) + folder % 1 + b"".join(file % (1, i) for i in range(6))
    assert updating._piece_end(late, True) == late.rfind(b"\n")  # in the first half
    files = b"".join(file % (0, i) for i in range(3))
    assert updating._piece_end(files, True) == len(files) - 1  # no directory
