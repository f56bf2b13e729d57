"""How `dmp job status` and `dmp job watch` tell of a detached --fetch that waits for
restores from cold storage, from its record alone."""

from __future__ import annotations

import pytest

from dmp_cli.cli.job import _restore_summary, _state, _waiting_text
from dmp_cli.job_record import JobInfo, JobState

PLAN = '{"command": "fetch"}'


@pytest.mark.parametrize(
    ("record", "state", "text"),
    [
        (
            {"state": "active", "plan": PLAN, "coordinator": "w", "restore_waiting": "12",
             "restore_objects": "1000", "parked": "1796601600"},
            "waiting",
            "waiting for restore: 12 of 1,000 objects (next look 2026-12-07T00:00:00Z)",
        ),
        (
            {"state": "active", "plan": PLAN, "coordinator": "w", "restore_waiting": "12",
             "restore_objects": "1000"},
            "running",
            "waiting for restore: 12 of 1,000 objects",
        ),
        (
            {"state": "done", "plan": PLAN, "restore_waiting": "0", "restore_objects": "1000"},
            "done",
            None,
        ),
        ({"state": "active", "plan": PLAN, "coordinator": "w"}, "running", None),
    ],
    ids=["parked", "looked-at", "done", "never-cold"],
)  # fmt: skip
def test_a_waiting_job_is_said_so(record: dict[str, str], state: str, text: str | None) -> None:
    info = JobInfo.from_record(record)
    assert _state(info, failed=False) == state
    assert _waiting_text(info, next_look=True) == text
    if text is not None:  # watch says it without the time of the next look
        assert _waiting_text(info) == text.partition(" (")[0]


def test_the_restore_summary() -> None:
    parked = JobInfo(JobState.ACTIVE, restore_waiting=3, restore_objects=9, parked=1796601600.0)
    assert _restore_summary(parked) == {
        "waiting": 3,
        "objects": 9,
        "next_look": "2026-12-07T00:00:00Z",
    }
    assert _restore_summary(JobInfo(JobState.DONE)) is None
