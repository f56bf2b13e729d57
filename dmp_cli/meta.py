"""What tar keeps and a checksum does not: a manifest's companion file of metadata.

A manifest stays what ``sha256sum`` reads. Beside it, ``NAME.meta`` (JSON Lines) holds,
in manifest order, a record for every entry (type, mode, mtime in nanoseconds, size,
owner and group by number and by name; from format version 2 on also ctime, inode,
device, link count and extended attributes) and, in the walk's order among them, one for every
directory the walk entered and every symbolic link it met that the manifest does not name
(dangling, or to a directory). The first line says what the file is; the last one counts
the records and names the manifest's sha256, so that a companion cut short, or one of
another manifest, is refused before anything is applied.

This module reads a companion (verified whole against its manifest first) and compares
files with their records; ``dmp_cli.recorder`` writes one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dmp_cli.errors import DmpError
from dmp_cli.manifest import Line, parse_lines
from dmp_cli.recorder import (
    FORMAT,
    READABLE,
    TYPES,
    VERSION,
    Record,
    Recorder,
    record,
    record_line,
    stat_of,
    xattrs_of,
)
from dmp_cli.rows import Item

SUFFIX = ".meta"


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


# ---------------------------------------------------------------- reading


@dataclass
class Companion:
    """A companion file, read as a stream (``records``) as often as a run needs."""

    path: str
    shown: str
    manifest: str
    manifest_shown: str
    trailer: Record = field(default_factory=dict)
    version: int = VERSION

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
                yield number, self.decode(raw, number)

    def decode(self, raw: bytes, number: int) -> Record:
        """Line ``number`` of this companion as its JSON object; MetaError if it is not
        one."""
        try:
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise self.bad(number, f"not a JSON record ({exc})") from None
        return value

    def bad(self, number: int, why: str) -> MetaError:
        return MetaError(
            f"{self.shown}: line {number}: {why}; not the metadata of "
            f"{self.manifest_shown} (nothing applied)"
        )

    def _version(self, header: Record) -> int:
        """The format version the first line names, if this dmp reads it."""
        version = header.get("version")
        if header.get("format") != FORMAT or not isinstance(version, int):
            raise self.bad(1, f"not a {FORMAT} header")
        if version > VERSION:
            raise MetaError(
                f"{self.shown}: made by a newer dmp (companion format version {version}; "
                f"this dmp reads versions up to {VERSION}); nothing applied"
            )
        if version not in READABLE:
            raise self.bad(1, f"unknown {FORMAT} version {version}")
        return version

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
                self.version = self._version(value)
                continue
            if self.trailer:
                raise self.bad(number, "a record after the last line")
            if value.get("end"):
                self.trailer = value
                continue
            try:
                path = valid(value, self.version)
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
        first: they come in the same order). From format version 2 on, ``xattrs`` is
        always there (``{}``: none recorded), and a later name of a file recorded with
        hard links has ``link``, its first name, to be linked to rather than fetched
        again. Only hard-linked files' first names are remembered."""
        entries = (value for value in self.records() if value.get("entry"))
        firsts: dict[tuple[int, int], str] = {}
        for item in items:
            rec = next(entries, None)
            if rec is not None:
                meta = {key: rec[key] for key in _APPLIED if key in rec}
                if self.version >= 2:
                    meta.setdefault("xattrs", {})
                key = hard_link_key(rec)
                if key is not None:
                    first = firsts.setdefault(key, item["path"])
                    if first != item["path"]:
                        meta["link"] = first
                item["meta"] = meta
            yield item


# What a worker needs of an entry's record to apply it where it writes the file.
_APPLIED = ("type", "mode", "mtime_ns", "uid", "gid", "user", "group", "xattrs")


def hard_link_key(rec: Record) -> tuple[int, int] | None:
    """(device, inode) of an entry recorded as a file with more than one link (from
    format version 2 on); None for any other record."""
    if rec.get("type") != "file" or not rec.get("entry") or rec.get("nlink", 1) < 2:
        return None
    return int(rec["dev"]), int(rec["ino"])


def _file_digest(path: str) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


# What a record holds from version 2 on, besides version 1's fields.
_SINCE_2 = ("ctime_ns", "ino", "dev", "nlink")


