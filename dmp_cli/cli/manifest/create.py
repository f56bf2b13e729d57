"""`dmp manifest --create`: hash files and write a manifest (and its companion)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from dmp_cli import runs
from dmp_cli.cli.output import Output, Pace
from dmp_cli.errors import UsageError
from dmp_cli.inputs import Inputs
from dmp_cli.manifest import FORMATS
from dmp_cli.meta import companion_of
from dmp_cli.reuse import Earlier
from dmp_cli.rows import Row
from dmp_cli.words import human_bytes, plural

if TYPE_CHECKING:
    from dmp_cli.cli import App


def run(
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
    update: str | None = None,
    **_: object,
) -> int:
    inputs = Inputs(list(patterns), list(dirs), recursive, files_from, null, update)
    meta_path = _create_meta_path(manifest_path, meta, meta_file, walks=bool(dirs))
    if not inputs.given():
        raise UsageError("--create needs files, patterns, --dir DIR or --files-from FILE")
    if recursive and not dirs:
        raise UsageError("--recursive needs --dir DIR")
    if null and not files_from:
        raise UsageError("-0/--null needs --files-from FILE")
    if update == "-":
        raise UsageError("--update needs the earlier manifest in a file (with its companion)")
    out: Output = app.out
    earlier = _earlier(out, update)
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
    if meta_path and out.json and (not manifest_path or manifest_path == "-"):
        raise UsageError("--meta needs a manifest file with --json (stdout holds the JSON)")
    started = time.monotonic()
    manifest_line = FORMATS[fmt or "dmp"]

    def on_row(row: Row) -> None:
        if earlier:
            out.record(
                "file",
                path=row["path"],
                digest=row["digest"],
                bytes=row["bytes"],
                status="ok",
                reused=bool(row.get("reused")),
            )
        else:
            out.record(
                "file", path=row["path"], digest=row["digest"], bytes=row["bytes"], status="ok"
            )
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
            earlier=earlier,
            rows=bool(out.json or out.log),  # else on_row does nothing
        )
    if report.error:
        out.error(report.error)
        return report.status
    pace = Pace.since(started, report.files, report.bytes)
    reuse: dict[str, int] = {}
    if earlier:
        reuse = {
            "reused": report.reused,
            "reused_bytes": report.reused_bytes,
            "hashed_files": report.files - report.reused,
            "hashed_bytes": report.bytes - report.reused_bytes,
        }
    out.record(
        "summary",
        files=report.files,
        bytes=report.bytes,
        manifest=manifest_path,
        **reuse,
        **pace.fields(),
    )
    # Like sha256sum, --create says nothing when all is well: the summary is for -v.
    if earlier:
        hashed = report.files - report.reused
        text = (
            f"{plural(report.files, 'file', 'files')}, {human_bytes(report.bytes)}: "
            f"{plural(report.reused, 'checksum', 'checksums')} reused from "
            f"{runs.shown_name(earlier.manifest)}, {plural(hashed, 'file', 'files')} "
            f"({human_bytes(report.bytes - report.reused_bytes)}) hashed "
        )
    else:
        text = f"{plural(report.files, 'file', 'files')}, {human_bytes(report.bytes)} hashed "
    out.info(text + pace.text(), show=bool(out.verbose))
    return report.status


def _earlier(out: Output, update: str | None) -> Earlier | None:
    """The earlier manifest of --update, verified against its companion before anything
    is written; with a companion of format version 1, said once how files are judged."""
    if not update:
        return None
    earlier = Earlier(update)
    if earlier.version < 2:
        out.warning(
            f"{runs.shown_name(earlier.companion_path)} is of companion format version "
            f"{earlier.version} (no ctime, inode or device): a file of the same size and "
            "mtime keeps its checksum"
        )
    return earlier


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
