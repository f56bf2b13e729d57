"""`dmp vault`: upkeep of the vault itself, beside the manifest commands that fill it.

`dmp vault init` makes a new vault a packing vault, writing its config (the work is
dmp_cli/store/config.py); `dmp vault uploads` lists the incomplete multipart uploads under
the vault (the work is dmp_cli/uploads.py) and aborts the old ones; this module reads
options and prints.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from dmp_cli import runs
from dmp_cli.cli import global_options, quiet_option
from dmp_cli.errors import UsageError
from dmp_cli.options import StoreSpec
from dmp_cli.options import restore_days as restore_days_of
from dmp_cli.options import restore_tier as restore_tier_of
from dmp_cli.packs.config import CONFIG_KEY, DEFAULT_PACK_BELOW, DEFAULT_PACK_TARGET, VaultConfig
from dmp_cli.settings import storage_class_name
from dmp_cli.store import Store, Upload, open_store
from dmp_cli.store.config import described, init_config, read_config
from dmp_cli.upkeep import LEFTOVER_AGE, compact_all, sweep_leftovers
from dmp_cli.uploads import ABORT_AGE, UploadsReport, parse_duration, sweep
from dmp_cli.words import human_bytes, plural

if TYPE_CHECKING:
    from dmp_cli.cli import App


class Duration(click.ParamType):
    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


# A size: bytes, or a whole number of binary units (512KiB, 64MiB, 1GiB; "64 MiB" too).
_UNITS = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}
_SIZE = re.compile(r"(\d+)\s*([a-z]*)", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``64MiB``, ``512KiB``, ``1GiB`` or plain bytes; ValueError for anything else."""
    match = _SIZE.fullmatch(text.strip())
    unit = match[2].lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size: bytes, or with KiB, MiB or GiB (512KiB, 64MiB)")
    return int(match[1]) * _UNITS[unit]


class Size(click.ParamType):
    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def vault() -> None:
    """Look after the vault itself (DMP_VAULT, or s3://etx-dmp-vault/object)."""


@vault.command()
@click.option(
    "--pack-below",
    type=Size(),
    default=DEFAULT_PACK_BELOW,
    metavar="SIZE",
    help="Files strictly smaller than this go into packs; the rest stay one object each "
    "(default: 1MiB; at most half of --pack-target).",
)
@click.option(
    "--pack-target",
    type=Size(),
    default=DEFAULT_PACK_TARGET,
    metavar="SIZE",
    help="The size a pack is closed at (default: 64MiB; 32MiB to 2GiB).",
)
@click.option(
    "--storage-class",
    metavar="CLASS",
    help="The S3 storage class --archive stores packs and files in when neither "
    "--storage-class nor DMP_STORAGE_CLASS gives one (GLACIER_IR, DEEP_ARCHIVE...; default: "
    "the store's, STANDARD). Deleted early, an object is billed its minimum: 30 days in "
    "STANDARD_IA and ONEZONE_IA, 90 in GLACIER_IR and GLACIER, 180 in DEEP_ARCHIVE.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Write the config even though the vault already has one, or already holds objects.",
)
@quiet_option
@global_options
@click.pass_obj
def init(
    app: App, pack_below: int, pack_target: int, storage_class: str | None, force: bool
) -> int:
    """Make the vault a packing vault: write its config, vault.json at its root.

    In a packing vault, files smaller than --pack-below are gathered into tar packs of
    about --pack-target bytes, found again through index objects; the other files stay one
    object per checksum. A vault without a config works as it always has: every file one
    object per checksum.

    Refused, changing nothing, if the vault already has a config or already holds
    objects, unless --force. Sizes are bytes, or with KiB, MiB or GiB.

    \b
    dmp vault init                                          # below 1MiB, packs of 64MiB
    dmp vault init --pack-below 256KiB --pack-target 128MiB
    """
    storage_class = storage_class_name(storage_class)
    try:
        config = VaultConfig(
            pack_below=pack_below, pack_target=pack_target, storage_class=storage_class
        )
    except ValueError as exc:
        given = f"--pack-below {human_bytes(pack_below)}, --pack-target {human_bytes(pack_target)}"
        raise UsageError(f"{given}: {exc}") from None
    store = _vault_store(app)
    try:
        store.check()
        replaced = init_config(store, config, force)
    finally:
        store.close()
    url = store.key_url(CONFIG_KEY)
    app.out.record(
        "summary",
        vault=store.url,
        config=url,
        pack_below=config.pack_below,
        pack_target=config.pack_target,
        index_width=config.index_width,
        replaced=replaced,
        # as in the config: said only when set
        **({"storage_class": config.storage_class} if config.storage_class else {}),
    )
    wrote = "replaced" if replaced else "wrote"
    app.out.info(f"{wrote} {url}: a packing vault, {described(config)}")
    return 0


def _vault_store(app: App) -> Store:
    """The vault's store, as the global options and DMP_* settings name it."""
    settings = app.settings
    spec = StoreSpec(
        vault=settings.vault,
        profile=settings.profile,
        region=settings.region,
        endpoint_url=settings.endpoint_url,
    ).validated()
    return open_store(spec.vault, spec)


