"""The `dmp` command line: one group, a module per command group, errors mapped once."""

from __future__ import annotations

import os
import select
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import click

from dmp_cli import __version__, stdio
from dmp_cli.cli.output import Output
from dmp_cli.errors import DmpError
from dmp_cli.executor import Executor
from dmp_cli.settings import Settings
from dmp_cli.stdio import WriteError, guarded_stdout


@dataclass
class App:
    """What every command gets: the run's settings and where to print."""

    settings: Settings
    out: Output

    def set(self, **settings: Any) -> None:
        """Change settings (a global option given after the command)."""
        self.settings = replace(self.settings, **settings)

    def executor(self) -> Executor:
        from dmp_cli.runtime import make_executor

        return make_executor(self.settings.broker_url, self.settings.jobs, self.out.info)


@dataclass
class Session:
    """What ``main`` hands the group and gets back: the command line (for the log's
    first line), and where the run prints (for its last words: an error that ends it,
    and its exit status, go to the log too)."""

    argv: list[str] = field(default_factory=list)
    out: Output | None = None

    def say(self, message: str) -> None:
        """A message of ``main``'s own, on stderr and in the log."""
        click.echo(message, err=True)
        if self.out is not None and self.out.log is not None:
            self.out.log.lines(os.fsencode(message), flush=True)

    def end(self, how: str) -> None:
        """The log's last line (``exit status 1``, ``ended by SIGINT``), and its close."""
        if self.out is not None:
            self.out.close_log(f"dmp: {how}")


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


# The global options, given before the command (`dmp -q manifest ...`) or after it (`dmp
# manifest -q ...`): one meaning either way. Each is (its flags, click's settings, how it
# changes the run's App when given after the command).
_GLOBALS: list[tuple[tuple[str, ...], dict[str, Any], Callable[[App, Any], None]]] = [
    (
        ("--profile",),
        {"metavar": "NAME", "help": "AWS profile to use (as in the AWS CLI)."},
        lambda app, value: app.set(profile=value),
    ),
    (
        ("--region",),
        {"metavar": "REGION", "help": "AWS region (default: from the profile or AWS_REGION)."},
        lambda app, value: app.set(region=value),
    ),
    (
        ("--endpoint-url",),
        {
            "metavar": "URL",
            "help": "S3 endpoint, for MinIO, Ceph or another S3-compatible store "
            "(default: AWS_ENDPOINT_URL).",
        },
        lambda app, value: app.set(endpoint_url=value),
    ),
    (
        ("-j", "--jobs"),
        {
            "type": click.IntRange(min=1),
            "metavar": "N",
            "help": "Local parallelism (default: DMP_JOBS, else the number of CPUs).",
        },
        lambda app, value: app.set(jobs=value),
    ),
    (
        ("--json", "json_mode"),
        {
            "is_flag": True,
            "help": "Write JSON Lines on stdout: one object per file, then a summary object.",
        },
        lambda app, value: setattr(app.out, "json", True),
    ),
    (
        ("-v", "--verbose"),
        {"count": True, "help": "More detail on stderr."},
        lambda app, value: setattr(app.out, "verbose", app.out.verbose + value),
    ),
    (
        ("--log-file",),
        {
            "metavar": "PATH",
            "help": "Append every per-file line, message and summary to PATH, each with "
            "its time (UTC), whatever -q, --status or --json keep from the terminal "
            "(default: DMP_LOG_FILE).",
        },
        lambda app, value: app.out.open_log(value),
    ),
    (
        ("--traceback", "show_traceback"),
        {
            "is_flag": True,
            "hidden": True,
            "help": "Show the Python traceback of an unexpected error.",
        },
        lambda app, value: None,  # read from the command line by _main
    ),
]
GLOBAL_FLAGS = {flag for flags, _, _ in _GLOBALS for flag in flags if flag.startswith("-")}
GLOBAL_FLAGS |= {"-q", "--quiet"}
QUIET_HELP = (
    "No progress bars or informational messages; with --check, no OK line for each "
    "verified file either (sha256sum's --quiet)."
)
VERBOSITY = "dmp.check_verbosity"  # --quiet, --status, --warn in the order given


