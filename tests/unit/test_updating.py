"""The pieces an earlier manifest is cut into for --create --dir --update
(``dmp_cli.runs.updating``): together they are the whole of it, each piece's manifest
lines those of its records' entries, their first paths in the walk's order."""

from __future__ import annotations

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
    records = (tmp_path / "old.sha256.meta").read_bytes().split(b"\n")[1:-2]
    manifest = (tmp_path / "old.sha256").read_bytes().split(b"\n")[:-1]
    assert b"\n".join(p[2] for p in pieces if p[2]) == b"\n".join(records)
    assert b"\n".join(p[4] for p in pieces if p[4]) == b"\n".join(manifest)
    assert (totals.old_records, totals.old_entries) == (len(records), len(manifest))
    line, mline = 2, 1
    for _lo, _hi, lines, first, mlines, mfirst in pieces:
        assert (first, mfirst) == (line, mline)
        count = lines.count(b"\n") + 1 if lines else 0
        entries = lines.count(b'"entry":true')
        assert (mlines.count(b"\n") + 1 if mlines else 0) == entries
        line, mline = line + count, mline + entries
    assert pieces[0][0] is None and pieces[-1][1] is None
    for before, after in itertools.pairwise(pieces):
        assert before[1] == after[0] and before[1] is not None
    bounds = [p[1] for p in pieces[:-1]]
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
