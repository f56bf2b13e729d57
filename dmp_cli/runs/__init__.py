"""Whole runs of the five commands: create, check, vault, archive, fetch.

Each takes its inputs, an executor and a ``Listener`` (callbacks for each file's row,
for progress, for bytes as they move), and returns a report with one verdict: its exit
status, judged by the table in ``dmp_cli.rules``. The CLI, the Python API and jobs on
the fleet all call these; none of them prints (``Listener`` is how a caller hears).

One module per job: ``creation`` (--create), ``verification`` (--check), ``transfers``
(--vault, --archive, --fetch), ``detach`` (a run submitted to the fleet), over
``companion`` (a companion of metadata read, compared and archived), ``files`` (the
manifest and companion a --create writes), ``totals`` (progress totals), and ``report``,
``check_counts`` and ``entries`` (what a run hears, counts and reads). This module only
names their public names, each imported on first use (PEP 562), so that importing one
of them imports only what it needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    "archive": "dmp_cli.runs.transfers",
    "archive_companion": "dmp_cli.runs.companion",
    "check": "dmp_cli.runs.verification",
    "check_items": "dmp_cli.runs.check_counts",
    "CheckCounts": "dmp_cli.runs.check_counts",
    "CheckReport": "dmp_cli.runs.verification",
    "CompanionOutcome": "dmp_cli.runs.companion",
    "create": "dmp_cli.runs.creation",
    "CreateCounts": "dmp_cli.runs.creation",
    "CreateReport": "dmp_cli.runs.creation",
    "EntryReader": "dmp_cli.runs.entries",
    "fetch": "dmp_cli.runs.transfers",
    "Listener": "dmp_cli.runs.report",
    "manifest_target": "dmp_cli.runs.files",
    "MetaTarget": "dmp_cli.runs.files",
    "preflight": "dmp_cli.runs.transfers",
    "refuse_stdin": "dmp_cli.runs.detach",
    "Report": "dmp_cli.runs.report",
    "RestoreCounts": "dmp_cli.runs.restoring",
    "retry_items": "dmp_cli.runs.entries",
    "shown_manifest": "dmp_cli.runs.report",
    "shown_name": "dmp_cli.runs.report",
    "stage_restores": "dmp_cli.runs.restoring",
    "submit_check": "dmp_cli.runs.detach",
    "submit_create": "dmp_cli.runs.detach",
    "submit_transfer": "dmp_cli.runs.detach",
    "Submitter": "dmp_cli.runs.detach",
    "Tally": "dmp_cli.runs.entries",
    "transfer": "dmp_cli.runs.transfers",
    "transfer_stores": "dmp_cli.runs.transfers",
    "TransferReport": "dmp_cli.runs.transfers",
    "vault": "dmp_cli.runs.transfers",
}

__all__ = [
    "CheckCounts",
    "CheckReport",
    "CompanionOutcome",
    "CreateCounts",
    "CreateReport",
    "EntryReader",
    "Listener",
    "MetaTarget",
    "Report",
    "RestoreCounts",
    "Submitter",
    "Tally",
    "TransferReport",
    "archive",
    "archive_companion",
    "check",
    "check_items",
    "create",
    "fetch",
    "manifest_target",
    "preflight",
    "refuse_stdin",
    "retry_items",
    "shown_manifest",
    "shown_name",
    "stage_restores",
    "submit_check",
    "submit_create",
    "submit_transfer",
    "transfer",
    "transfer_stores",
    "vault",
]

if TYPE_CHECKING:
    from dmp_cli.runs.check_counts import CheckCounts, check_items
    from dmp_cli.runs.companion import CompanionOutcome, archive_companion
    from dmp_cli.runs.creation import CreateCounts, CreateReport, create
    from dmp_cli.runs.detach import (
        Submitter,
        refuse_stdin,
        submit_check,
        submit_create,
        submit_transfer,
    )
    from dmp_cli.runs.entries import EntryReader, Tally, retry_items
    from dmp_cli.runs.files import MetaTarget, manifest_target
    from dmp_cli.runs.report import Listener, Report, shown_manifest, shown_name
    from dmp_cli.runs.restoring import RestoreCounts, stage_restores
    from dmp_cli.runs.transfers import (
        TransferReport,
        archive,
        fetch,
        preflight,
        transfer,
        transfer_stores,
        vault,
    )
    from dmp_cli.runs.verification import CheckReport, check


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
