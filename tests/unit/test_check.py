"""Check counts and their exit-status rule, and the rows a check yields."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dmp_cli import runs
from dmp_cli.executor import LocalExecutor
from dmp_cli.rows import Row
from dmp_cli.runs.check_counts import CheckCounts

OK = {"status": "ok", "bytes": 5}
FAILED = {"status": "failed", "bytes": 7}
MISSING = {"status": "missing", "bytes": 0}
UNREADABLE = {"status": "unreadable", "bytes": 0}
ERROR = {"status": "error", "bytes": 0}
BAD = {"status": "misformatted", "bytes": 0}


def counts(*rows: dict[str, object], ignore_missing: bool = False) -> CheckCounts:
    result = CheckCounts()
    for row in rows:
        result.add(row, ignore_missing)
    return result


def test_add_classifies_rows() -> None:
    result = CheckCounts()
    assert [result.add(r) for r in (OK, FAILED, MISSING, UNREADABLE, ERROR, BAD)] == [
        "ok",
        "failed",
        "unreadable",
        "unreadable",
        "unreadable",
        "misformatted",
    ]
    assert result == CheckCounts(
        properly_formatted=5,
        misformatted=1,
        unreadable=3,
        mismatched=1,
        matched=1,
        ignored=0,
        bytes=12,
    )


def test_add_ignores_only_missing_files_with_ignore_missing() -> None:
    result = CheckCounts()
    assert result.add(MISSING, ignore_missing=True) == "ignored"
    assert result.add(UNREADABLE, ignore_missing=True) == "unreadable"
    assert (result.ignored, result.unreadable, result.properly_formatted) == (1, 1, 2)


@pytest.mark.parametrize(
    ("rows", "strict", "ignore_missing", "ok"),
    [
        ((), False, False, False),
        ((BAD,), False, False, False),
        ((OK,), False, False, True),
        ((OK, OK, BAD), False, False, True),
        ((OK, BAD), True, False, False),
        ((OK,), True, False, True),
        ((OK, FAILED), False, False, False),
        ((OK, MISSING), False, False, False),
        ((OK, UNREADABLE), False, False, False),
        ((OK, MISSING), False, True, True),
        ((MISSING, MISSING), False, True, False),
        ((MISSING, FAILED), False, True, False),
        ((MISSING, UNREADABLE), False, True, False),
        ((MISSING, OK, BAD), True, True, False),
    ],
    ids=[
        "nothing",
        "only-misformatted",
        "one-ok",
        "misformatted-tolerated",
        "misformatted-strict",
        "strict-clean",
        "mismatch",
        "missing",
        "unreadable",
        "ignore-missing",
        "ignore-missing-all-missing",
        "ignore-missing-only-mismatch",
        "ignore-missing-unreadable",
        "strict-and-ignore-missing",
    ],
)
def test_ok_follows_sha256sum_exit_status(
    rows: tuple[dict[str, object], ...], strict: bool, ignore_missing: bool, ok: bool
) -> None:
    result = counts(*rows, ignore_missing=ignore_missing)
    assert result.ok(strict=strict, ignore_missing=ignore_missing) is ok


def test_check_manifest_yields_one_row_per_line_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"changed")
    (tmp_path / "d").mkdir()
    digest_a = hashlib.sha256(b"a").hexdigest()
    digest_b = hashlib.sha256(b"b").hexdigest()
    (tmp_path / "m").write_bytes(
        f"# comment\n{digest_a}  a\njunk\n\n{digest_b}  b\n"
        f"{digest_a}  gone\n{digest_a}  d\n".encode()
    )
    rows: list[Row] = []
    with LocalExecutor(2) as executor:
        runs.check("m", executor, listener=runs.Listener(on_row=rows.append))
    assert [(row["line"], row["status"]) for row in rows] == [
        (2, "ok"),
        (3, "misformatted"),
        (5, "failed"),
        (6, "missing"),
        (7, "unreadable"),
    ]
    assert rows[2]["expected"] == digest_b
    assert rows[2]["digest"] == hashlib.sha256(b"changed").hexdigest()
    assert rows[4]["error"] == "Is a directory"
