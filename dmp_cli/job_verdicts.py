"""Whether a job on the fleet failed, judged from its record by the rules of the command
that submitted it (``dmp_cli.rules``): a job is judged as that command, run in a
terminal, judges its run.
"""

from __future__ import annotations

from dmp_cli.rows import Status
from dmp_cli.rules import Command, Reason, Verdict, judge
from dmp_cli.words import plural


def status_counts(info: dict[str, str]) -> dict[str, int]:
    """The per-status file counts of a job hash (fields ``s:STATUS``)."""
    return {k[2:]: int(v) for k, v in info.items() if k.startswith("s:")}


def _counts(info: dict[str, str]) -> dict[str, int]:
    """A job's counts as ``dmp_cli.rules`` judges them: by status, with the lines skipped
    while submitting among the improperly formatted, and the files of batches that never
    recorded themselves, once the job is done, counted as lost."""
    counts = status_counts(info)
    counts[Status.MISFORMATTED] = counts.get(Status.MISFORMATTED, 0) + int(
        info.get("misformatted", 0)
    )
    if info.get("state") == "done":
        unrecorded = int(info.get("items_total", 0)) - int(info.get("files", 0))
        if unrecorded > 0:
            counts[Status.LOST] = counts.get(Status.LOST, 0) + unrecorded
    return counts


def _verdict(info: dict[str, str], counts: dict[str, int]) -> Verdict:
    """A job judged as the command that submitted it judges a run."""
    return judge(
        Command.of_operation(info.get("op", "hash")),
        counts,
        strict=bool(info.get("strict")),
        ignore_missing=bool(info.get("ignore_missing")),
    )


def rule_failure(info: dict[str, str]) -> str | None:
    """Why a job fails by the rules of the command that submitted it (--strict,
    --ignore-missing, sha256sum's rules for a check), though no file failed; else None.
    Until the job is done, only what cannot change: lines that --strict refuses. A job
    that failed as a whole (its coordinator could not go on) says why."""
    if info.get("error"):
        return info["error"]
    if info.get("state") == "abandoned":
        return (
            "its command stopped before the job was complete (killed, or it lost the "
            "broker); run the command again to finish the work"
        )
    counts = _counts(info)
    reason = _verdict(info, counts).reason
    if reason is Reason.MISFORMATTED:
        lines = counts[Status.MISFORMATTED]
        why = "--strict" if info.get("strict") else "skipped"
        return f"{plural(lines, 'line is', 'lines are')} improperly formatted ({why})"
    if info.get("state") != "done":
        return None
    if reason is Reason.NO_LINES:
        return "no properly formatted checksum lines found"
    if reason is Reason.NOTHING_VERIFIED:
        return "no file was verified (--ignore-missing)"
    return None


def job_failed(info: dict[str, str]) -> bool:
    if info.get("state") in ("cancelled", "abandoned") or info.get("error"):
        return True
    verdict = _verdict(info, _counts(info))
    if info.get("state") != "done":  # so far: files failed, or lines --strict refuses
        return verdict.failed > 0 or verdict.reason is Reason.MISFORMATTED
    return verdict.status != 0
