"""A job's record and a detached job, typed: read as Redis and the wire hold them, and
nothing they do not know is taken in silently."""

from __future__ import annotations

import json

import pytest

from dmp_cli.job_record import DetachedJob, JobInfo, JobState
from dmp_cli.rules import Command


def test_a_record_is_read_typed_with_its_counts_by_status() -> None:
    record = {
        "state": "done",
        "created": "1733500000.25",
        "op": "check",
        "strict": "1",
        "files": "3",
        "items_total": "3",
        "s:ok": "2",
        "s:lost": "1",
    }
    info = JobInfo.from_record(record)
    assert info.state is JobState.DONE
    assert (info.created, info.files, info.items_total) == (1733500000.25, 3, 3)
    assert info.strict and not info.ignore_missing
    assert info.counts == {"ok": 2, "lost": 1}
    assert info.finished is None and info.bytes_total is None
    assert JobInfo.from_record(info.to_record()) == info


def test_a_record_with_a_field_this_dmp_does_not_know_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown JobInfo fields: later, newer"):
        JobInfo.from_record({"state": "active", "newer": "1", "later": "x"})


def test_a_detached_job_goes_as_its_fields_that_its_command_uses() -> None:
    """The form a coordinator of the same protocol reads (``dmp_tasks.wire.PROTOCOL``):
    changing it means a new protocol."""
    check = DetachedJob(Command.CHECK, "/w", "m.sha256", strict=False, ignore_missing=True)
    assert json.dumps(check.to_json()) == (
        '{"command": "check", "cwd": "/w", "manifest": "m.sha256", "strict": false, '
        '"ignore_missing": true}'
    )
    create = DetachedJob(
        Command.CREATE, "/w", inputs={"paths": ["a"]}, output="o", temp="t", fmt="dmp"
    )
    assert json.dumps(create.to_json()) == (
        '{"command": "create", "cwd": "/w", "inputs": {"paths": ["a"]}, "output": "o", '
        '"temp": "t", "fmt": "dmp"}'
    )
    assert DetachedJob.from_json(json.loads(json.dumps(create.to_json()))) == create


def test_a_detached_job_with_a_field_this_dmp_does_not_know_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown DetachedJob fields: newer"):
        DetachedJob.from_json({"command": "check", "cwd": "/w", "newer": 1})
