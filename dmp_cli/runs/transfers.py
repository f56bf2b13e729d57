"""--vault, --archive and --fetch: a manifest's files asked about, uploaded or brought
back, a row for each in manifest order, then the verdict."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import partial

from dmp_cli.errors import ManifestError, RunStopped, StoreError
from dmp_cli.executor import Executor, LocalExecutor, default_jobs, io_threads_for
from dmp_cli.manifest import open_manifest, parse_lines
from dmp_cli.options import Options, StoreSpec, Work
from dmp_cli.packs.config import VaultConfig
from dmp_cli.restore import restore_tree
from dmp_cli.retry import with_retries
from dmp_cli.rows import Item, Row, Status
from dmp_cli.rules import Command, judge
from dmp_cli.runs.companion import CompanionOutcome, archive_companion, open_for
from dmp_cli.runs.entries import EntryReader, Tally, retry_items
from dmp_cli.runs.packing import (
    Packed,
    annotate,
    manifest_checksums,
    pack_missing,
    plan_reads,
    read_catalog,
)
from dmp_cli.runs.planning import Plan, plan
from dmp_cli.runs.report import Listener, Report, shown_manifest
from dmp_cli.runs.restoring import RESTORE_PENDING_EXIT, RestoreCounts, Restoring, stop_cold
from dmp_cli.runs.totals import Expected
from dmp_cli.settings import Settings, restore_poll, vault_planning_mode
from dmp_cli.store import StorePool
from dmp_cli.store.config import read_config
from dmp_cli.urls import parse_url


@dataclass
class TransferReport(Report):
    manifest: EntryReader = field(default_factory=EntryReader)
    tally: Tally = field(default_factory=Tally)
    dry_run: bool = False
    companion: CompanionOutcome | None = None
    planned: str = "head"  # how the vault was asked: "head", or "list" (dmp_cli.runs.planning)
    restoring: RestoreCounts | None = None  # --fetch: the objects met in cold storage


def transfer(
    command: Command,
    manifest: str,
    executor: Executor,
    spec: StoreSpec,
    options: Options | None = None,
    listener: Listener | None = None,
    detached: bool = False,
    meta: str | None = None,
    planning: str | None = None,
    on_note: Callable[[str], None] | None = None,
    on_restore: Callable[[str], None] | None = None,
    on_cold: Callable[[Row], bool] | None = None,
) -> TransferReport:
    """--vault (ask the vault about each checksum, once per checksum), --archive (upload
    each checksum the vault lacks, or to another destination: a rerun uploads nothing) or
    --fetch (bring each file back, verified): the per-file rows in manifest order, a later
    copy of content answered from the first one's row (unless ``detached``: a job's
    coordinator, which can be taken over, asks about each entry on its own), then the
    verdict. With ``meta``, a companion file of metadata (checked against the manifest
    first): --fetch restores what it records, --archive stores it in the vault too.
    --fetch restores the objects it finds in cold storage (dmp_cli.runs.restoring), and
    ``on_restore`` hears how that goes; a detached job's coordinator takes the rows of
    files whose objects are cold with ``on_cold`` (it waits for their restores itself),
    and without one, the first such row stops the run."""
    hear = listener or Listener()
    options = (options or Options()).validated(spec.validated())
    shown = shown_manifest(manifest)
    stream = open_manifest(manifest, shown)
    companion = open_for(meta, manifest, shown, stream)
    reader = entry_reader(command, options, detached=detached)
    with stream:
        preflight(executor.stores, spec)
        store = executor.stores.vault(spec).store
        config = with_retries(lambda: read_config(store))
        if command is Command.ARCHIVE:
            options = _storage_class(options, config, spec, on_note)
        way = _plan(command, manifest, executor, spec, options, detached, planning, on_note)
        packed = None
        try:
            if config is not None:
                packed = _packed(
                    command, manifest, executor, spec, options, config, way, detached, on_note
                )
            items = way.annotate(reader.items(parse_lines(stream)))
            if packed is not None:
                items = annotate(items, packed)
            if companion is not None and command is Command.FETCH:
                items = companion.attach(items)
            tally, restored = _run(
                command, reader, items, executor, spec, options, hear, detached, on_restore, on_cold
            )
        finally:
            way.close()
            if packed is not None:
                packed.close()
    if reader.entries == 0:
        raise ManifestError(f"{shown}: no properly formatted SHA256 checksum lines found")
    counts = {**tally.counts, Status.MISFORMATTED: reader.misformatted}
    if restored is not None and restored.waiting_files:  # neither done nor failed: later
        counts["waiting"] = restored.waiting_files
    verdict = judge(command, counts, strict=options.strict)
    if restored is not None and restored.waiting and verdict.status == 0:
        verdict = replace(verdict, status=RESTORE_PENDING_EXIT)  # --no-wait: run it again
    outcome = None
    if companion is not None and command is Command.FETCH:
        outcome = CompanionOutcome(companion.path)
        if not options.dry_run:
            outcome.tree = restore_tree(companion.records(), options, hear.on_problem)
            if outcome.tree.failed:
                verdict = replace(verdict, status=1, failed=verdict.failed + outcome.tree.failed)
    elif companion is not None and command is Command.ARCHIVE:
        outcome = archive_companion(companion.path, executor.stores, spec, options)
        if outcome.status == "failed" and detached:  # the job fails with its error
            raise StoreError(outcome.error or "the companion was not archived")
        if outcome.status == "failed":
            verdict = replace(verdict, status=1, failed=verdict.failed + 1)
    return TransferReport(
        command, verdict, None, reader, tally, options.dry_run, outcome, way.way, restored
    )


vault = partial(transfer, Command.VAULT)
archive = partial(transfer, Command.ARCHIVE)
fetch = partial(transfer, Command.FETCH)


def transfer_stores(
    command: Command, settings: Settings, options: Options, path: str | None = None
) -> tuple[StoreSpec, Options]:
    """Where the stores of a vault command are (the settings, and --path for an archive)
    and what it does, validated: a bad URL or combination is a usage error now."""
    dest, mode = None, None
    if command is Command.ARCHIVE and path:
        dest, mode = path, "path"
    elif command is Command.ARCHIVE and settings.archive_default:
        dest, mode = settings.archive_default, "default"
    spec = StoreSpec(
        vault=settings.vault,
        dest=dest,
        profile=settings.profile,
        region=settings.region,
        endpoint_url=settings.endpoint_url,
        conditional_put=settings.conditional_put,
        multipart_threshold=settings.multipart_threshold,
        multipart_chunksize=settings.multipart_chunksize,
        # One connection per transfer thread (the embedded executor's rule).
        concurrency=io_threads_for(settings.jobs or default_jobs()),
    ).validated()
    if command is Command.ARCHIVE and options.storage_class is None:
        options = replace(options, storage_class=settings.storage_class)
    return spec, replace(options, dest_mode=mode).validated(spec)


def _storage_class(
    options: Options,
    config: VaultConfig | None,
    spec: StoreSpec,
    on_note: Callable[[str], None] | None,
) -> Options:
    """--archive's storage class: the one asked for (--storage-class, DMP_STORAGE_CLASS),
    else the vault config's, else none (the store's default). A directory has none: a
    class asked of a file:// vault is ignored, and -v says so."""
    if options.storage_class is None and config is not None and config.storage_class:
        options = replace(options, storage_class=config.storage_class)
    if options.storage_class and parse_url(spec.vault).scheme == "file":
        if on_note is not None:
            on_note(
                f"storage class {options.storage_class} ignored: {spec.vault} is a "
                "directory, which has no storage classes"
            )
        options = replace(options, storage_class=None)
    return options


