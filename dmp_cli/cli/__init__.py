"""The `dmp` command line: one group, a module per command group, errors mapped once."""

from __future__ import annotations

import os
import select
import signal
import sys
import traceback
from dataclasses import dataclass
from typing import Any

import click

from dmp_cli import __version__
from dmp_cli.cli.output import Output
from dmp_cli.errors import DmpError
from dmp_cli.executor import Executor
from dmp_cli.settings import Settings


@dataclass
class App:
    """What every command gets: the run's settings and where to print."""

    settings: Settings
    out: Output

    def executor(self) -> Executor:
        from dmp_cli.runtime import make_executor

        return make_executor(self.settings.broker_url, self.settings.jobs, self.out.info)


class StdoutClosed(Exception):
    """Whoever read stdout has gone (`dmp ... | head`): end as coreutils do, by SIGPIPE."""


def _stdout_closed() -> bool:
    """Whether stdout is a pipe with no reader left (poll says so without writing)."""
    try:
        poller = select.poll()
        poller.register(sys.__stdout__.fileno() if sys.__stdout__ else 1, select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False


class _Group(click.Group):
    """Click makes a broken pipe exit 1 quietly; dmp tells a closed stdout (SIGPIPE, as
    sha256sum) from a broken pipe elsewhere (an error, said)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:
            if _stdout_closed():
                raise StdoutClosed from None
            raise RuntimeError(f"broken pipe: {exc}") from exc


def _flush_at_close(out: Output) -> None:
    try:
        out.stdout.flush()
    except BrokenPipeError:
        raise StdoutClosed from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dmp")
@click.option("--profile", metavar="NAME", help="AWS profile to use (as in the AWS CLI).")
@click.option(
    "--region", metavar="REGION", help="AWS region (default: from the profile or AWS_REGION)."
)
@click.option(
    "--endpoint-url",
    metavar="URL",
    help="S3 endpoint, for MinIO, Ceph or another S3-compatible store (default: AWS_ENDPOINT_URL).",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    metavar="N",
    help="Local parallelism (default: DMP_JOBS, else the number of CPUs).",
)
@click.option(
    "--json",
    "json_mode",
    is_flag=True,
    help="Write JSON Lines on stdout: one object per file, then a summary object.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or informational messages.")
@click.option("-v", "--verbose", count=True, help="More detail on stderr.")
@click.option(
    "--traceback",
    "show_traceback",
    is_flag=True,
    hidden=True,
    help="Show the Python traceback of an unexpected error.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    profile: str | None,
    region: str | None,
    endpoint_url: str | None,
    jobs: int | None,
    json_mode: bool,
    quiet: bool,
    verbose: int,
    show_traceback: bool,
) -> None:
    """dmp: make sha256 manifests of files, verify them, and archive the files they name
    to a content-addressed vault on S3 (or a directory), then fetch them back, verified.

    Without DMP_BROKER_URL everything runs here, in a local pool; with it, the work fans
    out to `dmp worker` processes through Redis.
    """
    settings = Settings.from_env(
        profile=profile, region=region, endpoint_url=endpoint_url, jobs=jobs
    )
    out = Output(json_mode=json_mode, quiet=quiet, verbose=verbose)
    ctx.obj = App(settings, out)
    ctx.call_on_close(lambda: _flush_at_close(out))
    ctx.meta["dmp.traceback"] = show_traceback


def _register() -> None:
    from dmp_cli.cli import manifest

    cli.add_command(manifest.manifest)
    from dmp_cli.cli import job, worker

    cli.add_command(job.job)
    cli.add_command(worker.worker)
    from dmp_cli.cli import upkeep

    cli.add_command(upkeep.vault)


_register()


class Terminated(BaseException):
    """SIGTERM or SIGHUP (`timeout`, `kill`, a dropped ssh session): unwound as ^C is (a
    fleet job cancelled, a half-written file removed), then dmp ends by that signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signal.Signals(signum)


def _terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


# What ends an attached run as ^C does; nohup's "ignore SIGHUP" is kept.
_ENDING = (signal.SIGTERM, signal.SIGHUP)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; the one place where exceptions become messages and exit statuses."""
    saved = {sig: signal.getsignal(sig) for sig in _ENDING}
    for sig, handler in saved.items():
        if handler == signal.SIG_DFL:
            signal.signal(sig, _terminated)
    try:
        _main(argv)
    finally:  # a caller in the same process (tests) gets its handlers back
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _main(argv: list[str] | None) -> None:
    show_traceback = "--traceback" in (sys.argv[1:] if argv is None else argv)
    try:
        status = cli.main(args=argv, prog_name="dmp", standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        click.echo(f"dmp: {exc.format_message()}{hint}", err=True)
        status = 2
    except click.ClickException as exc:
        click.echo(f"dmp: {exc.format_message()}", err=True)
        status = exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("dmp: interrupted", err=True)
        _die_of(signal.SIGINT)
    except Terminated as exc:
        click.echo(f"dmp: stopped by {exc.signum.name}", err=True)
        _die_of(exc.signum)
    except DmpError as exc:
        sys.stdout.flush()
        click.echo(f"dmp: {exc}", err=True)
        status = exc.exit_code
    except StdoutClosed:
        _die_of(signal.SIGPIPE)
    except Exception as exc:
        if show_traceback:
            traceback.print_exc()
        click.echo(
            f"dmp: unexpected error: {type(exc).__name__}: {exc} "
            "(run with --traceback for details)",
            err=True,
        )
        status = 1
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _die_of(signal.SIGPIPE)
    sys.exit(status if isinstance(status, int) else 0)


def _die_of(sig: signal.Signals) -> None:
    """End as a C tool does on ^C (SIGINT) or when its reader went away (SIGPIPE): killed
    by the signal, so that the shell or script that ran dmp knows (status 130 or 141 in
    a shell; a shell loop stops on ^C). By now whatever was being run has been unwound
    (a temporary file removed, a fleet job cancelled); Python's flush of stdout at exit
    is skipped."""
    sys.stderr.flush()
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
    os._exit(128 + sig)  # not reached: the signal ends the process