def valid(value: Record, version: int = VERSION) -> str:
    """A record's path, if the record is well formed (for a companion of format
    ``version``); raises ValueError, KeyError or TypeError naming what is wrong."""
    path = get_name(value, "path")
    if not path:
        raise ValueError("empty path")
    kind = value["type"]
    if kind not in ("file", "link", "dir", "other"):
        raise ValueError(f"unknown type {kind!r}")
    mode = value["mode"]
    if not isinstance(mode, str) or int(mode, 8) > 0o7777:
        raise ValueError(f"bad mode {mode!r}")
    for key in ("mtime_ns", "uid", "gid", "size", *(_SINCE_2 if version >= 2 else ())):
        if not isinstance(value[key], int) or isinstance(value[key], bool):
            raise TypeError(f"{key} is not an integer")
    xattrs = value.get("xattrs")
    if xattrs is not None and not (
        isinstance(xattrs, dict) and all(isinstance(v, str) for v in xattrs.values())
    ):
        raise TypeError("xattrs is not an object of base64 strings")
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
    RECORDED != FOUND``; owner and group only with ``owners`` (as root: what a restore
    by this user can set). From format version 2 on, extended attributes too: those
    this user can read (``trusted.*`` only with ``owners``)."""
    path = get_name(value, "path")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return [f"type {value['type']} != missing"]
    kind = TYPES.get(stat.S_IFMT(st.st_mode), "other")
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
    if kind != "link" and "ino" in value:
        found.extend(_xattr_differences(value.get("xattrs") or {}, path, owners))
    return found


def _xattr_differences(recorded: dict[str, str], path: str, owners: bool) -> list[str]:
    """``xattr NAME RECORDED != FOUND`` for each attribute that differs (``none`` where
    there is none), of those this user can read."""
    there = xattrs_of(path) or {}
    if not owners:  # not root: trusted.* can be neither read nor restored
        recorded = {k: v for k, v in recorded.items() if not k.startswith("trusted.")}
    return [
        f"xattr {name} {_shown_value(name, recorded.get(name))} != "
        f"{_shown_value(name, there.get(name))}"
        for name in sorted(recorded.keys() | there.keys())
        if recorded.get(name) != there.get(name)
    ]


def _shown_value(name: str, value: str | None) -> str:
    """An attribute's value as a difference shows it: an ACL as ``getfacl`` would (by
    number), printable text quoted, anything else in base64 as the companion holds it."""
    if value is None:
        return "none"
    data = base64.b64decode(value)
    if name.startswith("system.posix_acl_"):
        acl = _acl_text(data)
        if acl is not None:
            return acl
    text = data.decode("utf-8", "replace")
    if text.isprintable() and "\ufffd" not in text:
        return repr(text)
    return f"base64:{value}"


# A POSIX ACL's entries as Linux keeps them in its attribute: after a 4-byte version (2),
# each is a tag (16 bits), permissions (16 bits) and a user or group id (32 bits).
_ACL_TAGS = {1: "user:", 2: "user:", 4: "group:", 8: "group:", 0x10: "mask:", 0x20: "other:"}


def _acl_text(data: bytes) -> str | None:
    """``user::rw-,user:4242:r--,group::r--,mask::r--,other::---``; None if it is not
    an ACL this dmp knows."""
    if len(data) < 4 or (len(data) - 4) % 8 or int.from_bytes(data[:4], "little") != 2:
        return None
    shown = []
    for offset in range(4, len(data), 8):
        tag = int.from_bytes(data[offset : offset + 2], "little")
        perm = int.from_bytes(data[offset + 2 : offset + 4], "little")
        ident = int.from_bytes(data[offset + 4 : offset + 8], "little")
        if tag not in _ACL_TAGS:
            return None
        who = str(ident) if tag in (2, 8) else ""
        bits = "".join(c if perm & b else "-" for c, b in (("r", 4), ("w", 2), ("x", 1)))
        shown.append(f"{_ACL_TAGS[tag]}{who}:{bits}")
    return ",".join(shown)


__all__ = [
    "Companion",
    "MetaError",
    "Record",
    "Recorder",
    "companion_of",
    "differences",
    "get_name",
    "hard_link_key",
    "mode_of",
    "open_companion",
    "record",
    "record_line",
    "stat_of",
]