def _plan(
    command: Command,
    manifest: str,
    executor: Executor,
    spec: StoreSpec,
    options: Options,
    detached: bool,
    planning: str | None,
    on_note: Callable[[str], None] | None,
) -> Plan:
    """How this run asks the vault (``planning``: the way asked for, else
    DMP_VAULT_PLANNING, else chosen). A detached job's coordinator lists with threads of
    its own process, not through the fleet: its run goes on from checkpoints that count
    the job's own items, which a listing's work would not fit. A coordinator that takes
    the job over plans again, from the vault as it is then."""
    if command is Command.FETCH:
        return Plan("head", "")
    mode = vault_planning_mode(planning or os.environ.get("DMP_VAULT_PLANNING") or "auto")
    note = on_note or (lambda text: None)
    shown = shown_manifest(manifest)
    if detached:
        with LocalExecutor() as lister:
            return plan(command, manifest, lister, spec, options, mode, note, shown)
    return plan(command, manifest, executor, spec, options, mode, note, shown)


def _packed(
    command: Command,
    manifest: str,
    executor: Executor,
    spec: StoreSpec,
    options: Options,
    config: VaultConfig,
    way: Plan,
    detached: bool,
    on_note: Callable[[str], None] | None = None,
) -> Packed:
    """In a packing vault: which of the manifest's checksums are packed (the catalog's
    shards that hold any of them, read), and for --archive, the small files the vault
    lacks packed first. A detached job's coordinator packs with threads of its own, as
    it plans (see ``_plan``)."""
    note = on_note or (lambda text: None)
    shown = shown_manifest(manifest)
    store = executor.stores.vault(spec).store
    packed = Packed()
    try:
        checksums = manifest_checksums(manifest, shown)
        try:
            sizes = read_catalog(store, config, checksums, packed)
        finally:
            checksums.close()
        if command is Command.FETCH:
            plan_reads(packed, sizes)
        if command is Command.ARCHIVE and options.dest_mode is None and not options.dry_run:
            if detached:
                with LocalExecutor() as packer:
                    pack_missing(manifest, shown, packer, spec, options, config, way, packed, note)
            else:
                pack_missing(manifest, shown, executor, spec, options, config, way, packed, note)
    except BaseException:
        packed.close()
        raise
    return packed


