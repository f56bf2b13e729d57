"""Whether a job on the fleet failed, judged from its record by the rules of the command
that submitted it (``dmp_cli.rules``): a job is judged as that command, run in a
terminal, judges its run.
"""

from __future__ import annotations

from dmp_cli.job_record import JobInfo, JobState
from dmp_cli.rows import Status
from dmp_cli.rules import Command, Reason, Verdict, judge
from dmp_cli.words import plural


def status_counts(info: JobInfo) -> dict[str, int]:
    """The job's file counts by status (its record's fields ``s:STATUS``)."""
    return dict(info.counts)


def _counts(info: JobInfo) -> dict[str, int]:
    """A job's counts as ``dmp_cli.rules`` judges them: by status, with the lines skipped
    while submitting among the improperly formatted, and the files of batches that never
    recorded themselves, once the job is done, counted as lost."""
    counts = status_counts(info)
    counts[Status.MISFORMATTED] = counts.get(Status.MISFORMATTED, 0) + info.misformatted
    if info.state == JobState.DONE:
        unrecorded = (info.items_total or 0) - info.files
        if unrecorded > 0:
            counts[Status.LOST] = counts.get(Status.LOST, 0) + unrecorded
    return counts


def _verdict(info: JobInfo, counts: dict[str, int]) -> Verdict:
    """A job judged as the command that submitted it judges a run."""
    return judge(
        Command.of_operation(info.op or Command.CREATE.operation),
        counts,
        strict=info.strict,
        ignore_missing=info.ignore_missing,
    )


def rule_failure(info: JobInfo) -> str | None:
    """Why a job fails by the rules of the command that submitted it (--strict,
    --ignore-missing, sha256sum's rules for a check), though no file failed; else None.
    Until the job is done, only what cannot change: lines that --strict refuses. A job
    that failed as a whole (its coordinator could not go on) says why."""
    if info.error:
        return info.error
    if info.state == JobState.ABANDONED:
        return (
            "its command stopped before the job was complete (killed, or it lost the "
            "broker); run the command again to finish the work"
        )
    counts = _counts(info)
    reason = _verdict(info, counts).reason
    if reason is Reason.MISFORMATTED:
        lines = counts[Status.MISFORMATTED]
        why = "--strict" if info.strict else "skipped"
        return f"{plural(lines, 'line is', 'lines are')} improperly formatted ({why})"
    if info.state != JobState.DONE:
        return None
    if reason is Reason.NO_LINES:
        return "no properly formatted checksum lines found"
    if reason is Reason.NOTHING_VERIFIED:
        return "no file was verified (--ignore-missing)"
    return None


def job_failed(info: JobInfo) -> bool:
    if info.state in (JobState.CANCELLED, JobState.ABANDONED) or info.error:
        return True
    verdict = _verdict(info, _counts(info))
    if info.state != JobState.DONE:  # so far: files failed, or lines --strict refuses
        return verdict.failed > 0 or verdict.reason is Reason.MISFORMATTED
    return verdict.status != 0


def restores_pending(info: JobInfo) -> bool:
    """A detached --fetch --no-wait that ended with files left to restores in progress,
    and no file failed: as the command's own run, it ends with exit status 3 (run the
    fetch again later), not 1."""
    if info.state != JobState.DONE or not info.restore_waiting:
        return False
    return _verdict(info, status_counts(info)).failed == 0
