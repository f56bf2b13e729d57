"""`dmp manifest --vault | --archive | --fetch`: the vault's three modes.

This module reads options, prints lines and summaries and picks the exit status; the
work is the ``head``, ``upload`` and ``download`` operations (dmp_cli/transfer.py) run by
the executor over the items that dmp_cli/runs/entries.py makes from the manifest, against the
``Vault`` (dmp_cli/store/).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from dmp_cli import options as options_mod
from dmp_cli import runs
from dmp_cli.cli.job import detach as submit_job
from dmp_cli.cli.job import require_broker
from dmp_cli.cli.output import Output, Pace, state_fields
from dmp_cli.cli.progress import count_lines
from dmp_cli.errors import UsageError
from dmp_cli.meta import companion_of
from dmp_cli.options import Options, StoreSpec
from dmp_cli.quoting import quote_name
from dmp_cli.rows import Row
from dmp_cli.rules import Command, failing
from dmp_cli.runs.entries import EntryReader, Tally
from dmp_cli.settings import storage_class_name
from dmp_cli.words import human_bytes, plural

LABEL = {"vault": "asking the vault", "archive": "archiving", "fetch": "fetching"}


def run(
    app: Any,
    mode: str,
    manifest_path: str,
    *,
    path: str | None = None,
    all_files: bool = False,
    overwrite: bool = False,
    dry_run: bool = False,
    absolute_names: bool = False,
    detach: bool = False,
    strict: bool = False,
    meta: bool | None = None,
    meta_file: str | None = None,
    owner_names: bool = False,
    restore_days: str | None = None,
    restore_tier: str | None = None,
    no_wait: bool = False,
    storage_class: str | None = None,
    **_: object,
) -> int:
    command = Command(mode)
    meta_path = _companion_path(manifest_path, meta, meta_file)
    if all_files and not path:
        raise UsageError("--all needs --path s3://bucket/prefix: say where to put everything")
    if detach:
        require_broker(app)
    spec, options = runs.transfer_stores(
        command,
        app.settings,
        path=path,
        options=Options(
            strict=strict,
            all=all_files,
            overwrite=overwrite,
            dry_run=dry_run,
            absolute_names=absolute_names,
            owner_names=owner_names,
            restore_days=options_mod.restore_days(restore_days or 7),
            restore_tier=options_mod.restore_tier(restore_tier or "Standard"),
            wait=not no_wait,
            # else DMP_STORAGE_CLASS, then the vault config's (dmp_cli.runs.transfers)
            storage_class=storage_class_name(storage_class),
        ),
    )
    if detach:
        return _detach(app, command, manifest_path, spec, options, meta_path)
    out: Output = app.out
    report_row = REPORTERS[mode]
    started = time.monotonic()
    total = count_lines(manifest_path) if out.wants_progress() else None
    with app.executor() as executor, out.progress(LABEL[mode], total) as bar:
        listener = runs.Listener(
            on_row=lambda row: report_row(out, row),
            on_progress=bar.update,
            on_bytes=bar.moved,
            on_problem=out.file_error,
            on_total=bar.expect if bar.active else None,
        )
        report = runs.transfer(
            command,
            manifest_path,
            executor,
            spec,
            options,
            listener,
            meta=meta_path,
            # -v: how the vault is asked, and why (said only then, in the log too)
            on_note=out.info if out.verbose else None,
            on_restore=out.info,
        )
    if report.companion is not None:  # before the summary, which --json gives last
        _companion_summary(out, report.companion)
    if report.restoring is not None:  # before the summary, which --json gives last
        _restore_record(out, report.restoring)
    _summary(out, report, started)
    if report.restoring is not None and report.restoring.waiting:
        _still_restoring(out, report.restoring)
    return report.status


def _restore_record(out: Output, counts: runs.RestoreCounts) -> None:
    """--fetch from cold storage, with --json: what became of the objects met there."""
    out.record(
        "restore",
        requested=counts.requested,
        ongoing=counts.ongoing,
        readable=counts.readable,
        refused=counts.refused,
        waiting=counts.waiting,
        waiting_files=counts.waiting_files,
        tier=counts.tier,
    )


def _still_restoring(out: Output, counts: runs.RestoreCounts) -> None:
    """--fetch --no-wait, last: what waits for restores, and what to do."""
    out.error(
        f"{plural(counts.waiting, 'object is', 'objects are')} being restored from cold "
        f"storage ({counts.tier} tier), {plural(counts.waiting_files, 'file', 'files')} "
        "not fetched yet: run the same command again later to fetch them"
    )


def _companion_path(manifest: str, meta: bool | None, meta_file: str | None) -> str | None:
    """The companion file of metadata a --fetch or --archive uses: --meta-file, else the
    one beside the manifest if there is one (unless --no-meta)."""
    if meta is False:
        if meta_file:
            raise UsageError("--meta-file and --no-meta contradict each other")
        return None
    if meta_file:
        return meta_file
    beside = companion_of(manifest)
    if manifest != "-" and os.path.lexists(beside):
        return beside
    if meta:
        raise UsageError(f"--meta: no companion file {runs.shown_name(beside)} beside the manifest")
    return None


def _companion_summary(out: Output, outcome: runs.CompanionOutcome) -> None:
    name = runs.shown_name(outcome.path)
    if outcome.tree is not None:
        tree = outcome.tree
        out.record("metadata", links=tree.links, directories=tree.dirs, failed=tree.failed)
        out.info(
            f"metadata restored from {name}: {plural(tree.links, 'link', 'links')}, "
            f"{plural(tree.dirs, 'directory', 'directories')}, {tree.failed} failed"
        )
    elif outcome.status is not None:
        out.record(
            "metadata",
            path=outcome.path,
            digest=outcome.digest,
            status=outcome.status,
            bytes=outcome.bytes,
            checksum_file=outcome.checksum_file,
            error=outcome.error,
        )
        if outcome.status == "failed":  # the run's summary follows, and fails it
            out.file_error(outcome.path, f"metadata not archived: {outcome.error}")
            return
        if outcome.status == "would-upload":
            out.info(f"metadata {name} would be uploaded as {outcome.digest}")
            return
        done = "uploaded" if outcome.status == "uploaded" else "already archived"
        named = runs.shown_name(outcome.checksum_file or "")
        out.info(f"metadata {name} {done} as {outcome.digest}; {named} names it")


def _detach(
    app: Any,
    command: Command,
    manifest_path: str,
    spec: StoreSpec,
    options: Options,
    meta_path: str | None,
) -> int:
    """Submit the job; its coordinator runs it on the fleet, and `dmp job watch ID`
    follows it to the end."""
    return submit_job(
        app,
        lambda executor: runs.submit_transfer(
            command, manifest_path, executor, spec, options, meta_path
        ),
    )


# ---------------------------------------------------------------- per-file lines


def _line(out: Output, row: Row, text: str, **more: Any) -> None:
    if "packed" in row:  # in a packing vault's pack: which
        more.update(stored="packed", pack=row["packed"])
    out.record(
        "file",
        path=row["path"],
        digest=row["digest"],
        status=row["status"],
        bytes=row.get("bytes") or 0,
        error=row.get("error"),
        to=row.get("to"),
        **more,
    )
    out.result(quote_name(row["path"]) + b": " + text.encode() + b"\n", show=not out.quiet)


def _failure(out: Output, row: Row, command: Command) -> bool:
    if not failing(command, row["status"]):
        return False
    error = row.get("error") or row["status"]
    out.record(
        "file", path=row["path"], digest=row["digest"], status=row["status"], bytes=0, error=error
    )
    out.file_error(row["path"], error)
    return True


def _report_vault(out: Output, row: Row) -> None:
    if row["status"] == "present":  # --json says how: a plain object, or in a pack,
        # and in which storage class (a later copy of content says nothing: it is
        # answered from the first entry)
        more = {} if row.get("same") else {"stored": "plain", **state_fields(row)}
        _line(out, row, "in the vault", **more)
    elif row["status"] == "missing":
        _line(out, row, "NOT in the vault")
    else:
        _failure(out, row, Command.VAULT)


def _report_archive(out: Output, row: Row) -> None:
    if _failure(out, row, Command.ARCHIVE):
        return
    status = row["status"]
    size = human_bytes(row.get("bytes") or 0)
    text = {
        "uploaded": f"uploaded ({size})",
        "would-upload": f"would upload ({size}) to {row.get('to')}",
        "skipped": "already archived",
    }[status]
    if row.get("same") and status == "skipped":
        text = "same content as an earlier entry (archived once)"
    _line(out, row, text)


def _report_fetch(out: Output, row: Row) -> None:
    if _failure(out, row, Command.FETCH):
        return
    size = human_bytes(row.get("bytes") or 0)
    text = {
        "fetched": f"fetched ({size})",
        "would-fetch": f"would fetch ({size})",
        "present": "already present",
    }[row["status"]]
    _line(out, row, text)


REPORTERS: dict[str, Callable[[Output, Row], None]] = {
    "vault": _report_vault,
    "archive": _report_archive,
    "fetch": _report_fetch,
}


# ---------------------------------------------------------------- summaries


def _summary(out: Output, report: runs.TransferReport, started: float) -> None:
    lines, tally = report.manifest, report.tally
    if lines.misformatted:
        out.warning(
            plural(lines.misformatted, "line is", "lines are"),
            " improperly formatted",
            "" if report.command is Command.VAULT else " (skipped)",
        )
    if report.command is Command.VAULT:
        _vault_summary(out, lines, tally, report.verdict.failed, Pace.since(started, lines.entries))
    else:
        # Bytes moved, and their rate; a dry run moves none.
        moved = None if report.dry_run else tally.nbytes
        pace = Pace.since(started, lines.entries, moved)
        _move_summary(report.command, out, lines, tally, report.dry_run, pace)


def _vault_summary(out: Output, lines: EntryReader, tally: Tally, failed: int, pace: Pace) -> None:
    out.record(
        "summary",
        files=lines.entries,
        distinct=tally.distinct,
        present=tally["present"],
        missing=tally["missing"],
        failed=failed,
        misformatted=lines.misformatted,
        **pace.fields(),
    )
    if tally["missing"]:
        out.warning(
            f"{tally['missing']} of {plural(lines.entries, 'file is', 'files are')} "
            "not in the vault"
        )
    out.info(
        f"{plural(lines.entries, 'file', 'files')}, "
        f"{plural(tally.distinct, 'distinct checksum', 'distinct checksums')}: "
        f"{tally['present']} in the vault, {tally['missing']} missing, {failed} failed, "
        f"{pace.text()}"
    )


# What --archive and --fetch say they did: the status of a file moved (and of one that
# would be, in a dry run), and the status, with its words, of a file that needed nothing.
_MOVES = {
    "archive": ("uploaded", "would-upload", "skipped", "skipped as already archived"),
    "fetch": ("fetched", "would-fetch", "present", "already present"),
}


def _move_summary(
    command: Command, out: Output, lines: EntryReader, tally: Tally, dry_run: bool, pace: Pace
) -> None:
    done, would, kept, kept_words = _MOVES[command]
    moved = tally[would] if dry_run else tally[done]
    out.record(
        "summary",
        files=lines.entries,
        **{done: moved},
        bytes=tally.nbytes,
        **{kept: tally[kept]},
        failed=tally.failed,
        dry_run=dry_run,
        misformatted=lines.misformatted,
        **pace.fields(),
    )
    verb = f"would be {done}" if dry_run else done
    out.info(
        f"{plural(moved, 'file', 'files')} ({human_bytes(tally.nbytes)}) {verb}, "
        f"{tally[kept]} {kept_words}, {tally.failed} failed, {pace.text()}"
    )