def entry_reader(command: Command, options: Options, detached: bool) -> EntryReader:
    # Attached, a later entry with the same content is answered from the first one's row
    # (uploaded once). A detached job's rows are counted, never gathered, so each entry
    # there is asked about on its own; a copy finds its content archived and is skipped.
    dedupe = not detached and (
        command is Command.VAULT or (command is Command.ARCHIVE and not options.all)
    )
    return EntryReader(dedupe=dedupe, with_size=command is Command.ARCHIVE)


def preflight(stores: StorePool, spec: StoreSpec) -> None:
    """One clear line now, rather than the same failure for every file. The stores are
    the ones the operations will use in this process (their clients made once)."""
    stores.vault(spec).check()
    if spec.dest:
        # Like a prefix in a bucket, an archive directory is made by the first upload.
        stores.dest(spec).check(create=True)


def _run(
    command: Command,
    reader: EntryReader,
    items: Iterable[Item],
    executor: Executor,
    spec: StoreSpec,
    options: Options,
    hear: Listener,
    detached: bool,
    on_restore: Callable[[str], None] | None,
    on_cold: Callable[[Row], bool] | None = None,
) -> tuple[Tally, RestoreCounts | None]:
    """The operation over the items. --fetch fetches what is readable first, then has
    the objects met in cold storage restored and fetches their files (attached); a
    detached job's fetch hands the rows of such files to ``on_cold`` (its coordinator
    waits for the restores: ``dmp_tasks.coordinator``), or without it stops at the first
    such file, in one line."""
    if command is not Command.FETCH or options.dry_run:
        return _execute(command, reader, items, executor, spec, options, hear), None
    if detached:
        took_back = on_cold or stop_cold
        done = _execute(command, reader, items, executor, spec, options, hear, None, took_back)
        return done, None
    restoring = Restoring(
        executor.stores.vault(spec).store,
        options.restore_days,
        options.restore_tier,
        options.wait,
        restore_poll(os.environ.get("DMP_RESTORE_POLL")),
        on_restore,
    )
    tally = Tally(archive=False, dedupe=reader.dedupe)
    try:
        _execute(command, reader, items, executor, spec, options, hear, tally, restoring.took_back)
        later = replace(hear, on_total=None)  # the files' total counted them already
        counts = restoring.settle(
            lambda again: _execute(
                command, reader, again, executor, spec, options, later, tally, restoring.took_back
            )
        )
    finally:
        tally.close()
    return tally, counts


def _execute(
    command: Command,
    reader: EntryReader,
    items: Iterable[Item],
    executor: Executor,
    spec: StoreSpec,
    options: Options,
    hear: Listener,
    tally: Tally | None = None,
    took_back: Callable[[Row], bool] | None = None,
) -> Tally:
    """The operation over the items, counted in ``tally`` (a new one, closed at the end,
    if none is given); a row ``took_back`` takes is not the file's outcome (yet)."""
    owned = tally is None
    tally = tally or Tally(archive=command is Command.ARCHIVE, dedupe=reader.dedupe)
    work = Work.of(command.operation, spec, options)
    expected = Expected(hear.on_total) if hear.on_total else None
    first = True
    try:
        while True:
            retries: list[Row] = []
            if expected:
                items = expected.items(items, more_files=first)
            for raw in executor.map(work, items, on_bytes=hear.on_bytes):
                if raw.get("fatal"):
                    raise RunStopped(str(raw.get("error")))
                if expected:
                    expected.done(raw)
                if took_back is not None and raw.get("cold") and took_back(raw):
                    continue
                if tally.needs_retry(raw):
                    retries.append(raw)
                    continue
                row = tally.add(raw)
                hear.on_progress(1, raw.get("bytes") or 0)
                hear.on_row(row)
            if not retries:
                return tally
            # Each round retries only copies of content whose first file failed in the
            # round before, so the rounds end.
            items = retry_items(retries, with_size=True)
            first = False
    finally:
        if owned:
            tally.close()  # the first rows' outcomes are not needed past the rows; counts stay
