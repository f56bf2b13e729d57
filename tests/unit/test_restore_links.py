"""What a fetch's items carry of hard links and extended attributes, and how refused
attributes and ACLs are worded."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from dmp_cli.meta import Companion, _acl_text, hard_link_key
from dmp_cli.restore import refused_words


def _record(path: str, ino: int, nlink: int, **more: object) -> dict[str, object]:
    return {
        "path": path,
        "type": "file",
        "entry": True,
        "mode": "0644",
        "mtime_ns": 1,
        "size": 3,
        "uid": 0,
        "gid": 0,
        "user": "root",
        "group": "root",
        "ctime_ns": 1,
        "ino": ino,
        "dev": 7,
        "nlink": nlink,
        **more,
    }


def _companion(tmp_path: Path, version: int, records: list[dict[str, object]]) -> Companion:
    path = tmp_path / "m.meta"
    lines = [{"format": "dmp-meta", "version": version}, *records, {"end": True}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return Companion(str(path), "m.meta", str(tmp_path / "m"), "m", version=version)


def test_later_names_of_a_file_are_marked_to_be_linked_to_the_first(tmp_path: Path) -> None:
    colour = {"user.color": base64.b64encode(b"blue").decode()}
    records = [
        _record("a", 10, 3, xattrs=colour),
        _record("b", 11, 1),
        _record("d/a2", 10, 3, xattrs=colour),
        _record("p", 12, 2),
        _record("a3", 10, 3, xattrs=colour),
        _record("p2", 12, 2),
    ]
    companion = _companion(tmp_path, 2, records)
    items = [{"path": r["path"], "digest": "0" * 64} for r in records]
    metas = [item["meta"] for item in companion.attach(items)]  # type: ignore[arg-type]
    assert [meta.get("link") for meta in metas] == [None, None, "a", None, "a", "p"]
    assert [meta["xattrs"] for meta in metas] == [colour, {}, colour, {}, colour, {}]


def test_an_older_companion_marks_nothing(tmp_path: Path) -> None:
    records = [_record("a", 10, 2), _record("b", 10, 2)]
    for record in records:
        for key in ("ctime_ns", "ino", "dev", "nlink"):
            del record[key]
    companion = _companion(tmp_path, 1, records)
    items = [{"path": r["path"], "digest": "0" * 64} for r in records]
    metas = [item["meta"] for item in companion.attach(items)]  # type: ignore[arg-type]
    assert all("link" not in meta and "xattrs" not in meta for meta in metas)
    assert [hard_link_key(r) for r in records] == [None, None]


def test_only_files_with_more_than_one_link_are_hard_linked() -> None:
    assert hard_link_key(_record("a", 10, 2)) == (7, 10)
    assert hard_link_key(_record("a", 10, 1)) is None
    assert hard_link_key({**_record("d", 10, 4), "type": "dir"}) is None
    assert hard_link_key({**_record("a", 10, 2), "entry": False}) is None


def _acl(*entries: tuple[int, int, int]) -> bytes:
    """An ACL as Linux keeps it in ``system.posix_acl_*``: version 2, then entries."""
    raw = (2).to_bytes(4, "little")
    for tag, perm, ident in entries:
        raw += tag.to_bytes(2, "little") + perm.to_bytes(2, "little") + ident.to_bytes(4, "little")
    return raw


def test_an_acl_is_shown_as_getfacl_shows_it() -> None:
    anyone = 0xFFFFFFFF
    raw = _acl(
        (1, 6, anyone), (2, 4, 4242), (4, 4, anyone), (8, 6, 4243), (16, 6, anyone), (32, 0, anyone)
    )
    assert _acl_text(raw) == (
        "user::rw-,user:4242:r--,group::r--,group:4243:rw-,mask::rw-,other::---"
    )
    assert _acl_text(b"\x01\x00\x00\x00") is None  # another version
    assert _acl_text(_acl((64, 7, 0))) is None  # an unknown tag
    assert _acl_text(raw[:-1]) is None


def test_refused_attributes_are_said_in_one_line() -> None:
    eperm = "Operation not permitted"
    assert (
        refused_words([("trusted.a", eperm)])
        == "extended attribute trusted.a not restored: Operation not permitted"
    )
    assert (
        refused_words([("trusted.a", eperm), ("security.b", eperm)])
        == "extended attributes trusted.a, security.b not restored: Operation not permitted"
    )
    assert refused_words([("trusted.a", eperm), ("user.b", "No space left on device")]) == (
        "extended attributes not restored: trusted.a (Operation not permitted), "
        "user.b (No space left on device)"
    )
