"""`dmp manifest --vault | --archive | --fetch`: the vault's three commands.

This module reads options, prints lines and summaries and picks the exit status; the
work is the ``head``, ``upload`` and ``download`` operations (dmp_cli/transfer.py) run by
the executor over the items that dmp_cli/vault.py makes from the manifest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import chain
from typing import Any, BinaryIO

from dmp_cli.cli.job import detach as submit_job
from dmp_cli.cli.job import require_broker
from dmp_cli.cli.output import Output, human_bytes, plural
from dmp_cli.errors import FatalStoreError, ManifestError, UsageError
from dmp_cli.executor import default_jobs
from dmp_cli.manifest import count_lines, open_manifest, parse_lines
from dmp_cli.ops import Item, Row
from dmp_cli.quoting import quote_name
from dmp_cli.vault import Plan, Tally, retry_items

OPERATION = {"vault": "head", "archive": "upload", "fetch": "download"}
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
    **_: object,
) -> int:
    _check_options(app, mode, path=path, all_files=all_files, detach=detach)
    config = _config(
        app,
        mode,
        path=path,
        all=all_files,
        overwrite=overwrite,
        dry_run=dry_run,
        absolute_names=absolute_names,
    )
    _check_urls(config)
    shown = _shown(manifest_path)
    stream = open_manifest(manifest_path, shown)
    # Attached, a later entry with the same content is answered from the first one's row
    # (uploaded once). A detached job's rows are counted, never gathered, so each entry
    # there is asked about on its own; a copy finds its content archived and is skipped.
    plan = Plan(
        dedupe=not detach and (mode == "vault" or (mode == "archive" and not all_files)),
        with_size=mode == "archive",
    )
    if detach:
        _preflight(config)
        return _detach(app, mode, plan, stream, config, shown, strict=strict)
    with stream:
        _preflight(config)
        tally = _execute(
            app,
            mode,
            plan,
            plan.items(parse_lines(stream)),
            config,
            count_lines(manifest_path) if app.out.wants_progress() else None,
        )
    return _finish(app.out, mode, plan, tally, shown, strict=strict, dry_run=dry_run)


def _detach(
    app: Any,
    mode: str,
    plan: Plan,
    stream: BinaryIO,
    config: dict[str, Any],
    shown: str,
    *,
    strict: bool,
) -> int:
    """Submit the items and config an attached run would use; `dmp job watch ID` follows
    the job to the end."""
    with stream:
        items = plan.items(parse_lines(stream))
        first = next(items, None)  # an empty manifest is an error, not an empty job
        if first is None:
            raise ManifestError(f"{shown}: no properly formatted SHA256 checksum lines found")
        status = submit_job(
            app,
            OPERATION[mode],
            chain([first], items),
            config,
            rules={"strict": strict},
            tally=lambda: {"misformatted": plan.misformatted},
        )
    if plan.misformatted:
        app.out.warning(
            plural(plan.misformatted, "line is", "lines are"),
            " improperly formatted",
            "" if mode == "vault" else " (skipped)",
        )
    return status


def _execute(
    app: Any,
    mode: str,
    plan: Plan,
    items: Iterable[Item],
    config: dict[str, Any],
    total: int | None,
) -> Tally:
    """Run the mode's operation over the items, printing each row as it comes back."""
    out: Output = app.out
    tally = Tally(archive=mode == "archive", dedupe=plan.dedupe)
    report = REPORTERS[mode]
    dry_run = bool(config.get("dry_run"))
    with app.executor() as executor, out.progress(LABEL[mode], total) as bar:
        while True:
            retries: list[Row] = []
            for raw in executor.map(OPERATION[mode], items, config, on_bytes=bar.moved):
                if raw.get("fatal"):
                    raise FatalStoreError(raw["error"])
                if tally.needs_retry(raw):
                    retries.append(raw)
                    continue
                row = tally.add(raw)
                bar.update(1, raw.get("bytes") or 0)
                report(out, row, dry_run)
            if not retries:
                return tally
            # Each round retries only copies of content whose first file failed in the
            # round before, so the rounds end.
            items = retry_items(retries, with_size=True)


def _check_options(app: Any, mode: str, *, path: str | None, all_files: bool, detach: bool) -> None:
    if all_files and not path:
        raise UsageError("--all needs --path s3://bucket/prefix: say where to put everything")
    if detach:
        require_broker(app)


def _config(app: Any, mode: str, **flags: Any) -> dict[str, Any]:
    """The plain values the operations need (they may run on other machines)."""
    settings = app.settings
    config = settings.config()
    config.update({k: v for k, v in flags.items() if v and k != "path"})
    # Sizes the connection pool: one connection per executor thread (LocalExecutor's rule).
    config["concurrency"] = min(64, max(8, 8 * (settings.jobs or default_jobs())))
    if mode == "archive" and flags.get("path"):
        config.update(dest=flags["path"], dest_mode="path")
    elif mode == "archive" and settings.archive_default:
        config.update(dest=settings.archive_default, dest_mode="default")
    return config


