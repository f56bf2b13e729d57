"""Writing a manifest's companion of metadata, as a --create goes.

Each file's record is taken where the file is hashed (``stat_of``), written as its line
(``record_line``, straight to JSON), and put in the walk's order among the directories and
links the walk met (``Recorder``). Reading one back is ``dmp_cli.meta``'s job.
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
from functools import lru_cache
from typing import Any, BinaryIO

FORMAT = "dmp-meta"
VERSION = 2
# Version 1 lacked ctime_ns, ino, dev, nlink and xattrs; it is still read.
READABLE = (1, 2)

Record = dict[str, Any]

# A record's "type", by the file type of its lstat.
TYPES = {stat.S_IFREG: "file", stat.S_IFLNK: "link", stat.S_IFDIR: "dir"}


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


@lru_cache(maxsize=4096)
def owner_bytes(uid: int, gid: int) -> bytes:
    """A record's owner fields, as its line holds them."""
    return _owner_fields(uid, gid).encode("utf-8", "surrogateescape")


def stat_of(path: str) -> list[Any]:
    """What a record holds of ``path`` itself (a link is not followed), as plain values
    that travel in a row: type, mode, mtime, size, owner, group, ctime, inode, device,
    link count, extended attributes (POSIX ACLs among them) and a link's target. Taken
    where the file is hashed (a worker of the fleet, or a pool's process), so that a
    metadata server is asked in parallel, not once a file by the process that writes."""
    st = os.lstat(path)
    kind = TYPES.get(stat.S_IFMT(st.st_mode), "other")
    fields: list[Any] = [
        kind,
        stat.S_IMODE(st.st_mode),
        st.st_mtime_ns,
        st.st_size,
        st.st_uid,
        st.st_gid,
        st.st_ctime_ns,
        st.st_ino,
        st.st_dev,
        st.st_nlink,
        xattrs_of(path) if kind != "link" else None,
    ]
    if kind == "link":
        fields.append(os.readlink(path))
    return fields


def xattrs_of(path: str) -> dict[str, str] | None:
    """The extended attributes of ``path`` that this user can read (``user.*``; as root
    ``trusted.*`` too; ``security.*``; POSIX ACLs as ``system.posix_acl_access`` and
    ``system.posix_acl_default``), each value in base64; None if it has none or the
    filesystem keeps none."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return None
    found: dict[str, str] = {}
    for name in sorted(names):
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue  # removed meanwhile, or not readable by this user
        found[name] = base64.b64encode(value).decode("ascii")
    return found or None


def record_line(path: str, entry: bool = False, fields: list[Any] | None = None) -> bytes:
    """``record(path, entry)`` as its line in the companion, from ``fields`` (as
    ``stat_of`` gives them; by default, looked up now). Written directly: a dict and a
    general encoder cost three times as much, per file of a walk. Owners' names are
    those of this host's name service, where the companion is written."""
    kind, mode, mtime_ns, size, uid, gid, ctime_ns, ino, dev, nlink, xattrs, *target = (
        fields or stat_of(path)
    )
    flag = ',"entry":true' if entry else ""
    text = (
        f'{{{_name_field("path", path)},"type":"{kind}"{flag},"mode":"{mode:04o}",'
        f'"mtime_ns":{mtime_ns},"size":{size},{_owner_fields(uid, gid)},'
        f'"ctime_ns":{ctime_ns},"ino":{ino},"dev":{dev},"nlink":{nlink}'
    )
    if xattrs:
        text += ',"xattrs":' + _json(xattrs)
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

    def lines(self, data: bytes, records: int, entries: int) -> None:
        """Records made elsewhere, whole lines in order (what the walk met among them
        included): ``records`` of them, ``entries`` of them manifest entries."""
        self._flush_met()
        self.stream.write(data)
        self.records += records
        self.entries += entries

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
