"""A job on the fleet, as its record in Redis holds it: typed here, read and written alike
wherever it is (the job store, a job's coordinator, `dmp job`).

``JobInfo`` is the job's record (a Redis hash of strings, one field a value, and its counts
by status as fields ``s:STATUS``); ``DetachedJob`` is what a detached job's coordinator is
to run, kept as JSON in the record's ``plan`` field. Both refuse fields they do not know,
as ``dmp_cli.options`` does: a record of another version of dmp is not misread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, get_args, get_type_hints

from dmp_cli.options import _Plain


class JobState(StrEnum):
    """Where a job is: going, or how it ended (a failed job is ``done``, its verdict says
    it failed: ``dmp_cli.job_verdicts``)."""

    ACTIVE = "active"
    DONE = "done"
    CANCELLED = "cancelled"  # `dmp job cancel`, or its attached command stopped early
    ABANDONED = "abandoned"  # its attached command vanished (its lease expired)


@dataclass(frozen=True)
class JobInfo:
    """A job's record. Counts are of files unless said otherwise; a field the job has
    not reached yet is None (or its default)."""

    state: JobState | None = None
    created: float | None = None  # when it was submitted (seconds since the epoch)
    finished: float | None = None
    op: str | None = None  # the per-file operation (``dmp_cli.rules.Command.operation``)
    host: str | None = None  # where it was submitted
    command: str | None = None  # the command line that submitted it
    strict: bool = False  # the submitting command's rules (``dmp_cli.rules``)
    ignore_missing: bool = False
    attached: bool = False  # its command gathers its rows (and holds its lease)
    # Detached: its DetachedJob, as JSON with the protocol it is in (``dmp_tasks.wire``);
    # "plan" is its name in the record, where every version of dmp looks for it.
    plan: str | None = None
    # Submitted so far, and in all once known; done so far.
    batches: int = 0
    items: int = 0
    batches_total: int | None = None
    windows_total: int | None = None  # chords
    items_total: int | None = None
    bytes_total: int | None = None  # if every file's size was known
    batches_done: int = 0
    windows_done: int = 0
    files: int = 0
    bytes: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # files by status
    misformatted: int = 0  # manifest lines skipped before they became items
    # A detached job's coordination: by whom, how often taken up, how far it got.
    coordinator: str | None = None
    coordinations: int = 0
    checkpoint: str | None = None  # JSON
    # How it ended, apart from its counts.
    error: str | None = None  # the job failed as a whole, and why
    warnings: str | None = None  # one a line
    metadata: str | None = None  # JSON: the entries of a --check --meta that differ
    files_written: int | None = None  # lines of a --create's manifest
    refused: str | None = None  # why a worker refused the job's work
    # A detached --fetch waiting for restores from cold storage: the objects it still
    # waits for, of those it met cold; while parked (no coordinator runs it), when it is
    # looked at again (seconds since the epoch).
    restore_waiting: int | None = None
    restore_objects: int | None = None
    parked: float | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, str]) -> JobInfo:
        """The record as Redis holds it; ValueError for a field this dmp does not know."""
        values: dict[str, Any] = {}
        counts: dict[str, int] = {}
        unknown = []
        for name, raw in record.items():
            if name.startswith("s:"):
                counts[name[2:]] = int(raw)
            elif name in _PARSERS:
                values[name] = _PARSERS[name](raw)
            else:
                unknown.append(name)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {', '.join(sorted(unknown))}")
        return cls(counts=counts, **values)

    def to_record(self) -> dict[str, str]:
        """The record as Redis holds it: fields at None or False are left out."""
        record: dict[str, str] = {}
        for name in _PARSERS:
            value = getattr(self, name)
            if value is None or value is False:
                continue
            record[name] = "1" if value is True else str(value)
        record.update({f"s:{status}": str(n) for status, n in self.counts.items()})
        return record


def _parser(kind: Any) -> Callable[[str], Any]:
    """How a field of type ``kind`` is read from its string (a flag is set if not empty)."""
    return next((arg for arg in get_args(kind) if arg is not type(None)), kind)


_PARSERS = {
    name: _parser(kind) for name, kind in get_type_hints(JobInfo).items() if name != "counts"
}


@dataclass(frozen=True)
class DetachedJob(_Plain):
    """What a detached job's coordinator runs: the command, in the submitter's directory,
    over a manifest (--check, --vault, --archive, --fetch) or inputs (--create). A field
    that the command does not use is None, and left out of its JSON."""

    command: str  # a ``dmp_cli.rules.Command``
    cwd: str
    manifest: str | None = None
    strict: bool | None = None  # --check's rules
    ignore_missing: bool | None = None
    stores: dict[str, Any] | None = None  # --vault, --archive, --fetch: a StoreSpec, as JSON
    options: dict[str, Any] | None = None  # and their Options, as JSON
    meta: str | None = None  # the companion file of metadata the manifest comes with
    inputs: dict[str, Any] | None = None  # --create: its Inputs
    output: str | None = None  # --create: the manifest to write, through ``temp``
    temp: str | None = None
    fmt: str | None = None
    meta_output: str | None = None  # --create --meta: the companion, through ``meta_temp``
    meta_temp: str | None = None
    planning: str | None = None  # --vault, --archive: DMP_VAULT_PLANNING where submitted

    def to_json(self) -> dict[str, Any]:
        return {name: value for name, value in asdict(self).items() if value is not None}


__all__ = ["DetachedJob", "JobInfo", "JobState"]
