"""`dmp job`: find a submitted job from any node, watch it to the end, cancel it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from dmp_cli.cli import global_options, quiet_option
from dmp_cli.errors import BrokerUnreachable, DmpError, UsageError
from dmp_cli.job_record import JobInfo, JobState
from dmp_cli.rows import Status
from dmp_cli.words import duration, human_bytes

if TYPE_CHECKING:
    from dmp_cli.cli import App
    from dmp_tasks.executor import CeleryExecutor
    from dmp_tasks.jobs import JobStore

WATCH_INTERVAL = 0.5
# How long `dmp job watch` waits for a broker that stopped answering (restarting, or a
# network away for a while) before it gives up; the job itself goes on meanwhile.
WATCH_OUTAGE_S = 300.0
STALLED_S = 2.0  # with no file done for this long, `dmp job watch` asks if a worker is there


def require_broker(app: App) -> str:
    """The broker URL; call before opening inputs, so that the usage error comes first."""
    if not app.settings.broker_url:
        raise UsageError("--detach needs DMP_BROKER_URL (a fleet of workers to run the job)")
    return app.settings.broker_url


def detach(app: App, submit: Callable[[CeleryExecutor], str]) -> int:
    """Submit a job to the fleet with ``submit`` and print its id (`--detach`)."""
    from dmp_tasks.executor import CeleryExecutor

    with CeleryExecutor(require_broker(app), on_message=app.out.info) as executor:
        job = submit(executor)
    if app.out.json:
        app.out.record("job", id=job)
    else:
        app.out.write(f"{job}\n".encode())
    app.out.info(f"job {job} submitted; follow it with `dmp job watch {job}`")
    return 0


def _jobs(app: App) -> JobStore:
    if not app.settings.broker_url:
        raise UsageError("dmp job needs DMP_BROKER_URL (the Redis that holds the jobs)")
    from dmp_tasks.jobs import JobStore

    jobs = JobStore(app.settings.broker_url)
    jobs.ping()
    return jobs


def _reason(row: dict[str, Any]) -> str:
    if row.get("error"):
        return str(row["error"])
    if row["status"] == Status.FAILED:
        return "computed checksum did NOT match"
    return str(row["status"])


def _show_errors(app: App, jobs: JobStore, job_id: str, info: JobInfo) -> None:
    """The files that failed, each in the line the command would have said; a failure
    that stopped the run (a full target, a vault that cannot be used), which the files
    in flight then met too, is said once, as the run says it: by the job's error, which
    its coordinator recorded as it stopped and which is shown after these, or else here
    (an attached run, which its command stopped)."""
    stopped = bool(info.error)
    for row in jobs.errors(job_id):
        if row.get("cold"):  # read while its object was cold: its outcome is a later row
            continue
        if row.get("fatal"):
            if not stopped:
                app.out.error(_reason(row))  # its error names the file
            stopped = True
            continue
        app.out.file_error(row.get("path") or "?", _reason(row))
    for path, found in _metadata(info):
        app.out.file_error(path, "METADATA " + ", ".join(found))
    for warning in filter(None, (info.warnings or "").split("\n")):
        app.out.error(warning)


def _metadata(info: JobInfo) -> list[tuple[str, list[str]]]:
    """A detached --check --meta's entries whose metadata differs, with how."""
    return [(path, found) for path, found in json.loads(info.metadata or "[]")]


class NoSuchJob(DmpError):
    """No record of the job (exit 2, apart from a job that failed, 1)."""

    exit_code = 2


def _info(jobs: JobStore, job: str) -> JobInfo:
    info = jobs.info(job)
    if info is None:
        raise NoSuchJob(f"no job {job} (finished jobs are kept for 7 days)")
    return info


def _still_there(jobs: JobStore, job: str) -> JobInfo:
    """A job's record, which was there a moment ago: gone now, Redis lost it."""
    info = jobs.info(job)
    if info is None:
        from dmp_tasks.config import safe_url

        raise DmpError(
            f"job {job} is gone from the broker at {safe_url(jobs.url)} (Redis restarted "
            "without its data?); run the command again to finish the work"
        )
    return info


def _when(stamp: float | None) -> str:
    if not stamp:
        return "-"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _state(info: JobInfo, failed: bool) -> str:
    """What a person wants to know: submitting, queued, running, waiting (for restores
    from cold storage), done, failed, cancelled."""
    state = info.state or "?"
    if state == JobState.ACTIVE and info.parked is not None:  # no coordinator meanwhile
        return "waiting"
    if state == JobState.ACTIVE and info.plan is not None:  # detached: a coordinator runs it
        return "running" if info.coordinator is not None else "queued"
    if state == JobState.ACTIVE:
        if info.items_total is None:
            return "submitting"
        return "running" if info.batches_done else "queued"
    return "failed" if state == JobState.DONE and failed else str(state)