@vault.command()
@click.option(
    "--abort",
    is_flag=True,
    help="Abort the uploads listed, freeing the parts S3 keeps (and bills) for them.",
)
@click.option(
    "--older-than",
    type=Duration(),
    metavar="DURATION",
    help="Only uploads begun at least this long ago: 0, 90s, 30m, 12h, 1d, 2w, or several "
    "(1d12h). Default: 0 (all) for a listing, 1d with --abort, so that an upload still "
    "in progress is not cut short.",
)
@quiet_option
@global_options
@click.pass_obj
def uploads(app: App, abort: bool, older_than: timedelta | None) -> int:
    """List the incomplete multipart uploads under the vault (when each began, its age,
    its key and upload id); with --abort, abort them and say how many.

    A process killed while uploading a file of 16 MiB or more (a worker SIGKILLed, a node
    lost) leaves its upload incomplete; S3 keeps its parts, and bills them, until it is
    aborted. dmp aborts such an upload when it uploads the same file again; this command
    finds the rest. A lifecycle rule on the bucket (AbortIncompleteMultipartUpload) does
    the same unattended. A file:// vault writes objects whole and has none.

    \b
    dmp vault uploads                        # all of them
    dmp vault uploads --abort                # abort those begun over a day ago
    dmp vault uploads --abort --older-than 0 # abort all (none must be in progress)
    dmp --json vault uploads                 # one JSON object each, then a summary
    """
    if older_than is None:
        older_than = ABORT_AGE if abort else timedelta(0)
    store = _vault_store(app)
    try:
        if not store.multipart:
            app.out.record("summary", vault=store.url, **_counts(UploadsReport(), older_than))
            app.out.info(f"{store.url}: a directory vault writes objects whole: no uploads to list")
            return 0
        report = sweep(store, older_than, _Printer(app, store.key_url), abort=abort)
    finally:
        store.close()
    app.out.record("summary", vault=store.url, **_counts(report, older_than))
    app.out.info(_summary(store.url, report, older_than, abort))
    return 0


def _packing(app: App, store: Store) -> VaultConfig:
    """The vault's config; a usage error for a vault without one (nothing to look after)."""
    config = read_config(store)
    if config is None:
        raise UsageError(
            f"{store.url} has no config ({CONFIG_KEY}): not a packing vault (see dmp vault init)"
        )
    return config


@vault.command()
@quiet_option
@global_options
@click.pass_obj
def compact(app: App) -> int:
    """Merge each shard's index objects into one, so that planning reads few objects.

    In a packing vault, every pack adds one small index object to each shard of the
    catalog (16, by the checksum's first hex digit) that holds any of its files, and
    --vault, --archive and --fetch read all of a shard's objects. This merges them: the
    merged object is written and read back before the ones it replaces are deleted, so
    archive and fetch runs may go on meanwhile (an object added during the merge is
    merged next time).

    \b
    dmp vault compact           # every shard; run it after big archive runs
    dmp --json vault compact    # one JSON object a shard, then a summary
    """
    store = _vault_store(app)
    try:
        store.check()
        config = _packing(app, store)
        results = []
        for result in compact_all(store, config):
            results.append(result)
            app.out.record(
                "shard",
                shard=result.shard,
                merged=result.merged,
                entries=result.entries,
                key=result.key,
            )
            if result.merged and not app.out.json:
                app.out.write(
                    f"index/{result.shard}/: {result.merged} objects merged into one "
                    f"({result.entries:,} entries)\n".encode()
                )
    finally:
        store.close()
    merged = sum(result.merged for result in results)
    shards = sum(1 for result in results if result.merged)
    app.out.record("summary", vault=store.url, merged=merged, shards=shards)
    app.out.info(
        f"{store.url}: {plural(merged, 'index object', 'index objects')} merged in "
        f"{plural(shards, 'shard', 'shards')}"
    )
    return 0


@vault.command()
@click.option("--remove", is_flag=True, help="Delete the leftover packs listed.")
@click.option(
    "--older-than",
    type=Duration(),
    metavar="DURATION",
    help="Only packs written at least this long ago: 0, 90s, 30m, 12h, 1d, 2w, or several "
    "(1d12h). Default: 0 (all) for a listing, 1d with --remove, so that a pack whose index "
    "objects are being written is left alone.",
)
@quiet_option
@global_options
@click.pass_obj
def leftovers(app: App, remove: bool, older_than: timedelta | None) -> int:
    """List the packs that no index object names; with --remove, delete them.

    A pack is stored before its index objects. A process killed between the two (a
    worker SIGKILLed mid-pack) leaves a pack that is not part of the vault: its files are
    packed again by the next archive run, and the pack only costs its storage. This
    finds such packs.

    \b
    dmp vault leftovers                         # list them
    dmp vault leftovers --remove                # delete those written over a day ago
    dmp vault leftovers --remove --older-than 0 # all (no archive run may be going on)
    """
    if older_than is None:
        older_than = LEFTOVER_AGE if remove else timedelta(0)
    store = _vault_store(app)
    now = datetime.now(UTC)
    try:
        store.check()
        config = _packing(app, store)
        report = sweep_leftovers(store, config, remove, older_than, now)
    finally:
        store.close()
    removed = {leftover.key for leftover in report.removed}
    shown = 0
    for leftover in report.found:
        age = now - leftover.written
        if age < older_than:
            continue
        shown += 1
        url = store.key_url(leftover.key)
        state = "removed" if leftover.key in removed else "left"
        app.out.record(
            "pack",
            key=leftover.key,
            url=url,
            bytes=leftover.size,
            age=int(age.total_seconds()),
            state=state,
        )
        if not app.out.json:
            app.out.write(f"{age_text(age):>9}  {human_bytes(leftover.size):>10}  {url}\n".encode())
    younger = len(report.found) - shown
    app.out.record(
        "summary", vault=store.url, leftovers=shown, removed=len(removed), younger=younger
    )
    found = plural(shown, "leftover pack", "leftover packs")
    text = f"removed {len(removed)} of {found}" if remove else found
    text += f" under {store.url}"
    if younger:
        text += f" ({younger} younger than {age_text(older_than)} left alone)"
    app.out.info(text)
    return 0


