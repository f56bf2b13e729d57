"""The one table of which status fails which command, and the one constructor of a
failed file's row."""

from __future__ import annotations

import errno

import pytest

from dmp_cli.errors import FatalStoreError, IntegrityError, ObjectMissing, PathRefused, StoreError
from dmp_cli.rows import Status, base_row, error_row
from dmp_cli.rules import RULES, Command, Reason, failing, judge


@pytest.mark.parametrize("command", list(Command), ids=str)
def test_every_command_fails_on_broken_files_and_never_on_success(command: Command) -> None:
    for status in (Status.UNREADABLE, Status.ERROR, Status.CANCELLED, Status.LOST):
        assert failing(command, status)
    for status in (Status.OK, Status.PRESENT, Status.UPLOADED, Status.SKIPPED, Status.FETCHED):
        assert not failing(command, status)


def test_asking_the_vault_a_missing_object_is_an_answer() -> None:
    assert not failing(Command.VAULT, Status.MISSING)
    assert all(failing(c, Status.MISSING) for c in (Command.CHECK, Command.ARCHIVE, Command.FETCH))
    assert failing(Command.CHECK, Status.MISSING) and not failing(
        Command.CHECK, Status.MISSING, ignore_missing=True
    )


@pytest.mark.parametrize(
    ("command", "counts", "strict", "ignore", "status", "reason"),
    [
        (Command.CHECK, {"ok": 2, "misformatted": 1}, False, False, 0, None),
        (Command.CHECK, {"ok": 2, "misformatted": 1}, True, False, 1, Reason.MISFORMATTED),
        (Command.CHECK, {"misformatted": 3}, False, False, 1, Reason.NO_LINES),
        (Command.CHECK, {"missing": 2}, False, True, 1, Reason.NOTHING_VERIFIED),
        (Command.CHECK, {"ok": 1, "missing": 2}, False, True, 0, None),
        (Command.VAULT, {"present": 1, "missing": 5}, False, False, 0, None),
        (Command.ARCHIVE, {"uploaded": 1, "misformatted": 1}, False, False, 1, Reason.MISFORMATTED),
        (Command.FETCH, {"fetched": 1, "refused": 1}, False, False, 1, None),
        (Command.CREATE, {"ok": 3}, False, False, 0, None),
    ],
    ids=[
        "lenient",
        "strict",
        "no-lines",
        "none-verified",
        "some-verified",
        "vault-missing",
        "archive-skipped-lines",
        "fetch-refused",
        "create",
    ],
)
def test_judge(
    command: Command,
    counts: dict[str, int],
    strict: bool,
    ignore: bool,
    status: int,
    reason: Reason | None,
) -> None:
    verdict = judge(command, counts, strict=strict, ignore_missing=ignore)
    assert (verdict.status, verdict.reason) == (status, reason)


def test_the_table_names_only_known_statuses() -> None:
    assert all(set(rule.fails) <= set(Status) for rule in RULES.values())


@pytest.mark.parametrize(
    ("exc", "status", "error", "flags"),
    [
        (
            FileNotFoundError(errno.ENOENT, "No such file or directory"),
            "missing",
            "No such file or directory",
            {},
        ),
        (PermissionError(errno.EACCES, "Permission denied"), "unreadable", "Permission denied", {}),
        (
            OSError(errno.ESTALE, "Stale file handle"),
            "unreadable",
            "Stale file handle",
            {"transient": True},
        ),
        (
            ConnectionResetError(errno.ECONNRESET, "reset"),
            "unreadable",
            "reset",
            {"transient": True},
        ),
        (ObjectMissing("s3://b/k: not in the vault"), "missing", "not in the vault", {}),
        (PathRefused("absolute path refused"), "refused", "absolute path refused", {}),
        (IntegrityError("changed"), "failed", "changed", {}),
        (
            StoreError("s3://b/k: throttled", transient=True),
            "failed",
            "s3://b/k: throttled",
            {"transient": True},
        ),
        (
            FatalStoreError("s3://b: no such bucket"),
            "failed",
            "s3://b: no such bucket",
            {"fatal": True},
        ),
        (KeyError("digest"), "error", "s3://b/k: KeyError: 'digest'", {}),
    ],
    ids=[
        "enoent",
        "eacces",
        "estale",
        "reset",
        "no-object",
        "refused",
        "changed",
        "throttled",
        "fatal",
        "unforeseen",
    ],
)
def test_error_rows(exc: BaseException, status: str, error: str, flags: dict[str, bool]) -> None:
    base = base_row({"path": "p", "digest": "d" * 64, "line": 7}, digest="d" * 64)
    row = error_row(base, exc, where="s3://b/k")
    assert (row["status"], row["error"], row["path"], row["line"], row["bytes"]) == (
        status,
        error,
        "p",
        7,
        0,
    )
    assert row["digest"] == "d" * 64  # what a report reads is always there
    assert {k: row.get(k) for k in flags} == flags
    assert not ({"transient", "fatal"} - set(flags)) & set(row)
