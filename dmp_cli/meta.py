"""What tar keeps and a checksum does not: a manifest's companion file of metadata.

A manifest stays what ``sha256sum`` reads. Beside it, ``NAME.meta`` (JSON Lines) holds,
in manifest order, a record for every entry (type, mode, mtime in nanoseconds, size,
owner and group by number and by name) and, in the walk's order among them, one for every
directory the walk entered and every symbolic link it met that the manifest does not name
(dangling, or to a directory). The first line says what the file is; the last one counts
the records and names the manifest's sha256, so that a companion cut short, or one of
another manifest, is refused before anything is applied.
"""

from __future__ import annotations

import base64
import grp
import hashlib
import json
import os
import pwd
import stat
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, BinaryIO

from dmp_cli.errors import DmpError
from dmp_cli.manifest import Line, parse_lines
from dmp_cli.rows import Item

SUFFIX = ".meta"
FORMAT = "dmp-meta"
VERSION = 1

Record = dict[str, Any]


class MetaError(DmpError):
    """A companion file that cannot be read, or that does not belong to its manifest."""


def companion_of(manifest: str) -> str:
    """Where a manifest's companion lives unless another path is given."""
    return manifest + SUFFIX


# ---------------------------------------------------------------- names in JSON


def get_name(record: Record, key: str) -> str:
    if key + "_b64" in record:
        return os.fsdecode(base64.b64decode(record[key + "_b64"], validate=True))
    value = record[key]
    if not isinstance(value, str):
        raise ValueError(f"{key} is not a string")
    return value


# ---------------------------------------------------------------- recording

_TYPES = {stat.S_IFREG: "file", stat.S_IFLNK: "link", stat.S_IFDIR: "dir"}


@lru_cache(maxsize=4096)
def user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


@lru_cache(maxsize=4096)
def group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def record(path: str, entry: bool = False) -> Record:
    """The metadata of ``path`` itself (a link is not followed); ``entry`` marks the
    record of a manifest entry. Raises OSError if it cannot be looked at."""
    value = json.loads(record_line(path, entry))
    assert isinstance(value, dict)
    return value


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # made once
_json = _ENCODER.encode


