"""The Python API: the five commands, for another program.

Each runs embedded by default (a local pool, no services) and on a fleet when given a
``broker_url``. Results are streamed: ``on_row`` hears each file's row as it comes back,
in manifest (or input) order, never a list of the whole tree; ``on_progress`` hears each
file done with the bytes it read or moved. Each returns the run's report, whose
``status`` is the command's exit status (0 success, 1 a failure), judged by the same
rules as the command line. Errors that stop a run (a manifest that cannot be read, a
vault that cannot be used) are raised as ``DmpError``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from dmp_cli import runs
from dmp_cli.errors import InputError
from dmp_cli.executor import Executor
from dmp_cli.inputs import Inputs
from dmp_cli.manifest import Entry, read_entries
from dmp_cli.options import Options
from dmp_cli.rows import Row
from dmp_cli.rules import Command
from dmp_cli.runs.check_counts import CheckCounts
from dmp_cli.runtime import make_executor
from dmp_cli.settings import DEFAULT_VAULT, Settings, store_settings

OnRow = Callable[[Row], None]
OnProgress = Callable[[int, int], None]


def _listener(
    on_row: OnRow | None,
    on_progress: OnProgress | None,
    on_bytes: Callable[[int], None] | None = None,
    on_problem: Callable[[str, str], None] | None = None,
) -> runs.Listener:
    listener = runs.Listener(on_bytes=on_bytes)
    if on_row:
        listener.on_row = on_row
    if on_progress:
        listener.on_progress = on_progress
    if on_problem:
        listener.on_problem = on_problem
    return listener


class _Executor:
    """The executor a call was given, or one made for the call and closed after it."""

    def __init__(self, given: Executor | None, jobs: int | None, broker_url: str | None):
        self.given = given
        self.made = None if given else make_executor(broker_url, jobs)

    def __enter__(self) -> Executor:
        executor = self.given or self.made
        assert executor is not None
        return executor

    def __exit__(self, *exc: object) -> None:
        if self.made is not None:
            self.made.close()


def create(
    paths: Iterable[str] = (),
    *,
    dirs: Iterable[str] = (),
    recursive: bool = False,
    files_from: str | None = None,
    null_separated: bool = False,
    manifest: str | None = None,
    fmt: str = "dmp",
    jobs: int | None = None,
    broker_url: str | None = None,
    executor: Executor | None = None,
    on_row: OnRow | None = None,
    on_progress: OnProgress | None = None,
    on_problem: Callable[[str, str], None] | None = None,
    meta: str | None = None,
) -> runs.CreateReport:
    """Hash files (names or patterns, then the files in ``dirs``, then those listed in
    ``files_from``) and write the manifest ``manifest`` if given: complete or not at all,
    never over an existing file. ``on_row`` hears each file hashed (``path``,
    ``digest``, ``bytes``); ``on_problem`` each input that cannot be read. ``meta``: the
    companion file of metadata to write beside it (``dmp_cli.meta``)."""
    inputs = Inputs(list(paths), list(dirs), recursive, files_from, null_separated)
    with _Executor(executor, jobs, broker_url) as runner:
        return runs.create(
            inputs,
            runner,
            manifest=manifest,
            fmt=fmt,
            listener=_listener(on_row, on_progress, on_problem=on_problem),
            meta=meta,
        )


def check(
    manifest: str,
    *,
    strict: bool = False,
    ignore_missing: bool = False,
    jobs: int | None = None,
    broker_url: str | None = None,
    executor: Executor | None = None,
    on_row: OnRow | None = None,
    on_progress: OnProgress | None = None,
    meta: str | None = None,
    on_meta: Callable[[str, list[str]], None] | None = None,
) -> runs.CheckReport:
    """Verify every file ``manifest`` names, as `sha256sum --check` does. ``on_row``
    hears each line's row: ``status`` ok, failed, missing, unreadable or misformatted.
    With ``meta``, a companion file, its recorded metadata is compared too: ``on_meta``
    hears each entry that differs, with its differences."""
    listener = _listener(on_row, on_progress)
    if on_meta:
        listener.on_meta = on_meta
    with _Executor(executor, jobs, broker_url) as runner:
        return runs.check(
            manifest,
            runner,
            strict=strict,
            ignore_missing=ignore_missing,
            listener=listener,
            meta=meta,
        )


@dataclass(frozen=True)
class Where:
    """Where the vault is, and how to reach it (defaults: DMP_VAULT, the AWS_* variables
    and files, as the command line)."""

    vault: str | None = None
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None

    def settings(self, jobs: int | None) -> Settings:
        return Settings(
            profile=self.profile,
            region=self.region,
            endpoint_url=self.endpoint_url,
            jobs=jobs,
            vault=self.vault or os.environ.get("DMP_VAULT") or DEFAULT_VAULT,
            archive_default=os.environ.get("DMP_ARCHIVE_DEFAULT") or None,
            **store_settings(os.environ),
        )


def _transfer(
    command: Command,
    manifest: str,
    where: Where,
    options: Options,
    path: str | None,
    jobs: int | None,
    broker_url: str | None,
    executor: Executor | None,
    listener: runs.Listener,
    meta: str | None = None,
) -> runs.TransferReport:
    spec, options = runs.transfer_stores(command, where.settings(jobs), options, path)
    with _Executor(executor, jobs, broker_url) as runner:
        return runs.transfer(command, manifest, runner, spec, options, listener, meta=meta)


def vault(
    manifest: str,
    *,
    where: Where | None = None,
    strict: bool = False,
    jobs: int | None = None,
    broker_url: str | None = None,
    executor: Executor | None = None,
    on_row: OnRow | None = None,
    on_progress: OnProgress | None = None,
) -> runs.TransferReport:
    """Ask the vault about each checksum; ``on_row`` hears ``present`` or ``missing``
    for each entry (a missing object is an answer, not a failure)."""
    return _transfer(
        Command.VAULT,
        manifest,
        where or Where(),
        Options(strict=strict),
        None,
        jobs,
        broker_url,
        executor,
        _listener(on_row, on_progress),
    )


def archive(
    manifest: str,
    *,
    where: Where | None = None,
    path: str | None = None,
    all: bool = False,
    dry_run: bool = False,
    jobs: int | None = None,
    broker_url: str | None = None,
    executor: Executor | None = None,
    on_row: OnRow | None = None,
    on_progress: OnProgress | None = None,
    on_bytes: Callable[[int], None] | None = None,
    meta: str | None = None,
    storage_class: str | None = None,
) -> runs.TransferReport:
    """Upload what the vault lacks (``path``: to PREFIX/<manifest path> too, and the
    vault by server-side copy; ``all``: every file to ``path``). A rerun uploads nothing.
    ``meta``: a companion file, stored in the vault too and named in ``META.sha256``.
    ``storage_class``: the content objects' (``GLACIER``, ``DEEP_ARCHIVE``...; default:
    DMP_STORAGE_CLASS, else the vault config's, else the store's), as ``--storage-class``."""
    options = Options(all=all, dry_run=dry_run, storage_class=storage_class)
    return _transfer(
        Command.ARCHIVE,
        manifest,
        where or Where(),
        options,
        path,
        jobs,
        broker_url,
        executor,
        _listener(on_row, on_progress, on_bytes),
        meta,
    )


def fetch(
    manifest: str,
    *,
    where: Where | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    absolute_names: bool = False,
    jobs: int | None = None,
    broker_url: str | None = None,
    executor: Executor | None = None,
    on_row: OnRow | None = None,
    on_progress: OnProgress | None = None,
    on_bytes: Callable[[int], None] | None = None,
    meta: str | None = None,
    owner_names: bool = False,
    on_problem: Callable[[str, str], None] | None = None,
    restore_days: int = 7,
    restore_tier: str = "Standard",
    wait: bool = True,
) -> runs.TransferReport:
    """Bring each file back from the vault to its manifest path (relative to the
    working directory), verified; a file already there with the right content is left.
    With ``meta``, a companion file, what it records is restored too (owners by name
    with ``owner_names``, as root); ``on_problem`` hears each link or directory that
    could not be. Objects in cold storage are restored first, for ``restore_days`` at
    ``restore_tier`` (``Bulk``, ``Standard``, ``Expedited``), and waited for; with
    ``wait=False`` their restores are requested and the run returns, as ``--no-wait``."""
    options = Options(
        overwrite=overwrite,
        dry_run=dry_run,
        absolute_names=absolute_names,
        owner_names=owner_names,
        restore_days=restore_days,
        restore_tier=restore_tier,
        wait=wait,
    )
    return _transfer(
        Command.FETCH,
        manifest,
        where or Where(),
        options,
        None,
        jobs,
        broker_url,
        executor,
        _listener(on_row, on_progress, on_bytes, on_problem),
        meta,
    )


# ---------------------------------------------------------------- conveniences


def read_manifest(manifest: str) -> Iterator[Entry]:
    """The entries of a manifest in any form dmp or sha256sum writes, streamed."""
    return read_entries(manifest)


def create_manifest(
    paths: Iterable[str] = (),
    *,
    dirs: Iterable[str] = (),
    recursive: bool = False,
    manifest: str | None = None,
    fmt: str = "dmp",
    jobs: int | None = None,
    executor: Executor | None = None,
) -> list[Entry]:
    """``create``, for a tree small enough to hold: its entries as a list. Raises
    InputError if any input cannot be read or nothing is found (no manifest is written)."""
    entries: list[Entry] = []
    problems: list[str] = []
    report = create(
        paths,
        dirs=dirs,
        recursive=recursive,
        manifest=manifest,
        fmt=fmt,
        jobs=jobs,
        executor=executor,
        on_row=lambda row: entries.append(Entry(row["digest"], row["path"])),
        on_problem=lambda path, reason: problems.append(f"{path}: {reason}"),
    )
    if report.status:
        raise InputError("; ".join(problems) or str(report.error))
    return entries


@dataclass
class CheckResult:
    """The counts of a check and the rows that were not OK."""

    counts: CheckCounts
    failures: list[Row] = field(default_factory=list)
    strict: bool = False
    ignore_missing: bool = False

    def ok(self) -> bool:
        return self.counts.ok(strict=self.strict, ignore_missing=self.ignore_missing)


def check_manifest(
    manifest: str,
    *,
    jobs: int | None = None,
    strict: bool = False,
    ignore_missing: bool = False,
    executor: Executor | None = None,
) -> CheckResult:
    """``check``, keeping the rows that were not OK; ``result.ok()`` as sha256sum's
    exit status."""
    failures: list[Row] = []

    def keep(row: Row) -> None:
        if row["status"] not in ("ok", "misformatted"):
            failures.append(row)

    report = check(
        manifest,
        strict=strict,
        ignore_missing=ignore_missing,
        jobs=jobs,
        executor=executor,
        on_row=keep,
    )
    return CheckResult(report.counts, failures, strict, ignore_missing)