def _check_urls(config: dict[str, Any]) -> None:
    """Usage errors first: a bad URL, or a --path that cannot get a server-side copy."""
    from dmp_cli.store import parse_url, same_kind

    for url in (config["vault"], config.get("dest")):
        if url:
            parse_url(url)
    if config.get("dest_mode") == "path" and not same_kind(config["dest"], config["vault"]):
        raise UsageError(
            f"--path {config['dest']}: the vault ({config['vault']}) is another "
            "kind of store, so it cannot get a server-side copy"
        )


def _preflight(config: dict[str, Any]) -> None:
    """One clear line now, rather than the same failure for every file. The stores are
    the ones the operations will use in this process (their clients made once)."""
    from dmp_cli.ops import context_for
    from dmp_cli.transfer import store_for

    context = context_for(config)
    store_for(context, "vault").check()
    if config.get("dest"):
        # Like a prefix in a bucket, an archive directory is made by the first upload.
        store_for(context, "dest").check(create=True)


# ---------------------------------------------------------------- per-file lines


def _line(out: Output, row: Row, text: str) -> None:
    out.record(
        "file",
        path=row["path"],
        digest=row["digest"],
        status=row["status"],
        bytes=row.get("bytes") or 0,
        error=row.get("error"),
        to=row.get("to"),
    )
    if not out.json and not out.quiet:
        out.write(quote_name(row["path"]) + b": " + text.encode() + b"\n")


def _failure(out: Output, row: Row) -> bool:
    if row["status"] in (
        "present",
        "uploaded",
        "skipped",
        "fetched",
        "would-upload",
        "would-fetch",
    ):
        return False
    error = row.get("error") or row["status"]
    out.record(
        "file", path=row["path"], digest=row["digest"], status=row["status"], bytes=0, error=error
    )
    out.file_error(row["path"], error)
    return True


def _report_vault(out: Output, row: Row, dry_run: bool) -> None:
    if row["status"] == "present":
        _line(out, row, "in the vault")
    elif row["status"] == "missing":
        _line(out, row, "NOT in the vault")
    else:
        _failure(out, row)


def _report_archive(out: Output, row: Row, dry_run: bool) -> None:
    if _failure(out, row):
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


def _report_fetch(out: Output, row: Row, dry_run: bool) -> None:
    if _failure(out, row):
        return
    size = human_bytes(row.get("bytes") or 0)
    text = {
        "fetched": f"fetched ({size})",
        "would-fetch": f"would fetch ({size})",
        "present": "already present",
    }[row["status"]]
    _line(out, row, text)


REPORTERS: dict[str, Callable[[Output, Row, bool], None]] = {
    "vault": _report_vault,
    "archive": _report_archive,
    "fetch": _report_fetch,
}


# ---------------------------------------------------------------- summaries


def _finish(
    out: Output, mode: str, plan: Plan, tally: Tally, shown: str, *, strict: bool, dry_run: bool
) -> int:
    if plan.entries == 0:
        raise ManifestError(f"{shown}: no properly formatted SHA256 checksum lines found")
    if plan.misformatted:
        out.warning(
            plural(plan.misformatted, "line is", "lines are"),
            " improperly formatted",
            "" if mode == "vault" else " (skipped)",
        )
    if mode == "vault":
        _vault_summary(out, plan, tally)
    else:
        _move_summary(mode, out, plan, tally, dry_run)
    if mode == "vault":
        return 1 if tally.failed - tally["missing"] or (strict and plan.misformatted) else 0
    return 1 if tally.failed or plan.misformatted else 0


def _vault_summary(out: Output, plan: Plan, tally: Tally) -> None:
    out.record(
        "summary",
        files=plan.entries,
        distinct=tally.distinct,
        present=tally["present"],
        missing=tally["missing"],
        failed=tally.failed - tally["missing"],
        misformatted=plan.misformatted,
    )
    if tally["missing"]:
        out.warning(
            f"{tally['missing']} of {plural(plan.entries, 'file is', 'files are')} not in the vault"
        )
    out.info(
        f"{plural(plan.entries, 'file', 'files')}, "
        f"{plural(tally.distinct, 'distinct checksum', 'distinct checksums')}: "
        f"{tally['present']} in the vault, {tally['missing']} missing"
    )


# What --archive and --fetch say they did: the status of a file moved (and of one that
# would be, in a dry run), and the status, with its words, of a file that needed nothing.
_MOVES = {
    "archive": ("uploaded", "would-upload", "skipped", "skipped as already archived"),
    "fetch": ("fetched", "would-fetch", "present", "already present"),
}


def _move_summary(mode: str, out: Output, plan: Plan, tally: Tally, dry_run: bool) -> None:
    done, would, kept, kept_words = _MOVES[mode]
    moved = tally[would] if dry_run else tally[done]
    out.record(
        "summary",
        files=plan.entries,
        **{done: moved},
        bytes=tally.nbytes,
        **{kept: tally[kept]},
        failed=tally.failed,
        dry_run=dry_run,
        misformatted=plan.misformatted,
    )
    verb = f"would be {done}" if dry_run else done
    out.info(
        f"{plural(moved, 'file', 'files')} ({human_bytes(tally.nbytes)}) {verb}, "
        f"{tally[kept]} {kept_words}, {tally.failed} failed"
    )


def _shown(path: str) -> str:
    return quote_name(path).decode("utf-8", "surrogateescape")
