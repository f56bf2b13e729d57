"""`dmp manifest --check`: `sha256sum --check`, byte for byte, and dmp's summary."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import click

from dmp_cli import runs
from dmp_cli.cli import VERBOSITY
from dmp_cli.cli.output import Output, Pace
from dmp_cli.cli.progress import count_lines
from dmp_cli.manifest import checked_name
from dmp_cli.meta import companion_of
from dmp_cli.rows import Row
from dmp_cli.runs.check_counts import CheckCounts
from dmp_cli.words import human_bytes, plural

if TYPE_CHECKING:
    from dmp_cli.cli import App


def run(
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
            on_matched=None if out.json else partial(out.result, show=not (status or quiet)),
        )
    _check_summary(out, report, started, status=status)
    return report.status


def _check_printer(
    out: Output, shown: str, *, quiet: bool, status: bool, warn: bool
) -> Callable[[Row], None]:
    """What `sha256sum --check` prints for a line, as a row comes back (but for files
    that matched, told many at a time, where the run can). It may run once per line of
    the manifest, so what does not change from row to row is worked out once: a JSON
    record is made only under --json."""
    json_mode = out.json
    result = out.result
    show_ok, show_other = not (status or quiet), not status

    def on_row(row: Row) -> None:
        kind = _CHECK_KINDS.get(row["status"], "unreadable")
        if kind == "misformatted":
            out.error(
                f"{shown}: {row['line']}: improperly formatted SHA256 checksum line", show=warn
            )
            return
        path = str(row["path"])
        if json_mode:
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
            out.file_error(path, str(row.get("error")), show=not json_mode)
        name = checked_name(path)
        if kind == "ok":
            result(name + b": OK\n", show_ok)
        else:
            result(name + _VERDICTS[kind], show_other)

    return on_row


def _meta_printer(out: Output, *, status: bool) -> Callable[[str, list[str]], None]:
    """A line for an entry whose metadata differs from the companion's record: the
    content lines stay sha256sum's, these have their own word."""

    def on_meta(path: str, found: list[str]) -> None:
        if out.json:
            out.record("file", path=path, status="metadata", differences=found)
        elif not status:
            out.write(checked_name(path) + b": METADATA " + ", ".join(found).encode())
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
