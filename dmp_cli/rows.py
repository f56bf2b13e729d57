"""What flows through a run: items in, one row out per item, each row with a status.

Items and rows are plain dicts (they travel as JSON to workers and back), typed here so
that every path builds them alike. A failure of one file is a row made by ``error_row``,
the one constructor every path uses, so no row lacks what a report reads.
"""

from __future__ import annotations

import errno
from enum import StrEnum
from typing import Any, Required, TypedDict

from dmp_cli.errors import DmpError, ObjectMissing, PathRefused


class Status(StrEnum):
    """A file's outcome. Which of them fail which command is ``dmp_cli.rules``'s table."""

    OK = "ok"  # hashed (--create) or matched (--check)
    FAILED = "failed"  # the checksum did not match, or a transfer failed
    MISSING = "missing"  # no such file; or, asking the vault, no such object
    UNREADABLE = "unreadable"  # the file could not be read
    REFUSED = "refused"  # a path dmp will not write to (tar's rules)
    ERROR = "error"  # anything unforeseen, for this file alone
    MISFORMATTED = "misformatted"  # an improperly formatted manifest line
    PRESENT = "present"  # in the vault (--vault); already in place (--fetch)
    SAME = "same"  # content the manifest named before: answered from the first
    SKIPPED = "skipped"  # already archived
    UPLOADED = "uploaded"
    WOULD_UPLOAD = "would-upload"
    FETCHED = "fetched"
    WOULD_FETCH = "would-fetch"
    CANCELLED = "cancelled"  # its job was cancelled before it ran
    LOST = "lost"  # a fleet batch that could not record its rows


class Item(TypedDict, total=False):
    """One unit of work: a file to hash, or a manifest entry to check or move."""

    path: str
    digest: str  # the manifest's checksum
    line: int  # the manifest line it came from
    size: int  # bytes, where known without reading
    same: bool  # a later entry with the content of an earlier one
    bad: bool  # an improperly formatted line (checked, to keep the line order)
    problem: str  # --create: an input that cannot be hashed, and why (its row says so)
    errno: int  # the problem's errno, where it has one
    # --check, an entry '-' of a manifest file: what stdin held, read by the run, as
    # [digest, size]; or why it could not be read, as [errno, strerror]
    stdin: list[Any]
    stdin_error: list[Any]
    # --fetch with a companion file: the entry's recorded metadata, applied where the
    # file is written (dmp_cli.restore)
    meta: dict[str, Any]
    # --vault, --archive planned by listing (dmp_cli.runs.planning): the size of the
    # checksum's object, which a listing saw; -1 if --vault's listing saw none
    listed: int
    # --create --update: the earlier manifest's checksum of the file and what the file
    # must still be to keep it (dmp_cli.reuse.Old)
    old: list[Any]
    # A packing vault (dmp_cli.runs.packing): the checksum's member of a pack, as [pack's
    # sha256, offset, size], and whether this run stored that pack; or why its pack was
    # not stored, and whether a later attempt may succeed
    packed: list[Any]
    packed_new: bool
    pack_error: str
    pack_transient: bool
    # --fetch from cold storage (dmp_cli.runs.restoring): why the object's restore could
    # not be had (refused, or the object gone); the file fails with it
    cold_error: str
    # A pack's files, as [checksum, size, path] (dmp_cli.packing), the catalog's width,
    # and whether the vault is asked about each first (planned by HEAD)
    pack: list[Any]
    width: int
    ask: bool
    # --vault planned by listing: the object's storage class and restore, as the listing
    # told them (``dmp_cli.store.ObjectState.fields``), where they differ from the vault's
    # usual ones
    listed_state: dict[str, Any]


