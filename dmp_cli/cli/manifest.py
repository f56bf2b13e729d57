"""`dmp manifest`: create, check, and (in cli/vault.py) vault, archive and fetch."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from dmp_cli import runs
from dmp_cli.check import CheckCounts
from dmp_cli.cli import VERBOSITY, global_options, quiet_option
from dmp_cli.cli.output import Output, Pace
from dmp_cli.errors import DmpError, UsageError
from dmp_cli.inputs import Inputs
from dmp_cli.manifest import FORMATS, count_lines
from dmp_cli.meta import companion_of
from dmp_cli.rows import Row
from dmp_cli.words import human_bytes, plural

if TYPE_CHECKING:
    from dmp_cli.cli import App

MODES = ("create", "check", "vault", "archive", "fetch")

# Which options belong to which mode; any other combination is a usage error.
MODE_OPTIONS = {
    "create": {"dirs", "recursive", "files_from", "null", "fmt", "detach", "meta", "meta_file"},
    "check": {"status", "strict", "ignore_missing", "warn", "detach", "meta", "meta_file"},
    "vault": {"strict", "detach"},
    "archive": {"path", "all_files", "dry_run", "detach", "meta", "meta_file"},
    "fetch": {
        "overwrite",
        "dry_run",
        "absolute_names",
        "detach",
        "meta",
        "meta_file",
        "owner_names",
    },
}
OPTION_NAMES = {
    "dirs": "--dir",
    "recursive": "--recursive",
    "files_from": "--files-from",
    "null": "-0/--null",
    "fmt": "--format",
    "status": "--status",
    "strict": "--strict",
    "ignore_missing": "--ignore-missing",
    "warn": "--warn",
    "path": "--path",
    "all_files": "--all",
    "dry_run": "--dry-run",
    "detach": "--detach",
    "overwrite": "--overwrite",
    "absolute_names": "--absolute-names",
    "meta": "--meta/--no-meta",
    "meta_file": "--meta-file",
    "owner_names": "--owner-names",
}


def _last_verbosity_wins(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    """Note the order of --quiet, --status and --warn: in sha256sum the last one given wins.

    click runs these callbacks in command-line order (-q/--quiet: see cli.quiet_option)."""
    if value:
        ctx.meta.setdefault(VERBOSITY, []).append(param.name)
    return value


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--create", is_flag=True, help="Hash files and write a manifest.")
@click.option(
    "--check",
    is_flag=True,
    help="Verify files against a manifest, exactly as `sha256sum --check` does.",
)
@click.option("--vault", is_flag=True, help="Report which checksums are already in the vault.")
@click.option("--archive", is_flag=True, help="Upload the files the vault lacks.")
@click.option("--fetch", is_flag=True, help="Bring files back from the vault, verified.")
@click.option(
    "-m",
    "--manifest",
    "manifest_path",
    metavar="FILE",
    help="The manifest to read, or with --create to write (default: stdout). "
    "'-' is stdin or stdout.",
)
@click.option(
    "--dir",
    "dirs",
    multiple=True,
    metavar="DIR",
    help="--create: include the regular files in DIR (repeatable).",
)
@click.option(
    "-r",
    "--recursive",
    is_flag=True,
    help="--create: with --dir, every regular file below DIR (symlinked "
    "directories are not descended).",
)
@click.option(
    "--files-from",
    metavar="FILE",
    help="--create: read file names from FILE, one "
    "a line ('-' for stdin); with -0, NUL-separated, as `find -print0` writes.",
)
@click.option("-0", "--null", is_flag=True, help="--create: --files-from names end in NUL.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(sorted(FORMATS)),
    default=None,
    help="--create: 'dmp' (quoted paths, the default) or 'sha256sum' (the lines "
    "GNU sha256sum writes).",
)
@click.option(
    "--status",
    is_flag=True,
    callback=_last_verbosity_wins,
    help="--check: print nothing; the exit status tells.",
)
@click.option(
    "--strict", is_flag=True, help="--check: improperly formatted lines are an error (exit 1)."
)
@click.option("--ignore-missing", is_flag=True, help="--check: skip files that don't exist.")
@click.option(
    "-w",
    "--warn",
    is_flag=True,
    callback=_last_verbosity_wins,
    help="--check: warn about each improperly formatted line.",
)
@click.option(
    "--path",
    metavar="s3://BUCKET/PREFIX",
    help="--archive: upload to PREFIX/<manifest path> (and into the vault by server-side copy).",
)
@click.option(
    "--all",
    "all_files",
    is_flag=True,
    help="--archive: upload every file to --path, also those already in the vault.",
)
@click.option(
    "--overwrite", is_flag=True, help="--fetch: replace local files whose checksum differs."
)
@click.option(
    "-n", "--dry-run", is_flag=True, help="--archive/--fetch: list what would move, move nothing."
)
@click.option(
    "--absolute-names",
    is_flag=True,
    help="--fetch: allow absolute paths and '..' that leaves the working directory.",
)
@click.option(
    "--detach",
    is_flag=True,
    help="With DMP_BROKER_URL: submit the job, print its id and return; a coordinator "
    "on the fleet runs it, and another takes over if it dies (see `dmp job`). "
    "--create --detach needs --manifest FILE.",
)
@click.option(
    "--meta/--no-meta",
    "meta",
    default=None,
    help="--create: record modes, times, owners, symbolic links and directories in a "
    "companion file, MANIFEST.meta (the default for --dir walks into a manifest file); "
    "--check: compare them too; --fetch/--archive: --no-meta ignores a companion found "
    "beside the manifest.",
)
@click.option(
    "--meta-file",
    metavar="FILE",
    help="The companion file of metadata (default: the manifest's name + '.meta'); "
    "with --create, implies --meta.",
)
@click.option(
    "--owner-names",
    is_flag=True,
    help="--fetch, as root: give files the recorded owner and group by name, "
    "not by number (tar's default).",
)
@quiet_option
@global_options
@click.argument("patterns", nargs=-1, metavar="[FILE|PATTERN]...")
@click.pass_obj
def manifest(app: App, patterns: tuple[str, ...], manifest_path: str | None, **options) -> int:
    """Make, check and use manifests: lines of a sha256 and a quoted path.

    Exactly one mode per call:

    \b
      dmp manifest --create PATTERN... [--dir DIR]... [--recursive] [--manifest FILE]
      dmp manifest --check   --manifest FILE
      dmp manifest --vault   --manifest FILE
      dmp manifest --archive --manifest FILE [--path s3://bucket/prefix] [--all]
      dmp manifest --fetch   --manifest FILE [--overwrite]

    Patterns are expanded by dmp ('data/*.csv', '**/*.h5'), so quote them when the
    shell's argument list would be too long. Exit status: 0 success, 1 a failed check or
    file error, 2 a usage error.

    Settings (environment): DMP_VAULT, the vault's root (s3://bucket/prefix or
    file:///dir); DMP_ARCHIVE_DEFAULT, an --archive destination other than the vault;
    DMP_CONDITIONAL_PUT=auto|on|off, whether --archive trusts the store to refuse a
    conditional PUT (If-None-Match: *) of an object it has: auto learns it once per
    process by putting a tiny probe object twice (then deleting it), on trusts the
    store without a probe, off asks first (HEAD before PUT) always; default auto.
    DMP_MULTIPART_THRESHOLD and DMP_MULTIPART_CHUNKSIZE, in bytes (at least 5 MiB):
    files this big go to S3 in parts of that size (default 16 MiB each).
    """
    chosen = [mode for mode in MODES if options.pop(mode)]
    if len(chosen) != 1:
        raise UsageError("give exactly one of --create, --check, --vault, --archive, --fetch")
    mode = chosen[0]
    for name, value in options.items():
        if value and name not in MODE_OPTIONS[mode]:
            raise UsageError(f"{OPTION_NAMES[name]} does not apply to --{mode}")
    if patterns and mode != "create":
        raise UsageError(f"--{mode} takes no file arguments (use --manifest FILE)")
    if mode == "create":
        return create(app, patterns, manifest_path, **options)
    if not manifest_path:
        raise UsageError(f"--{mode} needs --manifest FILE")
    if options.get("detach"):
        runs.refuse_stdin(manifest_path)  # said before the broker is asked
    if mode == "check":
        return check(app, manifest_path, **options)
    from dmp_cli.cli import vault

    return vault.run(app, mode, manifest_path, **options)


def create(
    app: App,
    patterns: tuple[str, ...],
    manifest_path: str | None,
    *,
    dirs: tuple[str, ...],
    recursive: bool,
    files_from: str | None,
    null: bool,
    fmt: str | None,
    detach: bool = False,
    meta: bool | None = None,
    meta_file: str | None = None,
    **_: object,
) -> int:
    inputs = Inputs(list(patterns), list(dirs), recursive, files_from, null)
    meta_path = _create_meta_path(manifest_path, meta, meta_file, walks=bool(dirs))
    if not inputs.given():
        raise UsageError("--create needs files, patterns, --dir DIR or --files-from FILE")
    if recursive and not dirs:
        raise UsageError("--recursive needs --dir DIR")
    if null and not files_from:
        raise UsageError("-0/--null needs --files-from FILE")
    if detach:
        from dmp_cli.cli.job import detach as submit_job
        from dmp_cli.cli.job import require_broker

        require_broker(app)
        if not manifest_path or manifest_path == "-":
            raise UsageError("--create --detach needs --manifest FILE (the fleet writes it)")
        if files_from == "-":
            raise UsageError("--create --detach cannot read --files-from standard input")
        return submit_job(
            app,
            lambda executor: runs.submit_create(
                inputs, manifest_path, executor, fmt=fmt or "dmp", meta=meta_path
            ),
        )
    out: Output = app.out
    if meta_path and out.json and (not manifest_path or manifest_path == "-"):
        raise UsageError("--meta needs a manifest file with --json (stdout holds the JSON)")
    started = time.monotonic()
    manifest_line = FORMATS[fmt or "dmp"]

    def on_row(row: Row) -> None:
        out.record("file", path=row["path"], digest=row["digest"], bytes=row["bytes"], status="ok")
        if out.log:  # the manifest's line, which the run writes itself
            out.result(manifest_line(row["digest"], row["path"]), show=False)

    with app.executor() as executor, out.progress("hashing") as bar:
        report = runs.create(
            inputs,
            executor,
            manifest=manifest_path,
            stream=None if out.json else out.stdout,
            fmt=fmt or "dmp",
            listener=runs.Listener(
                on_row=on_row,
                on_progress=bar.update,
                on_problem=out.file_error,
                on_total=bar.expect if bar.active else None,
            ),
            meta=meta_path,
            leave_out=[out.log.path] if out.log else [],
        )
    if report.error:
        out.error(report.error)
        return report.status
    pace = Pace.since(started, report.files, report.bytes)
    out.record(
        "summary", files=report.files, bytes=report.bytes, manifest=manifest_path, **pace.fields()
    )
    # Like sha256sum, --create says nothing when all is well: the summary is for -v.
    out.info(
        f"{plural(report.files, 'file', 'files')}, {human_bytes(report.bytes)} hashed "
        + pace.text(),
        show=bool(out.verbose),
    )
    return report.status


def _create_meta_path(
    manifest: str | None, meta: bool | None, meta_file: str | None, walks: bool
) -> str | None:
    """Where --create writes its companion of metadata, if it writes one: by default,
    for --dir walks into a manifest file (a tree, which a restore should bring back as
    tar would); else only when asked."""
    if meta is False:
        if meta_file:
            raise UsageError("--meta-file and --no-meta contradict each other")
        return None
    if meta_file:
        if meta_file == "-":
            raise UsageError("--meta-file needs a file name (the manifest may use stdout)")
        return meta_file
    to_file = bool(manifest) and manifest != "-"
    if meta is None and walks and to_file:
        return companion_of(str(manifest))
    if not meta:
        return None
    if not to_file:
        raise UsageError("--meta with the manifest on stdout needs --meta-file FILE")
    return companion_of(str(manifest))


def _check_name(path: str, escape: bool) -> bytes:
    name = os.fsencode(path)
    if escape and b"\n" in name:
        # coreutils 9.1 escapes only when the name holds a newline, and then all three.
        name = name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
        return b"\\" + name
    return name


def check(
    app: App,
    manifest_path: str,
    *,
    status: bool,
    strict: bool,
    ignore_missing: bool,
    warn: bool,
    detach: bool = False,
    meta: bool | None = None,
    meta_file: str | None = None,
    **_: object,
) -> int:
    """`sha256sum --check`, byte for byte: the same lines, warnings and exit status;
    with --meta, a line for each entry whose recorded metadata differs."""
    meta_path = meta_file or (companion_of(manifest_path) if meta else None)
    if detach:
        return _detach_check(
            app, manifest_path, strict=strict, ignore_missing=ignore_missing, meta=meta_path
        )
    out: Output = app.out
    given = click.get_current_context().meta.get(VERBOSITY)
    last = given[-1] if given else None
    quiet, status, warn = (last == "quiet", last == "status", last == "warn")
    shown = runs.shown_manifest(manifest_path)
    on_row = _check_printer(out, shown, quiet=quiet, status=status, warn=warn)
    started = time.monotonic()
    total = count_lines(manifest_path) if out.wants_progress() else None
    with app.executor() as executor, out.progress("checking", total) as bar:
        listener = runs.Listener(
            on_row=on_row,
            on_progress=bar.update,
            on_meta=_meta_printer(out, status=status),
            on_total=bar.expect if bar.active else None,
        )
        report = runs.check(
            manifest_path,
            executor,
            strict=strict,
            ignore_missing=ignore_missing,
            listener=listener,
            meta=meta_path,
        )
    _check_summary(out, report, started, status=status)
    return report.status


def _check_printer(
    out: Output, shown: str, *, quiet: bool, status: bool, warn: bool
) -> Callable[[Row], None]:
    """What `sha256sum --check` prints for a line, as a row comes back."""

    def on_row(row: Row) -> None:
        kind = _CHECK_KINDS.get(row["status"], "unreadable")
        if kind == "misformatted":
            out.error(
                f"{shown}: {row['line']}: improperly formatted SHA256 checksum line", show=warn
            )
            return
        path = str(row["path"])
        out.record(
            "file",
            path=path,
            status=kind,
            digest=row.get("digest"),
            expected=row.get("expected"),
            bytes=row.get("bytes", 0),
            error=row.get("error"),
        )
        if kind == "unreadable":
            out.file_error(path, str(row.get("error")), show=not out.json)
        line = _check_name(path, escape=True) + _VERDICTS[kind]
        out.result(line, show=not (status or (kind == "ok" and quiet)))

    return on_row


def _meta_printer(out: Output, *, status: bool) -> Callable[[str, list[str]], None]:
    """A line for an entry whose metadata differs from the companion's record: the
    content lines stay sha256sum's, these have their own word."""

    def on_meta(path: str, found: list[str]) -> None:
        if out.json:
            out.record("file", path=path, status="metadata", differences=found)
        elif not status:
            out.write(_check_name(path, escape=True) + b": METADATA " + ", ".join(found).encode())
            out.write(b"\n")

    return on_meta


# How a check row counts (every other status: the file could not be read), and its line.
_CHECK_KINDS = {"ok": "ok", "failed": "failed", "misformatted": "misformatted"}
_VERDICTS = {"ok": b": OK\n", "failed": b": FAILED\n", "unreadable": b": FAILED open or read\n"}


def _detach_check(
    app: App, manifest_path: str, *, strict: bool, ignore_missing: bool, meta: str | None
) -> int:
    """Submit the check to the fleet; `dmp job watch ID` follows it to the end, and fails
    it by the same rules as an attached check (--strict, --ignore-missing, and with
    --meta any entry whose metadata differs)."""
    from dmp_cli.cli.job import detach

    return detach(
        app,
        lambda executor: runs.submit_check(
            manifest_path, executor, strict=strict, ignore_missing=ignore_missing, meta=meta
        ),
    )


def _check_summary(out: Output, report: runs.CheckReport, started: float, *, status: bool) -> None:
    """sha256sum's warnings (none with --status), then dmp's own summary line, which
    sha256sum has not: in the log, and on stderr with -v."""
    counts = report.counts
    checked = counts.matched + counts.mismatched + counts.unreadable
    pace = Pace.since(started, checked, counts.bytes)
    out.record(
        "summary",
        ok=counts.matched,
        failed=counts.mismatched,
        unreadable=counts.unreadable,
        misformatted=counts.misformatted,
        ignored=counts.ignored,
        bytes=counts.bytes,
        **({} if report.metadata is None else {"metadata": report.metadata}),
        **pace.fields(),
    )
    if counts.properly_formatted == 0:
        out.error(str(report.error))
        return
    if counts.misformatted:
        out.warning(
            plural(counts.misformatted, "line is", "lines are"),
            " improperly formatted",
            show=not status,
        )
    if counts.unreadable:
        out.warning(
            plural(counts.unreadable, "listed file", "listed files"),
            " could not be read",
            show=not status,
        )
    if counts.mismatched:
        out.warning(
            plural(counts.mismatched, "computed checksum", "computed checksums"),
            " did NOT match",
            show=not status,
        )
    if report.metadata:
        out.warning(
            plural(report.metadata, "entry's metadata", "entries' metadata"), " did NOT match"
        )
    if report.error:
        out.error(report.error, show=not status)
    out.info(
        f"{plural(checked, 'file', 'files')} checked ({_check_details(counts)}), "
        f"{human_bytes(counts.bytes)} read {pace.text()}",
        show=bool(out.verbose) and not status,
    )


def _check_details(counts: CheckCounts) -> str:
    """``3 OK, 1 FAILED, 2 could not be read, 1 line improperly formatted``."""
    details = [f"{counts.matched} OK"]
    if counts.mismatched:
        details.append(f"{counts.mismatched} FAILED")
    if counts.unreadable:
        details.append(f"{counts.unreadable} could not be read")
    if counts.ignored:
        details.append(f"{counts.ignored} missing, ignored")
    if counts.misformatted:
        details.append(plural(counts.misformatted, "line", "lines") + " improperly formatted")
    return ", ".join(details)


__all__ = ["DmpError", "manifest"]