def _waiting_text(info: JobInfo, next_look: bool = False) -> str | None:
    """``waiting for restore: N of M objects``: a detached --fetch still waiting for
    restores from cold storage (N objects of the M it met cold), with when it is looked
    at again if ``next_look``; else None."""
    if info.state != JobState.ACTIVE or not info.restore_waiting:
        return None
    text = f"waiting for restore: {info.restore_waiting:,} of {info.restore_objects or 0:,} objects"
    if next_look and info.parked is not None:
        text += f" (next look {_when(info.parked)})"
    return text


def _elapsed(info: JobInfo) -> float:
    """Seconds from submission to the end, or to now for a job still going."""
    start = info.created or time.time()
    return max(0.0, (info.finished or time.time()) - start)


def _summary(info: JobInfo) -> dict[str, Any]:
    from dmp_cli.job_verdicts import job_failed, rule_failure, status_counts

    failed = job_failed(info)
    elapsed = _elapsed(info)
    return {
        "state": _state(info, failed),
        "op": info.op,
        "command": info.command,
        "host": info.host,
        "created": _when(info.created),
        "finished": _when(info.finished) if info.finished else None,
        "files": info.files,
        "total": info.items_total,
        "bytes": info.bytes,
        "bytes_total": info.bytes_total,
        "elapsed": round(elapsed, 3),
        "counts": status_counts(info),
        "failed": failed,
        "reason": rule_failure(info),
        "restore": _restore_summary(info),
    }


def _restore_summary(info: JobInfo) -> dict[str, Any] | None:
    """A detached --fetch's objects in cold storage: those still waited for, of all."""
    if info.restore_objects is None:
        return None
    return {
        "waiting": info.restore_waiting or 0,
        "objects": info.restore_objects,
        "next_look": _when(info.parked) if info.parked is not None else None,
    }


def _counts_text(summary: dict[str, Any]) -> str:
    """``skipped 2, uploaded 19``: a job's counts by status, for people."""
    return ", ".join(f"{status} {n}" for status, n in sorted(summary["counts"].items()))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def job() -> None:
    """Follow jobs submitted to the fleet (`dmp manifest ... --detach`)."""


@job.command()
@click.argument("job_id", metavar="ID")
@quiet_option
@global_options
@click.pass_obj
def status(app: App, job_id: str) -> int:
    """Show a job's state, counts and speed, and the files that failed; exit 1 if the
    job failed, 2 if there is no such job."""
    jobs = _jobs(app)
    info = _info(jobs, job_id)
    summary = _summary(info)
    status = 1 if summary["failed"] else 0
    if app.out.json:
        app.out.record("job", id=job_id, **summary)
        for row in jobs.errors(job_id):
            if not row.get("cold"):  # read while its object was cold: see _show_errors
                app.out.record("file", **row)
        for path, found in _metadata(info):
            app.out.record("file", path=path, status="metadata", differences=found)
        return status
    elapsed = max(summary["elapsed"], 1e-3)
    done = f"{summary['files']}/{summary['total'] if summary['total'] is not None else '?'}"
    of = f" of {human_bytes(summary['bytes_total'])}" if summary["bytes_total"] else ""
    lines = [
        f"job:      {job_id}",
        f"state:    {summary['state']}",
        f"command:  {summary['command']}",
        f"host:     {summary['host']}",
        f"created:  {summary['created']}",
        f"files:    {done} ({summary['files'] / elapsed:,.0f} files/s)",
        f"bytes:    {human_bytes(summary['bytes'])}{of} "
        f"({human_bytes(int(summary['bytes'] / elapsed))}/s)",
    ]
    waiting = _waiting_text(info, next_look=True)
    if waiting:
        lines.append(f"restore:  {waiting}")
    if summary["finished"]:
        lines.append(f"finished: {summary['finished']}")
    lines.append(f"elapsed:  {duration(summary['elapsed'])}")
    counts = _counts_text(summary)
    lines.append(f"results:  {counts or '-'}")
    if summary["reason"]:
        lines.append(f"failed:   {summary['reason']}")
    app.out.write(("\n".join(lines) + "\n").encode())
    _show_errors(app, jobs, job_id, info)
    return status


