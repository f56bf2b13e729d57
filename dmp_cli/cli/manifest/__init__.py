"""`dmp manifest`: the command, its options, and which mode runs.

Each mode family has its module: ``create`` (--create), ``check`` (--check), and
``transfer`` (--vault, --archive and --fetch). They read options, print lines and
summaries and pick the exit status; the work is a run of dmp_cli/runs/.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from dmp_cli import runs
from dmp_cli.cli import VERBOSITY, global_options, quiet_option
from dmp_cli.cli.manifest import check, create
from dmp_cli.errors import DmpError, UsageError
from dmp_cli.manifest import FORMATS

if TYPE_CHECKING:
    from dmp_cli.cli import App

MODES = ("create", "check", "vault", "archive", "fetch")

# Which options belong to which mode; any other combination is a usage error.
MODE_OPTIONS = {
    "create": {
        "dirs",
        "recursive",
        "files_from",
        "null",
        "fmt",
        "detach",
        "meta",
        "meta_file",
        "update",
    },
    "check": {"status", "strict", "ignore_missing", "warn", "detach", "meta", "meta_file"},
    "vault": {"strict", "detach"},
    "archive": {"path", "all_files", "dry_run", "detach", "meta", "meta_file", "storage_class"},
    "fetch": {
        "overwrite",
        "dry_run",
        "absolute_names",
        "detach",
        "meta",
        "meta_file",
        "owner_names",
        "restore_days",
        "restore_tier",
        "no_wait",
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
    "update": "--update",
    "restore_days": "--restore-days",
    "restore_tier": "--restore-tier",
    "no_wait": "--no-wait",
    "storage_class": "--storage-class",
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
    "--update",
    metavar="OLD",
    help="--create: reuse the checksums of the earlier manifest OLD (with its companion "
    "OLD.meta) for files unchanged since: same size, mtime, ctime, inode and device. They "
    "are not read; every other file is hashed. The manifest written is the one a full "
    "--create would write.",
)
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
    "--storage-class",
    metavar="CLASS",
    help="--archive: store the files' objects (and packs) in this S3 storage class: "
    "STANDARD_IA, INTELLIGENT_TIERING, GLACIER_IR, GLACIER, DEEP_ARCHIVE, or a store's own "
    "(default: DMP_STORAGE_CLASS, else the vault config's, else the store's, STANDARD). "
    "Deleted early, an object is billed its minimum: 30 days in STANDARD_IA and ONEZONE_IA, "
    "90 in GLACIER_IR and GLACIER, 180 in DEEP_ARCHIVE. Ignored for a file:// vault.",
)
@click.option(
    "--overwrite", is_flag=True, help="--fetch: replace local files whose checksum differs."
)
@click.option(
    "--restore-days",
    metavar="N",
    help="--fetch from cold storage (GLACIER, DEEP_ARCHIVE): keep each restored copy N "
    "days (default 7).",
)
@click.option(
    "--restore-tier",
    metavar="TIER",
    help="--fetch from cold storage: Bulk, Standard (the default) or Expedited.",
)
@click.option(
    "--no-wait",
    is_flag=True,
    help="--fetch: request the restores of objects in cold storage, fetch what is "
    "readable now, and end (exit status 3 if files wait for their restores).",
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
                         [--storage-class CLASS]
      dmp manifest --fetch   --manifest FILE [--overwrite]
                         [--restore-days N] [--restore-tier TIER] [--no-wait]

    Patterns are expanded by dmp ('data/*.csv', '**/*.h5'), so quote them when the
    shell's argument list would be too long. Exit status: 0 success, 1 a failed check or
    file error, 2 a usage error, 3 --fetch --no-wait left files waiting for restores.

    Settings (environment): DMP_VAULT, the vault's root (s3://bucket/prefix or
    file:///dir); DMP_ARCHIVE_DEFAULT, an --archive destination other than the vault;
    DMP_CONDITIONAL_PUT=auto|on|off, whether --archive trusts the store to refuse a
    conditional PUT (If-None-Match: *) of an object it has: auto learns it once per
    process by putting a tiny probe object twice (then deleting it), on trusts the
    store without a probe, off asks first (HEAD before PUT) always; default auto.
    DMP_MULTIPART_THRESHOLD and DMP_MULTIPART_CHUNKSIZE, in bytes (at least 5 MiB):
    files this big go to S3 in parts of that size (default 16 MiB each).
    DMP_VAULT_PLANNING=auto|head|list, how --vault and --archive learn what the vault
    holds: auto takes whichever needs fewer requests, head asks a HEAD per checksum, list
    lists the vault's keys; default auto (-v says which, and why).
    DMP_RESTORE_POLL, --fetch's pauses between polls of restores from cold storage, in
    seconds, comma-separated, the last repeated (default 60,120,300,600).
    DMP_STORAGE_CLASS, --archive's storage class when --storage-class gives none.
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
        return create.run(app, patterns, manifest_path, **options)
    if not manifest_path:
        raise UsageError(f"--{mode} needs --manifest FILE")
    if options.get("detach"):
        runs.refuse_stdin(manifest_path)  # said before the broker is asked
    if mode == "check":
        return check.run(app, manifest_path, **options)
    from dmp_cli.cli.manifest import transfer

    return transfer.run(app, mode, manifest_path, **options)


__all__ = ["DmpError", "manifest"]