def global_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Accept the global options after a command too: each applies to the run as it
    would before the command (`dmp manifest --json -j 4 ...`)."""
    for flags, settings, apply in reversed(_GLOBALS):
        names = [flag for flag in flags if flag.startswith("-")]

        def callback(ctx: click.Context, param: click.Parameter, value: Any, apply=apply) -> None:
            if value:
                apply(ctx.ensure_object(App), value)

        command = click.option(*names, expose_value=False, callback=callback, **settings)(command)
    return command


def quiet_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """-q/--quiet after a command: the global option, which --check also hears in order
    with --status and --warn (in sha256sum the last of these wins)."""

    def callback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if value:
            ctx.ensure_object(App).out.quiet = True
            ctx.meta.setdefault(VERBOSITY, []).append("quiet")

    return click.option(
        "-q", "--quiet", is_flag=True, expose_value=False, callback=callback, help=QUIET_HELP
    )(command)


def _before(command: Callable[..., Any]) -> Callable[..., Any]:
    for flags, settings, _ in reversed(_GLOBALS):
        command = click.option(*flags, **settings)(command)
    return click.option("-q", "--quiet", is_flag=True, help=QUIET_HELP)(command)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dmp")
@_before
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
    log_file: str | None,
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
    session = ctx.obj if isinstance(ctx.obj, Session) else Session()
    session.out, out.command = out, ["dmp", *session.argv]
    if log_file:
        out.open_log(log_file)
    elif os.environ.get("DMP_LOG_FILE") and ctx.invoked_subcommand != "worker":
        # (A worker keeps a log of its own, --logfile: a fleet's environment may well
        # set DMP_LOG_FILE for the commands run beside it.)
        out.open_log(os.environ["DMP_LOG_FILE"], " (DMP_LOG_FILE)")
    ctx.obj = App(settings, out)
    if quiet:
        ctx.meta[VERBOSITY] = ["quiet"]  # first: a --status or --warn after it wins
    ctx.call_on_close(lambda: _flush_at_close(out))
    ctx.meta["dmp.traceback"] = show_traceback


def _register() -> None:
    from dmp_cli.cli import manifest

    cli.add_command(manifest.manifest)
    from dmp_cli.cli import job, worker

    cli.add_command(job.job)
    cli.add_command(worker.worker)
    from dmp_cli.cli import vault

    cli.add_command(vault.vault)


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
    stdio.guard()
    saved = {sig: signal.getsignal(sig) for sig in _ENDING}
    for sig, handler in saved.items():
        if handler == signal.SIG_DFL:
            signal.signal(sig, _terminated)
    try:
        with guarded_stdout():
            _main(argv)
    finally:  # a caller in the same process (tests) gets its handlers back
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _main(argv: list[str] | None) -> None:
    args = sys.argv[1:] if argv is None else argv
    show_traceback = "--traceback" in args
    session = Session(list(args))
    try:
        status = cli.main(args=argv, prog_name="dmp", standalone_mode=False, obj=session)
    except click.NoSuchOption as exc:
        message = exc.format_message()
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        if exc.ctx and exc.option_name in GLOBAL_FLAGS:  # after a command that lacks it
            command, option = exc.ctx.command_path.removeprefix("dmp "), exc.option_name
            message = f"{command} has no {option} option"
            hint = f"; {option} is a global option: dmp {option} {command} ..."
        session.say(f"dmp: {message}{hint}")
        status = 2
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        session.say(f"dmp: {exc.format_message()}{hint}")
        status = 2
    except click.ClickException as exc:
        session.say(f"dmp: {exc.format_message()}")
        status = exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        session.say("dmp: interrupted")
        _killed_by(signal.SIGINT, session)
    except Terminated as exc:
        session.say(f"dmp: stopped by {exc.signum.name}")
        _killed_by(exc.signum, session)
    except DmpError as exc:
        _flush_stdout(session)  # what it printed before; a write error is said after
        session.say(f"dmp: {exc}")
        status = exc.exit_code
    except StdoutClosed:
        _killed_by(signal.SIGPIPE, session)
    except Exception as exc:
        if show_traceback:
            traceback.print_exc()
        session.say(
            f"dmp: unexpected error: {type(exc).__name__}: {exc} (run with --traceback for details)"
        )
        status = 1
    status = status if isinstance(status, int) else 0
    failed = _flush_stdout(session)
    if failed is not None:
        session.say(f"dmp: {failed}")
        status = status or 1
    if stdio.take_closed_stdin_wanted():  # as sha256sum ends, having read a closed stdin
        session.say(f"dmp: {stdio.STDIN_CLOSED_MESSAGE}")
        status = status or 1
    session.end(f"exit status {status}")
    sys.exit(status)


def _flush_stdout(session: Session) -> WriteError | None:
    """Flush what click printed (--help, --version): a reader gone ends dmp by SIGPIPE;
    a write error is returned, to be said."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _killed_by(signal.SIGPIPE, session)
    except WriteError as exc:
        return exc
    return None


def _killed_by(sig: signal.Signals, session: Session) -> None:
    """The log's last line, then death by ``sig``."""
    session.end(f"ended by {sig.name}")
    _die_of(sig)


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