@vault.command()
@click.option(
    "-m", "--manifest", "manifest_path", required=True, metavar="FILE", help="The manifest."
)
@click.option("--restore-days", metavar="N", help="Keep each restored copy N days (default 7).")
@click.option("--restore-tier", metavar="TIER", help="Bulk, Standard (the default) or Expedited.")
@quiet_option
@global_options
@click.pass_obj
def restore(
    app: App, manifest_path: str, restore_days: str | None, restore_tier: str | None
) -> int:
    """Request the restores of a manifest's objects in cold storage, and return.

    Each object the manifest's files need (a plain object per checksum, or a pack once
    for all its members) is asked about (a HEAD); one in GLACIER or DEEP_ARCHIVE (or an
    archive tier of INTELLIGENT_TIERING) with no restore under way gets one. Nothing is
    fetched: run `dmp manifest --fetch` once the restores are done (a Standard restore
    from GLACIER typically takes 3-5 hours). Run again, it requests nothing already in
    progress. Exit status 1 if a restore was refused.

    \b
    dmp vault restore -m run42.sha256 --restore-tier Bulk --restore-days 14
    """
    days = restore_days_of(restore_days or 7)
    tier = restore_tier_of(restore_tier or "Standard")
    store = _vault_store(app)
    try:
        store.check()
        counts = runs.stage_restores(manifest_path, store, days, tier)
    finally:
        store.close()
    for refusal in counts.refusals:
        app.out.error(refusal)
    app.out.record(
        "summary",
        vault=store.url,
        requested=counts.requested,
        ongoing=counts.ongoing,
        readable=counts.readable,
        refused=counts.refused,
        tier=tier,
        days=days,
    )
    app.out.info(
        f"{plural(counts.requested, 'restore', 'restores')} requested ({tier} tier, "
        f"{plural(days, 'day', 'days')}), {counts.ongoing} already in progress, "
        f"{counts.readable} readable already, {counts.refused} refused"
    )
    return 1 if counts.refused else 0


class _Printer:
    """Each upload as it is found: a line on stdout, or a JSON object."""

    def __init__(self, app: App, key_url: Callable[[str], str]) -> None:
        self._out = app.out
        self._key_url = key_url
        self._header = not app.out.json

    def __call__(self, upload: Upload, age: timedelta, state: str) -> None:
        initiated = upload.initiated.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        url = self._key_url(upload.key)
        if self._out.json:
            self._out.record(
                "upload",
                key=upload.key,
                url=url,
                upload_id=upload.upload_id,
                initiated=initiated,
                age=int(age.total_seconds()),
                state=state,
            )
            return
        if self._header:
            self._header = False
            self._out.write(_ROW.format("INITIATED", "AGE", "KEY", "UPLOAD ID").encode())
        self._out.write(_ROW.format(initiated, age_text(age), url, upload.upload_id).encode())


_ROW = "{:<20}  {:>9}  {}  {}\n"


def _counts(report: UploadsReport, older_than: timedelta) -> dict[str, int]:
    return {
        "uploads": report.older,
        "aborted": report.aborted,
        "ended": report.ended,
        "younger": report.younger,
        "older_than": int(older_than.total_seconds()),
    }


def _summary(url: str, report: UploadsReport, older_than: timedelta, abort: bool) -> str:
    found = plural(report.older, "incomplete upload", "incomplete uploads")
    younger = f"{report.younger} younger than {age_text(older_than)}"
    if not abort:
        text = f"{found} under {url}"
        return text + (f" ({younger} not listed)" if report.younger else "")
    aborted = plural(report.aborted, "incomplete upload", "incomplete uploads")
    text = f"aborted {aborted} under {url}"
    if report.ended:
        text += f"; {report.ended} had ended meanwhile"
    return text + (f"; {younger} left alone" if report.younger else "")


def age_text(age: timedelta) -> str:
    """``12s``, ``4m 10s``, ``3h 05m``, ``12d 22h``: the two largest units."""
    seconds = int(age.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"
