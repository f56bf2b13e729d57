"""Which outcome fails which command: one table, for attached runs, the API and jobs alike.

A run's verdict is its exit status, judged from its counts by status (plus the
improperly formatted lines it met) and the options that change the rules (--strict,
--ignore-missing), so a job on the fleet is judged by the counts it keeps in Redis
exactly as the same command run in a terminal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from dmp_cli.rows import Status


class Command(StrEnum):
    CREATE = "create"
    CHECK = "check"
    VAULT = "vault"
    ARCHIVE = "archive"
    FETCH = "fetch"

    @property
    def operation(self) -> str:
        """The per-file operation the command runs over its items."""
        return _OPERATIONS[self]

    @classmethod
    def of_operation(cls, op: str) -> Command:
        if op == "vault-list":  # listing the vault's prefixes, for --vault and --archive
            return cls.VAULT
        if op == "pack":  # small files stored as a pack, for --archive into a packing vault
            return cls.ARCHIVE
        return next(command for command, name in _OPERATIONS.items() if name == op)


_OPERATIONS = {
    Command.CREATE: "hash",
    Command.CHECK: "check",
    Command.VAULT: "head",
    Command.ARCHIVE: "upload",
    Command.FETCH: "download",
}

# REFUSED: a path dmp will not write to, or (on a fleet) one outside the roots its
# workers allow: for every command, a file not done.
_BROKEN = frozenset(
    {Status.UNREADABLE, Status.ERROR, Status.CANCELLED, Status.LOST, Status.REFUSED}
)


@dataclass(frozen=True)
class Rule:
    fails: frozenset[str]  # a file with one of these statuses fails the command
    # An improperly formatted line fails the command even without --strict (its entry
    # was not archived or fetched); else only with --strict, as in sha256sum.
    misformatted_fails: bool


RULES: dict[Command, Rule] = {
    Command.CREATE: Rule(_BROKEN | {Status.MISSING}, misformatted_fails=False),
    Command.CHECK: Rule(_BROKEN | {Status.FAILED, Status.MISSING}, misformatted_fails=False),
    # Asking the vault, an object that is not there is an answer (a warning), not a failure.
    Command.VAULT: Rule(_BROKEN | {Status.FAILED}, misformatted_fails=False),
    Command.ARCHIVE: Rule(_BROKEN | {Status.FAILED, Status.MISSING}, misformatted_fails=True),
    Command.FETCH: Rule(_BROKEN | {Status.FAILED, Status.MISSING}, misformatted_fails=True),
}


class Reason(StrEnum):
    """Why a run failed, apart from its files (each caller words it for its readers)."""

    NO_LINES = "no properly formatted checksum lines"
    MISFORMATTED = "improperly formatted lines"
    NOTHING_VERIFIED = "no file was verified (--ignore-missing)"


@dataclass(frozen=True)
class Verdict:
    status: int  # the exit status: 0 success, 1 a failure
    failed: int  # files whose status fails the command
    reason: Reason | None = None  # a failure of the run as a whole, if any

    def __bool__(self) -> bool:
        return self.status == 0


def failing(command: Command, status: str, *, ignore_missing: bool = False) -> bool:
    """Whether a file with ``status`` fails ``command``."""
    if ignore_missing and status == Status.MISSING:
        return False
    return status in RULES[command].fails


def judge(
    command: Command,
    counts: Mapping[str, int],
    *,
    strict: bool = False,
    ignore_missing: bool = False,
) -> Verdict:
    """The verdict on a run from its counts by status; ``misformatted`` counts the
    improperly formatted lines, whether they were items or skipped on the way."""
    misformatted = counts.get(Status.MISFORMATTED, 0)
    entries = sum(n for status, n in counts.items() if status != Status.MISFORMATTED)
    failed = sum(
        n for status, n in counts.items() if failing(command, status, ignore_missing=ignore_missing)
    )
    reason: Reason | None = None
    if command is not Command.CREATE and entries == 0:
        reason = Reason.NO_LINES
    elif misformatted and (strict or RULES[command].misformatted_fails):
        reason = Reason.MISFORMATTED
    elif command is Command.CHECK and ignore_missing and not counts.get(Status.OK):
        reason = Reason.NOTHING_VERIFIED
    return Verdict(1 if failed or reason else 0, failed, reason)