class Row(TypedDict, total=False):
    """One item's outcome (every item but an improperly formatted line has a path)."""

    status: Required[str]
    path: str
    digest: str  # computed (--create, --check) or the entry's (vault commands)
    expected: str  # --check: the manifest's checksum
    bytes: int
    line: int
    error: str | None
    errno: int
    to: str  # where a file went, or would go
    same: bool
    fatal: bool  # no later file can succeed (no store, a full target): the run stops
    transient: bool  # may succeed if tried again (throttling, a reset, ESTALE)
    stat: list[Any]  # --create with metadata: the file's own, as dmp_cli.meta.stat_of gives it
    reused: bool  # --create --update: the earlier manifest's checksum, the file not read
    packed: str  # a packing vault: the sha256 of the pack that holds the content
    # A pack's row (dmp_cli.packing): the checksums offered, those stored as [checksum,
    # offset, size], those refused as [checksum, path, why], those found stored plain
    files: list[str]
    members: list[Any]
    refused: list[Any]
    present: list[str]
    pack: str
    # --fetch: the key of an object in cold storage, not readable until restored, and the
    # item, to be fetched again once it is (dmp_cli.runs.restoring)
    cold: str
    item: dict[str, Any]
    cold_state: list[Any]  # [storage class, restore] where a HEAD told them
    # --vault: the object's storage class and restore (restore_expiry), as a HEAD or a
    # listing told them, for --json (``dmp_cli.cli.output.state_fields``)
    state: dict[str, Any]


# Failures that a later attempt may not see: a stale NFS handle, a reset, a timeout.
# Not EIO: on a local disk it is a bad block, which waiting does not mend, and every
# unreadable file would cost the pauses between attempts.
TRANSIENT_ERRNOS = frozenset(
    {
        errno.EAGAIN,
        errno.EINTR,
        errno.ESTALE,
        errno.ETIMEDOUT,
        errno.ENOTCONN,
        errno.ECONNRESET,
        errno.ECONNABORTED,
    }
)


def base_row(item: Item, **fields: object) -> Row:
    """The fields every row of ``item`` carries: its path and, if it has one, its line."""
    row: Row = {"status": Status.ERROR, "bytes": 0}
    if "path" in item:
        row["path"] = item["path"]
    if "line" in item:
        row["line"] = item["line"]
    row.update(fields)  # type: ignore[typeddict-item]
    return row


def problem_row(item: Item) -> Row:
    """The row of an input the walk could not use (``Item.problem``), as hashing it
    would have failed: missing or unreadable, with the walk's reason."""
    code = item.get("errno") or 0
    exc = OSError(code, item["problem"]) if code else OSError(item["problem"])
    row = error_row(base_row(item), exc)
    row.pop("transient", None)  # the walk is over: asking again finds the same
    return row


def error_row(base: Row, exc: BaseException, where: str | None = None) -> Row:
    """The row of a file whose operation raised ``exc``: how it counts, and one line
    that says why. ``base`` holds what the operation's rows always carry; ``where``
    names the object an unforeseen error happened at (dmp's own errors name theirs)."""
    row: Row = {**base, "bytes": 0}
    if isinstance(exc, OSError) and not isinstance(exc, DmpError):
        code = exc.errno or 0
        row["status"] = Status.MISSING if code == errno.ENOENT else Status.UNREADABLE
        row["errno"] = code
        row["error"] = exc.strerror or str(exc) or type(exc).__name__
        if code in TRANSIENT_ERRNOS or isinstance(exc, ConnectionError | TimeoutError):
            row["transient"] = True
        return row
    if isinstance(exc, ObjectMissing):
        row["status"], row["error"] = Status.MISSING, "not in the vault"
    elif isinstance(exc, PathRefused):
        row["status"], row["error"] = Status.REFUSED, str(exc)
    elif isinstance(exc, DmpError):
        row["status"], row["error"] = Status.FAILED, str(exc)
        if exc.fatal:
            row["fatal"] = True
    else:
        text = f"{type(exc).__name__}: {exc}"
        row["status"], row["error"] = Status.ERROR, f"{where}: {text}" if where else text
    if getattr(exc, "transient", False):
        row["transient"] = True
    return row