def _name_field(key: str, name: str) -> str:
    """``name`` under ``key``; one that is not UTF-8 (its str holds surrogates, which
    strict UTF-8 refuses) goes as ``KEY_b64``, its bytes in base64, as ``--json`` does,
    so that every POSIX name round-trips."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return f'"{key}_b64":"{base64.b64encode(os.fsencode(name)).decode("ascii")}"'
    return f'"{key}":{_json(name)}'


@lru_cache(maxsize=4096)
def _owner_fields(uid: int, gid: int) -> str:
    return (
        f'"uid":{uid},"gid":{gid},"user":{_json(user_name(uid))},"group":{_json(group_name(gid))}'
    )


def stat_of(path: str) -> list[Any]:
    """What a record holds of ``path`` itself (a link is not followed), as plain values
    that travel in a row: type, mode, mtime, size, owner, group, and a link's target.
    Taken where the file is hashed (a worker of the fleet, or a pool's process), so that
    a metadata server is asked in parallel, not once a file by the process that writes."""
    st = os.lstat(path)
    kind = _TYPES.get(stat.S_IFMT(st.st_mode), "other")
    fields: list[Any] = [
        kind,
        stat.S_IMODE(st.st_mode),
        st.st_mtime_ns,
        st.st_size,
        st.st_uid,
        st.st_gid,
    ]
    if kind == "link":
        fields.append(os.readlink(path))
    return fields


def record_line(path: str, entry: bool = False, fields: list[Any] | None = None) -> bytes:
    """``record(path, entry)`` as its line in the companion, from ``fields`` (as
    ``stat_of`` gives them; by default, looked up now). Written directly: a dict and a
    general encoder cost three times as much, per file of a walk. Owners' names are
    those of this host's name service, where the companion is written."""
    kind, mode, mtime_ns, size, uid, gid, *target = fields or stat_of(path)
    flag = ',"entry":true' if entry else ""
    text = (
        f'{{{_name_field("path", path)},"type":"{kind}"{flag},"mode":"{mode:04o}",'
        f'"mtime_ns":{mtime_ns},"size":{size},{_owner_fields(uid, gid)}'
    )
    if target:
        text += "," + _name_field("target", target[0])
    return (text + "}\n").encode("utf-8", "surrogateescape")


def _line(value: Record) -> bytes:
    return _json(value).encode("utf-8", "surrogateescape") + b"\n"


class Recorder:
    """Writes a companion as a --create goes: ``pending`` holds what the walk met
    (directories, links) before the next file, so that the records come in the walk's
    order although the files' rows come back later, from an executor."""

    def __init__(self, stream: BinaryIO, state: Record | None = None) -> None:
        self.stream = stream
        self.manifest = hashlib.sha256()
        self.pending: deque[str | None] = deque()  # a path met, or None: the next file
        self.records = self.entries = 0
        self.skip = 0  # files whose records were written before a checkpoint
        if state is None:
            stream.write(_line({"format": FORMAT, "version": VERSION}))
        else:
            self.resume(state)

    def state(self) -> Record:
        """What a run picked up from a checkpoint needs besides the bytes written."""
        return {"records": self.records, "entries": self.entries}

    def resume(self, state: Record) -> None:
        """Go on from a checkpoint: ``state`` as ``state()`` gave it, ``manifest`` the
        manifest's bytes then written, ``files`` the files whose rows were used then
        (their walk is met again, and left out)."""
        self.records, self.entries = int(state["records"]), int(state["entries"])
        self.skip = int(state["files"])
        self.manifest.update(state["manifest"])

    def met(self, path: str) -> None:
        """The walk met a directory or a symbolic link the manifest will not name."""
        self.pending.append(path)

    def file(self) -> None:
        """The walk gave the executor its next file."""
        self.pending.append(None)

    def manifest_bytes(self, data: bytes) -> None:
        self.manifest.update(data)

    def row(self, path: str | None, fields: list[Any] | None = None) -> None:
        """The next file's row came back: what the walk met before it, then (unless it
        could not be hashed: ``None``) its record, from ``fields`` (``stat_of``'s, taken
        where it was hashed) or else looked up here."""
        while self.skip:
            if self.pending.popleft() is None:
                self.skip -= 1
        self._flush_met()
        if path is not None:
            self._write(record_line(path, True, fields))
            self.entries += 1

    def _flush_met(self) -> None:
        while self.pending:
            path = self.pending.popleft()
            if path is None:
                return
            try:
                self._write(record_line(path))
            except FileNotFoundError:
                continue  # gone since the walk: nothing to restore

    def finish(self) -> None:
        self._flush_met()
        trailer = {"end": True, "records": self.records, "entries": self.entries}
        self._write_raw({**trailer, "manifest_sha256": self.manifest.hexdigest()})

    def _write(self, line: bytes) -> None:
        self.stream.write(line)
        self.records += 1

    def _write_raw(self, value: Record) -> None:
        self.stream.write(_line(value))


# ---------------------------------------------------------------- reading


@dataclass
class Companion:
    """A companion file, read as a stream (``records``) as often as a run needs."""

    path: str
    shown: str
    manifest: str
    manifest_shown: str
    trailer: Record = field(default_factory=dict)

    def records(self) -> Iterator[Record]:
        """Every record, in order, without the first and last lines."""
        for number, value in self._lines():
            if number == 1 or value.get("end"):
                continue
            yield value

    def _lines(self) -> Iterator[tuple[int, Record]]:
        try:
            stream = open(self.path, "rb")  # noqa: SIM115
        except OSError as exc:
            raise MetaError(f"{self.shown}: {exc.strerror or exc}") from None
        with stream:
            for number, raw in enumerate(stream, 1):
                try:
                    value = json.loads(raw)
                    if not isinstance(value, dict):
                        raise ValueError("not a JSON object")
                except ValueError as exc:
                    raise self.bad(number, f"not a JSON record ({exc})") from None
                yield number, value

    def bad(self, number: int, why: str) -> MetaError:
        return MetaError(
            f"{self.shown}: line {number}: {why}; not the metadata of "
            f"{self.manifest_shown} (nothing applied)"
        )

    def verify(self) -> None:
        """The whole companion against its manifest, before anything is applied: the
        same entries in the same order, every record well formed, the trailer's counts
        and the manifest's sha256 right. Raises MetaError, naming the first problem."""
        digest = _file_digest(self.manifest)
        with open(self.manifest, "rb") as stream:
            entries = (line for line in parse_lines(stream) if line.entry is not None)
            self._verify(entries, digest)

    def _verify(self, entries: Iterator[Line], digest: str) -> None:
        records = found = 0
        last = 0
        for number, value in self._lines():
            last = number
            if number == 1:
                if value.get("format") != FORMAT or value.get("version") != VERSION:
                    raise self.bad(number, f"not a {FORMAT} version {VERSION} header")
                continue
            if self.trailer:
                raise self.bad(number, "a record after the last line")
            if value.get("end"):
                self.trailer = value
                continue
            try:
                path = valid(value)
            except (KeyError, ValueError, TypeError) as exc:
                raise self.bad(number, f"malformed record ({exc})") from None
            records += 1
            if not value.get("entry"):
                continue
            found += 1
            line = next(entries, None)
            if line is None or line.entry is None:
                raise self.bad(number, "an entry the manifest does not have")
            if line.entry.path != path:
                raise self.bad(number, f"its path is not that of manifest line {line.number}")
        if last == 0:
            raise self.bad(1, "empty")
        if not self.trailer:
            raise self.bad(last, "cut short (no last line)")
        if next(entries, None) is not None:
            raise self.bad(last, f"only {found} entries, the manifest has more")
        if self.trailer.get("records") != records or self.trailer.get("entries") != found:
            raise self.bad(last, "its counts do not match its records")
        if self.trailer.get("manifest_sha256") != digest:
            raise self.bad(last, "it was made with another manifest (its sha256 differs)")

    def attach(self, items: Iterable[Item]) -> Iterator[Item]:
        """The manifest's items, each with its entry's record as ``meta`` (verified
        first: they come in the same order)."""
        entries = (value for value in self.records() if value.get("entry"))
        for item in items:
            rec = next(entries, None)
            if rec is not None:
                item["meta"] = {key: rec[key] for key in _APPLIED if key in rec}
            yield item


# What a worker needs of an entry's record to apply it where it writes the file.
_APPLIED = ("type", "mode", "mtime_ns", "uid", "gid", "user", "group")


def _file_digest(path: str) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def valid(value: Record) -> str:
    """A record's path, if the record is well formed; raises ValueError, KeyError or
    TypeError naming what is wrong."""
    path = get_name(value, "path")
    if not path:
        raise ValueError("empty path")
    kind = value["type"]
    if kind not in ("file", "link", "dir", "other"):
        raise ValueError(f"unknown type {kind!r}")
    mode = value["mode"]
    if not isinstance(mode, str) or int(mode, 8) > 0o7777:
        raise ValueError(f"bad mode {mode!r}")
    for key in ("mtime_ns", "uid", "gid", "size"):
        if not isinstance(value[key], int) or isinstance(value[key], bool):
            raise TypeError(f"{key} is not an integer")
    if kind == "link":
        get_name(value, "target")
    return path


def open_companion(path: str, manifest: str, shown: str, manifest_shown: str) -> Companion:
    """The companion at ``path`` of ``manifest``, verified against it."""
    companion = Companion(path, shown, manifest, manifest_shown)
    companion.verify()
    return companion


# ---------------------------------------------------------------- comparing


def mode_of(value: Record) -> int:
    return int(value["mode"], 8)


def shown_time(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    when = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{when}.{rest:09d}Z"


def differences(value: Record, owners: bool) -> list[str]:
    """How the file at a record's path differs from the record, each as ``WHAT
    RECORDED != FOUND``; owner and group only with ``owners`` (what a restore by this
    user can set)."""
    path = get_name(value, "path")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return [f"type {value['type']} != missing"]
    kind = _TYPES.get(stat.S_IFMT(st.st_mode), "other")
    if kind != value["type"]:
        return [f"type {value['type']} != {kind}"]
    found: list[str] = []
    if kind == "link":
        target = os.readlink(path)
        if target != get_name(value, "target"):
            found.append(f"target {get_name(value, 'target')!r} != {target!r}")
    elif stat.S_IMODE(st.st_mode) != mode_of(value):
        found.append(f"mode {value['mode']} != {stat.S_IMODE(st.st_mode):04o}")
    if st.st_mtime_ns != value["mtime_ns"]:
        found.append(f"mtime {shown_time(value['mtime_ns'])} != {shown_time(st.st_mtime_ns)}")
    if owners:
        if st.st_uid != value["uid"]:
            found.append(f"uid {value['uid']} != {st.st_uid}")
        if st.st_gid != value["gid"]:
            found.append(f"gid {value['gid']} != {st.st_gid}")
    return found


__all__ = [
    "Companion",
    "MetaError",
    "Recorder",
    "companion_of",
    "differences",
    "open_companion",
    "record",
]