@job.command()
@click.argument("job_id", metavar="ID")
@quiet_option
@global_options
@click.pass_obj
def watch(app: App, job_id: str) -> int:
    """Show a job's progress until it ends; exit 0 if every file went well, 3 if a
    fetch with --no-wait left files to restores in progress (and none failed), else 1.

    If the broker stops answering (a restart, a network away), watch says so and waits for
    it up to 5 minutes: the job goes on without it."""
    jobs = _jobs(app)
    info = _info(jobs, job_id)
    # What was done before the watch began counts in the bar, not in its rate.
    seen, seen_bytes = info.files, info.bytes
    with app.out.progress(
        f"job {job_id}", info.items_total, initial=(seen, seen_bytes), bytes_total=info.bytes_total
    ) as bar:
        moved, asked = time.monotonic(), False
        said: str | None = None  # the waiting for restores last said
        lost: float | None = None  # since when the broker has not answered
        while True:
            try:
                info = _still_there(jobs, job_id)
            except BrokerUnreachable as exc:
                now = time.monotonic()
                if lost is None:
                    lost = now
                    said = str(exc).rstrip(".")  # redis-py's reasons end with a full stop
                    app.out.info(f"{said}; trying again for {WATCH_OUTAGE_S:.0f} s")
                elif now - lost >= WATCH_OUTAGE_S:
                    raise
                time.sleep(WATCH_INTERVAL)
                continue
            if lost is not None:
                lost = None
                app.out.info(f"the broker answers again; watching job {job_id}")
            files, nbytes = info.files, info.bytes
            bar.update(files - seen, nbytes - seen_bytes)
            if files != seen:
                moved = time.monotonic()
            seen, seen_bytes = files, nbytes
            if info.state != JobState.ACTIVE:
                break
            waiting = _waiting_text(info)
            if waiting and waiting != said:  # said when it changes; parked, no worker runs it
                app.out.info(f"job {job_id}: {waiting}")
                moved = time.monotonic()
            said = waiting or said
            if not asked and not waiting and time.monotonic() - moved >= STALLED_S:
                asked = True  # once: the answer costs the workers a round trip
                _say_if_no_worker(app, jobs.url, job_id, info.op or "")
            time.sleep(WATCH_INTERVAL)
    summary = _summary(info)
    _show_errors(app, jobs, job_id, info)
    if summary["reason"]:
        app.out.error(summary["reason"])
    app.out.record("job", id=job_id, **summary)
    counts = _counts_text(summary)
    app.out.info(
        f"job {job_id} {summary['state']}: {summary['files']} files"
        + (f" ({counts})" if counts else "")
    )
    from dmp_cli.job_verdicts import restores_pending
    from dmp_cli.runs.restoring import RESTORE_PENDING_EXIT

    if summary["failed"] and restores_pending(info):
        return RESTORE_PENDING_EXIT  # --no-wait: the rest after the restores, by a later fetch
    return 1 if summary["failed"] else 0


def _say_if_no_worker(app: App, broker_url: str, job_id: str, op: str) -> None:
    from dmp_tasks.app import client_app
    from dmp_tasks.presence import no_worker_message

    message = no_worker_message(client_app(broker_url), broker_url, job_id, op)
    if message:
        app.out.info(message)


@job.command()
@click.argument("job_id", metavar="ID")
@quiet_option
@global_options
@click.pass_obj
def cancel(app: App, job_id: str) -> int:
    """Cancel a job: workers skip the batches they have not started."""
    jobs = _jobs(app)
    info = _info(jobs, job_id)
    if not jobs.cancel(job_id):
        raise DmpError(f"job {job_id} has already ended ({_summary(info)['state']})")
    app.out.record("job", id=job_id, state=JobState.CANCELLED)
    app.out.info(f"job {job_id} cancelled")
    return 0


@job.command(name="list")
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many of the newest jobs to show.",
)
@quiet_option
@global_options
@click.pass_obj
def list_jobs(app: App, limit: int) -> int:
    """List the newest jobs, from any node."""
    jobs = _jobs(app)
    if not app.out.json:
        app.out.write(_LIST_ROW.format("JOB", "CREATED", "STATE", "FILES", "COMMAND").encode())
    for job_id, info in jobs.newest(limit):
        summary = _summary(info)
        if app.out.json:
            app.out.record("job", id=job_id, **summary)
            continue
        total = summary["total"] if summary["total"] is not None else "?"
        files = f"{summary['files']}/{total}"
        row = _LIST_ROW.format(
            job_id, summary["created"], summary["state"], files, summary["command"]
        )
        app.out.write(row.encode())
    return 0


_LIST_ROW = "{:<12}  {:<20}  {:<10}  {:>15}  {}\n"
