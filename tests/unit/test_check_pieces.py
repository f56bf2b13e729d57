"""--check of a manifest file a piece at a time, where the hashing processes read the lines
themselves and send back the lines sha256sum prints for files that all matched, hears
what the check a row at a time hears: the same lines in the same order, the same counts
and the same verdict, whatever the lines, the pieces' size and the number of processes."""

from __future__ import annotations

import hashlib
import io
import os
import random
import sys
from pathlib import Path

import pytest

from dmp_cli import digest, runs
from dmp_cli.checking import common_lines
from dmp_cli.errors import ManifestError
from dmp_cli.executor import LocalExecutor
from dmp_cli.manifest import checked_name
from dmp_cli.rows import Row
from dmp_cli.runs import verification

STDIN = b"what stdin holds\n"
BIG = b"b" * (digest.CHUNK + 5)  # more than one read: the check operation's way


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).hexdigest().encode()


def _tree(root: Path) -> dict[bytes, bytes]:
    """Files under ``root``, by name, with what they hold (and a directory, ``dir``)."""
    files = {
        b"a": b"alpha",
        b"b c": b"bravo",
        "caf\u00e9".encode(): b"cafe",
        b"\xff raw": b"not utf-8",
        b"cr\rin": b"carriage",
        b"new\nline": b"newline",
        b"changed": b"now",
        b"big": BIG,
        b"empty": b"",
    }
    for name, data in files.items():
        (root / os.fsdecode(name)).write_bytes(data)
    (root / "dir").mkdir()
    return files


def _lines(files: dict[bytes, bytes]) -> list[bytes]:
    """Every kind of line a manifest may hold, for files that match, differ, are gone,
    cannot be read, and for stdin."""
    ok = [
        sha(data) + b'  "' + name + b'"'
        for name, data in files.items()
        if name not in (b"changed", b"new\nline")
    ]
    return [
        *ok,
        *ok,  # the common line, the most of all
        sha(b"before") + b'  "changed"',
        sha(b"x") + b'  "gone"',
        sha(b"x") + b'  "dir"',
        sha(b"newline") + b'  "new\\nline"',
        sha(b"alpha").upper() + b'  "a"',
        sha(b"alpha") + b"  a",
        sha(b"alpha") + b" *a",
        sha(b"alpha") + b" a",  # reversed BSD: refused once a standard line was read
        b"\\" + sha(b"newline") + b"  new\\nline",
        b"SHA256 (a) = " + sha(b"alpha"),
        sha(b"alpha") + b'  "a"\r',
        sha(b"alpha") + b'  "a"b"',
        sha(b"alpha") + b'  ""',
        sha(b"alpha") + b'  "\\x61"',
        sha(STDIN) + b'  "-"',
        sha(STDIN) + b"  -",
        b"# a comment",
        b"",
        b"\r",
        b"junk",
    ]


def _transcript(
    manifest: str, jobs: int, by_pieces: bool, stdin: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[bytes], runs.CheckReport, int]:
    """What a check heard, as lines: sha256sum's for each file, the line number of each
    improperly formatted line; with how many times it heard of files many at a time."""
    heard: list[bytes] = []
    matched_runs = 0

    def on_row(row: Row) -> None:
        if row["status"] == "misformatted":
            heard.append(b"line %d improperly formatted" % row["line"])
            return
        said = {"ok": b"OK", "failed": b"FAILED"}.get(row["status"], b"FAILED open or read")
        heard.append(checked_name(row["path"]) + b": " + said)

    def on_matched(lines: bytes) -> None:
        nonlocal matched_runs
        matched_runs += 1
        assert lines.endswith(b"\n")
        heard.extend(lines[:-1].split(b"\n"))

    with stdin.open("rb") as stream:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stream))
        with LocalExecutor(jobs) as executor:
            report = runs.check(
                manifest,
                executor,
                listener=runs.Listener(on_row=on_row),
                on_matched=on_matched if by_pieces else None,
            )
        monkeypatch.setattr(sys, "stdin", None)
    return heard, report, matched_runs


@pytest.mark.parametrize("seed", range(24))
def test_pieces_hear_what_rows_hear(
    seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    monkeypatch.chdir(tmp_path)
    files = _tree(tmp_path)
    kinds = _lines(files)
    lines = [rng.choice(kinds) for _ in range(rng.randrange(0, 80))]
    if rng.random() < 0.5:
        lines = [kinds[0]] * rng.randrange(1, 40) + lines  # pieces of common lines first
    data = b"\n".join(lines) + rng.choice([b"", b"\n", b"\n\n"])
    (tmp_path / "m").write_bytes(data)
    (tmp_path / "stdin").write_bytes(STDIN)
    monkeypatch.setattr(verification, "PIECE_BYTES", rng.choice([1, 80, 300, 1 << 15]))
    manifest = "m"
    if rng.random() < 0.25:  # the manifest is stdin: an entry '-' is then misformatted
        manifest, stdin = "-", tmp_path / "m"
    else:
        stdin = tmp_path / "stdin"
    jobs = rng.choice([1, 2])
    rows, by_rows, _ = _transcript(manifest, jobs, False, stdin, monkeypatch)
    heard, by_pieces, _ = _transcript(manifest, jobs, True, stdin, monkeypatch)
    assert heard == rows
    assert by_pieces == by_rows


def test_files_that_all_match_are_heard_many_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    names = [f"f{i}" for i in range(600)]
    for name in names:
        (tmp_path / name).write_bytes(name.encode())
    lines = [sha(name.encode()) + b'  "' + name.encode() + b'"' for name in names]
    (tmp_path / "m").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "stdin").write_bytes(b"")
    monkeypatch.setattr(verification, "PIECE_BYTES", 4096)
    for jobs in (1, 2):
        heard, report, matched_runs = _transcript("m", jobs, True, tmp_path / "stdin", monkeypatch)
        assert heard == [name.encode() + b": OK" for name in names]
        assert 1 < matched_runs < len(names)  # a piece at a time, not a row each
        counts = report.counts
        assert (counts.matched, counts.properly_formatted, counts.bytes) == (
            600,
            600,
            sum(len(name) for name in names),
        )
        assert report.status == 0


def test_a_read_error_halfway_is_the_manifests_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mem").symlink_to("/proc/self/mem")
    monkeypatch.chdir(tmp_path)
    with LocalExecutor(2) as executor, pytest.raises(ManifestError) as raised:
        runs.check("mem", executor, on_matched=lambda lines: None)
    assert str(raised.value) == "mem: Input/output error"


@pytest.mark.parametrize(
    ("block", "common"),
    [
        (b"", False),
        (sha(b"a") + b'  "a"', True),
        (sha(b"a") + b'  "a"\n' + sha(b"b") + b'  "b c"', True),
        (sha(b"a") + b'  "a"\n', False),  # then a blank line
        (sha(b"a") + b'  "a"\n# comment', False),
        (sha(b"a") + b'  "a\\nb"', False),  # an escape
        (sha(b"a") + b'  "a"b"', False),  # a quote inside
        (sha(b"a") + b'  ""', False),  # no name
        (sha(b"a") + b'  "a\x00"', False),
        (sha(b"a") + b'  "a"\r', False),
        (sha(b"a") + b"  a", False),
        (sha(b"a") + b' "a"', False),
        (b"SHA256 (a) = " + sha(b"a"), False),
    ],
)
def test_common_lines_are_only_dmps_plain_lines(block: bytes, common: bool) -> None:
    lines = common_lines(block)
    assert (lines is not None) is common
    if lines is not None:
        assert lines == block.split(b"\n")
