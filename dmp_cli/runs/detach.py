"""Detached jobs: a run submitted to the fleet, whose coordinator runs it there. Only
what can be refused at once is checked here (the manifest's first entry, the stores, a
companion against its manifest); the fleet's executor is reached through ``Submitter``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, replace
from itertools import chain
from typing import BinaryIO, Protocol

from dmp_cli.errors import ManifestError, UsageError
from dmp_cli.inputs import Inputs
from dmp_cli.job_record import DetachedJob
from dmp_cli.manifest import open_manifest, parse_lines
from dmp_cli.options import Options, StoreSpec, Work
from dmp_cli.rows import Item
from dmp_cli.rules import Command
from dmp_cli.runs.companion import check_submitted
from dmp_cli.runs.files import abort, manifest_target
from dmp_cli.runs.report import shown_manifest
from dmp_cli.runs.transfers import entry_reader, preflight
from dmp_cli.runs.verification import items_to_check
from dmp_cli.settings import vault_planning_mode
from dmp_cli.store import StorePool


class Submitter(Protocol):
    """What a detached run needs of the fleet's executor (``dmp_tasks``' is one): its
    stores, asked whether they can be used before the job is sent, and the sending."""

    stores: StorePool

    def submit_job(self, detached: DetachedJob, rules: Mapping[str, bool]) -> str:
        """Queue the job (``detached``: what its coordinator runs; ``rules``: how it is
        judged) and return its id at once."""
        ...


def submit_check(
    manifest: str,
    executor: Submitter,
    *,
    strict: bool = False,
    ignore_missing: bool = False,
    meta: str | None = None,
) -> str:
    """Submit a check to the fleet: its coordinator runs ``check`` there, and the job is
    judged by the same rules. Only the manifest's first entry is read here (with
    ``meta``, a companion file, checked against the manifest here first)."""
    _first_entry(manifest, lambda name, stream: items_to_check(name, stream, stdin=False))
    check_submitted(meta, manifest)
    detached = DetachedJob(
        Command.CHECK,
        os.getcwd(),
        manifest,
        strict=strict,
        ignore_missing=ignore_missing,
        meta=meta or None,
    )
    return executor.submit_job(detached, {"strict": strict, "ignore_missing": ignore_missing})


def submit_transfer(
    command: Command,
    manifest: str,
    executor: Submitter,
    spec: StoreSpec,
    options: Options,
    meta: str | None = None,
) -> str:
    """Submit --vault, --archive or --fetch to the fleet, once its stores answer: its
    coordinator runs ``transfer`` there (with ``meta``, a companion file, checked
    against the manifest here first)."""
    options.validated(spec.validated())
    preflight(executor.stores, spec)
    reader = entry_reader(command, options, detached=True)
    _first_entry(manifest, lambda _, stream: reader.items(parse_lines(stream)), "SHA256 ")
    check_submitted(meta, manifest)
    work = Work.of(command.operation, spec, options)
    # The way the vault is asked, if set here: the coordinator plans by it (else by its
    # worker's setting). Left out when not set, as a coordinator of an earlier dmp knows
    # the job.
    planning = os.environ.get("DMP_VAULT_PLANNING") or None
    detached = DetachedJob(
        command,
        os.getcwd(),
        manifest,
        stores=work.stores,
        options=work.options,
        meta=meta or None,
        planning=vault_planning_mode(planning) if planning else None,
    )
    return executor.submit_job(detached, {"strict": options.strict})


def submit_create(
    inputs: Inputs,
    manifest: str,
    executor: Submitter,
    *,
    fmt: str = "dmp",
    meta: str | None = None,
) -> str:
    """Submit a --create to the fleet: its coordinator walks the inputs, and the
    manifest is written beside ``manifest`` on the shared filesystem and linked into
    place when complete, byte for byte what ``create`` would write here."""
    if inputs.files_from == "-":
        raise ManifestError("--detach cannot read the list of files from standard input")
    target = manifest_target(manifest)  # the temporary file, made now: its coordinator
    target.stream.close()  # writes it, and takes it over if the coordinator dies
    given = asdict(inputs)
    if given["update"] is None:  # as a coordinator of an earlier dmp knows the inputs
        del given["update"]
    detached = DetachedJob(
        Command.CREATE,
        os.getcwd(),
        inputs=given,
        output=manifest,
        temp=target.temp,
        fmt=fmt,
    )
    companion = None
    try:
        if meta:
            companion = manifest_target(meta, "metadata file")
            companion.stream.close()
            detached = replace(detached, meta_output=meta, meta_temp=companion.temp)
        return executor.submit_job(detached, {})
    except BaseException:
        abort(target, None)
        if companion:
            companion.abort()
        raise


def refuse_stdin(manifest: str) -> None:
    """A detached job's manifest is read on the fleet, which cannot read this stdin."""
    if manifest == "-":
        raise UsageError("--detach needs a manifest file (the fleet cannot read stdin)")


def _first_entry(
    manifest: str, items: Callable[[str, BinaryIO], Iterator[Item]], kind: str = ""
) -> None:
    """Refuse a manifest on stdin, one that cannot be opened or has no entry, before a
    job is submitted: its coordinator reads it on the fleet."""
    refuse_stdin(manifest)
    shown = shown_manifest(manifest)
    with open_manifest(manifest, shown) as stream:
        _nonempty(
            items(manifest, stream), f"{shown}: no properly formatted {kind}checksum lines found"
        )


def _nonempty(items: Iterator[Item], error: str) -> Iterator[Item]:
    """The items, or ManifestError now if there are none: an empty job is refused before
    anything is submitted."""
    first = next(items, None)
    if first is None:
        raise ManifestError(error)
    return chain([first], items)
