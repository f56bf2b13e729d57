"""`dmp worker`: a Celery worker of the fleet (the same as `celery -A dmp_tasks worker`)."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from dmp_cli.cli import App

from dmp_cli.errors import BrokerError
from dmp_cli.executor import default_jobs

ALL_QUEUES = "dmp.hash,dmp.transfer,dmp.big,dmp.coord"
KNOWN_QUEUES = ALL_QUEUES.split(",")


def _known_queues(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """The queues, if dmp sends to each: a worker on a misspelt queue would start,
    say it is ready, and idle for ever."""
    names = [name.strip() for name in value.split(",")]
    for name in names:
        if name not in KNOWN_QUEUES:
            escaped = "\\x2c" in name
            why = " (a comma escaped by systemd: the unit must pass %I)" if escaped else ""
            raise click.BadParameter(
                f"no queue {name!r}{why}; dmp's queues are {', '.join(KNOWN_QUEUES)}"
            )
    return ",".join(dict.fromkeys(names))


def worker_argv(
    concurrency: int | None,
    queues: str,
    name: str | None,
    loglevel: str,
    logfile: str | None,
    idle_exit: float | None = None,
    task_events: bool = False,
) -> list[str]:
    """The celery command line for these options."""
    # A unique default name: two workers on one node must not share one (Celery then
    # confuses their replies), and a name with the pid says which process to look at.
    argv = [
        "worker",
        "--queues",
        queues,
        "--loglevel",
        loglevel,
        "--hostname",
        name or f"dmp-{os.getpid()}@{socket.gethostname()}",
        # Mingle and gossip cost seconds at start and chatter on big fleets;
        # dmp keeps its job state in Redis and needs neither.
        "--without-mingle",
        "--without-gossip",
    ]
    if not concurrency and "dmp.coord" in queues.split(","):
        # A coordinator holds a process for its job's life, mostly waiting on Redis:
        # one more process than CPUs keeps them all busy with batches meanwhile.
        concurrency = default_jobs() + 1
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    if queues == "dmp.big":
        argv += ["--prefetch-multiplier", "1"]
    if logfile:
        argv += ["--logfile", logfile]
    if idle_exit:
        argv += ["--idle-exit", str(idle_exit)]
    if task_events:
        argv += ["--task-events"]
    return argv


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    metavar="N",
    help="Worker processes (default: the number of CPUs, plus one with dmp.coord).",
)
@click.option(
    "-Q",
    "--queues",
    default=ALL_QUEUES,
    show_default=True,
    callback=_known_queues,
    metavar="Q[,Q...]",
    help="Queues to take work from: dmp.hash (hashing), dmp.transfer (S3), "
    "dmp.big (huge files, one at a time), dmp.coord (detached jobs' coordinators).",
)
@click.option(
    "-n",
    "--name",
    metavar="NAME@HOST",
    help="Worker name (default: dmp-PID@HOSTNAME, unique on a node).",
)
@click.option(
    "-l",
    "--loglevel",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Log level.",
)
@click.option("-f", "--logfile", metavar="FILE", help="Log to FILE (default: stderr).")
@click.option(
    "--idle-exit",
    type=click.FloatRange(min=0),
    envvar="DMP_WORKER_IDLE_EXIT",
    show_envvar=True,
    metavar="MINUTES",
    help="Stop cleanly (exit 0) after MINUTES with no task received or running, so that "
    "a batch job gives its nodes back when the queues are empty (default: never).",
)
@click.option(
    "-E",
    "--task-events",
    is_flag=True,
    help="Send task events from the start, for `celery events` and other monitors "
    "(default: from when a monitor asks; Flower asks when it starts, as does "
    "`celery -A dmp_tasks control enable_events`).",
)
@click.pass_obj
def worker(
    app: App,
    concurrency: int | None,
    queues: str,
    name: str | None,
    loglevel: str,
    logfile: str | None,
    idle_exit: float | None,
    task_events: bool,
) -> None:
    """Run a worker of the fleet: it takes batches of files from Redis (DMP_BROKER_URL)
    and hashes, checks or transfers them. Workers must see the same filesystem paths as
    the nodes that submit jobs."""
    if not app.settings.broker_url:
        raise BrokerError("dmp worker needs DMP_BROKER_URL (e.g. redis://host:6379/0)")
    from dmp_tasks import app as celery_app
    from dmp_tasks.auth import probe
    from dmp_tasks.jobs import JobStore

    JobStore(app.settings.broker_url).ping()  # a clear error now rather than retries
    probe()  # DMP_AUTH=munge: munged answers (else one line, before Celery starts)
    celery_app.worker_main(
        worker_argv(concurrency, queues, name, loglevel.upper(), logfile, idle_exit, task_events)
    )
