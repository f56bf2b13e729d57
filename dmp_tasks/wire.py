"""How a batch travels: its items to a worker, its rows back, as JSON text.

A batch is a plain JSON list of flat objects, which json's C encoder and decoder handle
at about a microsecond a file each; compact separators make a batch of ``--create`` rows
7 % smaller than ``json.dumps`` does. (Measured: writing each set of keys once, with
values as lists, made the text smaller still but cost more to decode in Python than it
saved.)

A batch of bare paths (a walk's items, nearly every batch of a ``--create``) goes as its
directories, each followed by the names in it: about 9 bytes a file rather than 35, which
every hop pays for (the task message is encoded, base64'd and decoded again on its way).

Rows go back without the paths the submitter sent (it has them). A batch whose rows are
all files hashed well, as nearly all of a ``--create``'s are, goes as one string of
``digest:bytes`` entries: 70 bytes a file rather than 114, and about 1.1 µs of CPU a file
between the two ends rather than 2.1 (timed on 8,192 rows).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

from dmp_cli import __version__
from dmp_cli.rows import Item, Row, Status

# What a command and the workers send each other (a batch's items and options, its rows,
# what a detached job runs: ``dmp_cli.job_record.DetachedJob``) changes between versions
# of dmp. Each side says which form it speaks (``speaks``), and work in another form is
# refused in one line (``mismatch``), rather than misread. Bumped with any change to
# those forms.
PROTOCOL = 4  # 4: packs (packing vaults); 3: a listing of the whole vault or of a first
# character, --update

# ensure_ascii stays: a path that is not UTF-8 holds lone surrogates, which only the
# escaped form carries through (and back) intact.
_ENCODER = json.JSONEncoder(check_circular=False, separators=(",", ":"))


def speaks() -> dict[str, Any]:
    """What goes with work sent to the fleet, to say which form it is in."""
    return {"protocol": PROTOCOL, "dmp": __version__}


def unwrapped(sent: Mapping[str, Any]) -> dict[str, Any]:
    """``sent`` without what ``speaks`` added to it."""
    spoken = speaks()
    return {key: value for key, value in sent.items() if key not in spoken}


def mismatch(sent: Mapping[str, Any], sender: str = "the command") -> str | None:
    """Why this process cannot take work sent with ``sent`` (what ``speaks`` said, in a
    batch's config or with a detached job), or None if it can."""
    if sent.get("protocol") == PROTOCOL:
        return None
    theirs = (
        f"dmp {sent.get('dmp')} (protocol {sent['protocol']})"
        if "protocol" in sent
        else "an older dmp"
    )
    return (
        f"this worker runs dmp {__version__} (protocol {PROTOCOL}) and {sender} {theirs}: "
        "run the same version of dmp on the workers and where commands are run"
    )


def pack(records: Sequence[Mapping[str, Any]]) -> str:
    """The records as one JSON text."""
    return _ENCODER.encode(records)


def pack_items(items: Sequence[Item]) -> str:
    """A batch's items for a task: ``{"dirs": [prefix, [name, ...], ...]}`` when each is a
    bare path (a prefix ends in "/", or is empty), else the records as ``pack`` makes them.
    ``unpack_items`` puts them back."""
    if not items or not all(len(item) == 1 and type(item.get("path")) is str for item in items):
        return pack(items)
    groups: list[Any] = []
    names: list[str] = []
    current = None
    for item in items:
        path = item["path"]
        name = path.rpartition("/")[2]
        prefix = path[: len(path) - len(name)]
        if prefix != current:
            current, names = prefix, []
            groups += (prefix, names)
        names.append(name)
    return _ENCODER.encode({"dirs": groups})


def unpack_items(text: str | bytes) -> list[Item]:
    """The items ``pack_items`` packed, in order."""
    packed = json.loads(text)
    if type(packed) is not dict:
        return cast(list[Item], packed)
    groups = packed["dirs"]
    return [
        {"path": prefix + name}
        for prefix, names in zip(groups[::2], groups[1::2], strict=True)
        for name in names
    ]


# The row of a file hashed well, key for key, as `dmp_cli.ops.hash_op` makes it.
_HASHED = ("path", "status", "digest", "bytes")
_OK = Status.OK.value  # a plain str in the rows made here, as in those decoded from JSON


def _hashed(row: Row, item: Item) -> bool:
    digest = row.get("digest")
    return (
        tuple(row) == _HASHED
        and row["status"] == _OK
        and row["path"] == item.get("path")
        and type(digest) is str
        and ":" not in digest
        and " " not in digest
        and type(row["bytes"]) is int
    )


def pack_rows(rows: list[Row], items: Sequence[Item]) -> str:
    """A batch's rows for the stream, ``items`` the batch that made them: as one string of
    ``digest:bytes`` entries if every row is a file hashed well, else as records with each
    path the submitter sent replaced by 0 (in place: a path is a str, so 0 is
    unambiguous). ``unpack_rows`` puts them back."""
    if rows and all(map(_hashed, rows, items)):
        return _ENCODER.encode({"hashed": " ".join([f"{r['digest']}:{r['bytes']}" for r in rows])})
    for row, item in zip(rows, items, strict=True):
        if row.get("path") == item.get("path") is not None:
            row["path"] = 0  # type: ignore[typeddict-item]
    return pack(rows)


def unpack_rows(text: str | bytes, paths: Sequence[str | None]) -> list[Row]:
    """The rows ``pack_rows`` packed, given the paths of the items that made them."""
    packed = json.loads(text)
    if type(packed) is dict:  # files hashed well
        rows = []
        for entry, path in zip(packed["hashed"].split(" "), paths, strict=True):
            digest, _, size = entry.partition(":")
            rows.append({"path": path, "status": _OK, "digest": digest, "bytes": int(size)})
        return cast(list[Row], rows)
    for record, path in zip(packed, paths, strict=True):
        if type(record.get("path")) is int:
            record["path"] = path
    return cast(list[Row], packed)
