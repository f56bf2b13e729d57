"""The quick paths of --check give what the general ones give: manifests read a block at a
time, and batches of plain entries sent to the hashing processes in compact form."""

from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path

import pytest

from dmp_cli import digest, manifest
from dmp_cli.checking import check_entries
from dmp_cli.executor import LocalExecutor
from dmp_cli.manifest import LineParser, parsed
from dmp_cli.ops import run_batch
from dmp_cli.options import Work
from dmp_cli.rows import Item

HEX = hashlib.sha256(b"x").hexdigest()


def line_by_line(data: bytes) -> list[tuple[int, str | None, str]]:
    """The manifest read a line at a time, as `sha256sum --check` reads it."""
    parser = LineParser()
    found: list[tuple[int, str | None, str]] = []
    for number, raw in enumerate(io.BytesIO(data), 1):
        if raw[:1] == b"#":
            continue
        raw = raw.removesuffix(b"\n").removesuffix(b"\r")
        if raw:
            entry = parser.parse(raw)
            found.append((number, *((entry.digest, entry.path) if entry else (None, ""))))
    return found


LINES = [
    HEX.encode() + b'  "plain name"',
    HEX.encode() + b'  "caf\xc3\xa9 \xff"',
    HEX.encode() + b'  "with\\"escape"',
    HEX.encode() + b'  "a\\x01b"',
    HEX.encode() + b'  "cr inside\rx"',
    HEX.encode() + b'  "ends with cr"\r',
    HEX.upper().encode() + b'  "upper"',
    HEX.encode() + b" *binary",
    HEX.encode() + b"  plain",
    HEX.encode() + b" reversed",
    b"\\" + HEX.encode() + b"  back\\\\slash",
    b"SHA256 (tagged) = " + HEX.encode(),
    b"# comment",
    b"",
    b"\r",
    b"junk",
    HEX.encode() + b'  "nul\x00"',
    HEX.encode() + b'  ""',
]


@pytest.mark.parametrize("seed", range(40))
def test_blocks_read_as_lines_do(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    monkeypatch.setattr(manifest, "_BLOCK", rng.choice([1, 7, 64, 300, 1 << 20]))
    lines = [rng.choice(LINES) for _ in range(rng.randrange(0, 60))]
    if rng.random() < 0.3:  # the standard form first: the reversed one is then refused
        lines.insert(0, LINES[0])
    data = b"\n".join(lines) + rng.choice([b"", b"\n", b"\n\n"])
    assert list(parsed(io.BytesIO(data))) == line_by_line(data)


def test_a_line_longer_than_a_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifest, "_BLOCK", 16)
    data = HEX.encode() + b'  "' + b"n" * 100 + b'"\n' + HEX.encode() + b"  last"
    assert list(parsed(io.BytesIO(data))) == [(1, HEX, "n" * 100), (2, HEX, "last")]


def _items(tmp_path: Path) -> list[Item]:
    (tmp_path / "ok").write_bytes(b"ok")
    (tmp_path / "changed").write_bytes(b"changed")
    (tmp_path / "dir").mkdir()
    big = b"b" * (digest.CHUNK + 1)  # more than one read: hashed the general way
    (tmp_path / "big").write_bytes(big)
    (tmp_path / "chunk").write_bytes(big[: digest.CHUNK])
    files = {
        "ok": hashlib.sha256(b"ok").hexdigest(),
        "changed": hashlib.sha256(b"before").hexdigest(),
        "gone": HEX,
        "dir": HEX,
        "big": hashlib.sha256(big).hexdigest(),
        "chunk": hashlib.sha256(big[: digest.CHUNK]).hexdigest(),
        "": HEX,
    }
    return [
        {"line": n, "path": str(tmp_path / name) if name else "", "digest": sha}
        for n, (name, sha) in enumerate(files.items(), 3)
    ]


def test_compact_batches_give_the_check_operations_rows(tmp_path: Path) -> None:
    items = _items(tmp_path)
    expected = run_batch(Work("check"), [dict(item) for item in items])  # type: ignore[misc]
    assert [row["status"] for row in expected] == [
        "ok",
        "failed",
        "missing",
        "unreadable",
        "ok",
        "ok",
        "missing",
    ]
    for jobs in (1, 2):
        with LocalExecutor(jobs) as executor:
            rows = list(executor.map(Work("check"), items))  # compact: all plain entries
            assert rows == expected
            assert [list(row) for row in rows] == [list(row) for row in expected]  # key order
            mixed = list(executor.map(Work("check"), [*items, {"line": 99, "bad": True}]))
            assert mixed == [*expected, {"status": "misformatted", "bytes": 0, "line": 99}]


def test_check_entries_sends_back_sizes_for_matches_and_rows_for_the_rest(
    tmp_path: Path,
) -> None:
    items = _items(tmp_path)
    results = check_entries(
        Work("check"),
        [item["line"] for item in items],
        [item["path"] for item in items],
        [item["digest"] for item in items],
    )
    assert results[0] == 2  # matched: its size
    assert [type(result).__name__ for result in results] == [
        "int",
        "dict",
        "dict",
        "dict",
        "dict",  # the big file, through the check operation
        "dict",  # as is one of a whole chunk exactly: it may be bigger
        "dict",
    ]
