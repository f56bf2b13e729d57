"""The vault's per-file operations: head, upload and download, one file (or checksum) each.

Like every operation they take an item and return a row, so they run the same in the
CLI's threads and on Celery workers; the stores come from the executor's pool, made once
per process. What they raise becomes the file's row in ``dmp_cli.ops.run_batch``; a store
that cannot be used at all (no bucket, no credentials) gives a row marked ``fatal``, so
that the run stops instead of failing millions of files alike.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from hashlib import sha256
from typing import Any, cast

from dmp_cli.digest import digest_fd
from dmp_cli.errors import (
    ColdObject,
    IntegrityError,
    ObjectExists,
    ObjectMissing,
    PathRefused,
    StoreError,
    TargetUnusable,
)
from dmp_cli.fsutil import PendingFile, open_parent, target_parts
from dmp_cli.ops import Context, Operation
from dmp_cli.packing import read_member
from dmp_cli.packs.config import pack_key
from dmp_cli.quoting import quote_name
from dmp_cli.restore import AttributesRefused, apply_at, apply_fd, is_link, link_beside
from dmp_cli.retry import with_retries
from dmp_cli.rows import Item, Row, base_row
from dmp_cli.store import ObjectState, OnBytes, Store, Vault


def _entry(item: Item, ctx: Context) -> Row:
    """What every row of a manifest entry carries, failed or not."""
    return base_row(item, digest=item["digest"])


def _object(item: Item, ctx: Context) -> str:
    """The vault object of a manifest entry, named in the message of an unforeseen error."""
    return ctx.vault().url_of(item["digest"])


def _entries(func: Callable[[Item, Context], Row]) -> Callable[[Item, Context], Row]:
    """An operation on a manifest entry: a later entry with the content of an earlier one
    is answered from the first one's row (each checksum is asked about once)."""

    def run(item: Item, ctx: Context) -> Row:
        base = _entry(item, ctx)
        if item.get("same"):
            return {**base, "status": "same"}
        return {**base, **func(item, ctx)}

    run.__name__ = func.__name__
    return run


# ------------------------------------------------------------------ head


# A present object's row says its storage class and restore (``state``: the list that
# ``ObjectState.fields`` makes), told by the HEAD, by the listing that planned the run
# (the item's ``listed_state``), or for a member of a pack by its pack's HEAD, made once
# a pack in a process (``PACK_STATES``).


@_entries
def head_op(item: Item, ctx: Context) -> Row:
    packed = item.get("packed")
    if packed is not None:  # in a pack, as the catalog says: no request but its pack's
        row: dict[str, Any] = {"status": "present", "bytes": int(packed[2]), "packed": packed[0]}
        state = PACK_STATES.get(ctx.vault().store, pack_key(packed[0]))
        if state is not None:
            row["state"] = state.fields()
        return cast(Row, row)
    listed = item.get("listed")
    if listed is not None:  # planned by listing: answered by it, no request
        if listed < 0:
            return {"status": "missing"}
        row = {"status": "present", "bytes": listed}
        told = cast(dict[str, Any], item).get("listed_state")
        if told is not None:
            row["state"] = told
        return cast(Row, row)
    info = ctx.vault().head(item["digest"])
    if info is None:
        return {"status": "missing"}
    state = info.state or ObjectState(None)  # a store that tells no state has no classes
    return cast(Row, {"status": "present", "bytes": info.size, "state": state.fields()})


class PackStates:
    """The states of packs, each asked of the store once (one HEAD) for all the members
    a process answers for, whichever of its threads asks first; kept for ``ttl``
    seconds, as a pack's class and restore change (a lifecycle rule, a restore), and a
    worker serves run after run. A pack the store cannot tell about (gone, or the HEAD
    failing) has no state: its members are in the vault all the same, as the catalog
    says, and their rows say nothing of a state. A HEAD that failed transiently (after
    its retries) is made again for the next member; one refused is not."""

    def __init__(self, ttl: float = 60.0, bound: int = 4096) -> None:
        self.ttl = ttl
        self.bound = bound
        self._lock = threading.Lock()
        self._asked: dict[tuple[str, str], tuple[float, Future[ObjectState | None]]] = {}

    def get(self, store: Store, key: str) -> ObjectState | None:
        at = (store.url, key)
        now = time.monotonic()
        with self._lock:
            asked = self._asked.get(at)
            mine = asked is None or now - asked[0] > self.ttl
            if mine:
                if len(self._asked) >= self.bound:
                    self._asked.clear()
                answer: Future[ObjectState | None] = Future()
                self._asked[at] = (now, answer)
            else:
                assert asked is not None
                answer = asked[1]
        if mine:
            try:
                answer.set_result(with_retries(lambda: store.object_state(key)))
            except StoreError as exc:
                answer.set_result(None)
                if exc.transient:  # the store may answer the next member's question
                    with self._lock:
                        self._asked.pop(at, None)
            except BaseException as exc:
                answer.set_exception(exc)
                with self._lock:
                    self._asked.pop(at, None)
                raise
        return answer.result()


PACK_STATES = PackStates()


# ------------------------------------------------------------------ upload


@_entries
def upload_op(item: Item, ctx: Context) -> Row:
    """Archive one file: skip it if archived, else upload it to the vault, to
    ``DMP_ARCHIVE_DEFAULT`` or under ``--path`` (then into the vault by server-side copy)."""
    options = ctx.options
    vault = ctx.vault()
    digest = item["digest"]
    source = ctx.path(item["path"])
    packed = item.get("packed")
    if packed is not None and not options.all:  # in a pack: this run's, or an earlier one's
        to = vault.store.key_url(pack_key(packed[0]))
        if item.get("packed_new"):
            return {"to": to, "status": "uploaded", "bytes": int(packed[2]), "packed": packed[0]}
        return {"to": to, "status": "skipped", "packed": packed[0]}
    if "pack_error" in item and not options.all:  # its pack was not stored: why
        raise StoreError(str(item["pack_error"]), transient=bool(item.get("pack_transient")))
    # Planned by listing, a checksum whose object a listing saw needs no request; one it
    # did not see is asked about as ever (a put-if-absent, or a HEAD), never assumed absent.
    listed = item.get("listed", -1) >= 0
    if listed and not options.all:  # as a HEAD or a refused put-if-absent would say
        return {"to": vault.url_of(digest), "status": "skipped"}
    if options.dest_mode is None and not options.dry_run:
        return _upload_to_vault(item, source, vault, ctx.on_bytes, options.storage_class)
    in_vault = listed or vault.head(digest) is not None
    if in_vault and not options.all:
        return {"status": "skipped", "to": vault.url_of(digest)}
    if options.dest_mode is None:
        target, key = vault.store, vault.key(digest)
    else:
        target, key = ctx.dest(), _dest_key(item, options.dest_mode)
    already = target is not vault.store and target.has(key, digest)
    to = target.key_url(key)
    if options.dry_run:
        size = 0 if already else item.get("size") or 0
        return {"to": to, "status": "skipped" if already else "would-upload", "bytes": size}
    sent = 0
    if not already:
        # In the default class: the vault's copy takes the storage class. A staging
        # bucket's object goes soon, and an archive class would bill it for months;
        # S3 copies no GLACIER or DEEP_ARCHIVE object that is not restored.
        try:
            sent = target.put_file(key, source, digest, item.get("size") or 0, ctx.on_bytes)
        except ObjectExists:  # another uploader of this content finished first
            already = True
    if options.dest_mode == "path" and not in_vault:
        vault.copy_from(target, key, digest, options.storage_class)
    return {"to": to, "status": "skipped" if already else "uploaded", "bytes": sent}


def _upload_to_vault(
    item: Item, source: str, vault: Vault, on_bytes: OnBytes | None, storage_class: str | None
) -> Row:
    """Straight into the vault: one put-if-absent, no separate question first."""
    digest = item["digest"]
    to = vault.url_of(digest)
    try:
        size = item.get("size") or 0
        sent = vault.put_file(digest, source, size, on_bytes, True, storage_class)
    except ObjectExists:
        return {"to": to, "status": "skipped"}
    except OSError:
        # A file gone since the manifest was made needs no upload if its content is in.
        if vault.head(digest) is not None:
            return {"to": to, "status": "skipped"}
        raise
    return {"to": to, "status": "uploaded", "bytes": sent}


def _dest_key(item: Item, mode: str) -> str:
    if mode == "default":  # a staging bucket an ingest pipeline empties into the vault
        return item["digest"]
    return path_key(item["path"])


def path_key(path: str) -> str:
    """The key under ``--path`` for a manifest path: normalised, relative, UTF-8."""
    key = posixpath.normpath(path).lstrip("/")
    if key in (".", "..") or key.startswith("../"):
        raise PathRefused("'..' leaves the working directory: no key under --path for it")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise PathRefused("the name is not valid UTF-8, which S3 keys must be") from None
    return key


# ------------------------------------------------------------------ download


# A target that takes no more files fails every later file alike, so a fetch stops at the
# first such failure (as it does when the vault has no bucket) rather than grind through
# a million files: a full filesystem (ENOSPC) or quota (EDQUOT) does not empty itself
# while dmp runs, and a read-only one (EROFS) stays so. The files already fetched stay,
# and a fetch run again once there is room skips them. A permission denied (EACCES,
# EPERM) fails that file alone: permissions differ from directory to directory.
TARGET_UNUSABLE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


@_entries
def download_op(item: Item, ctx: Context) -> Row:
    """Bring one vault object to its manifest path: through a pending file in the target
    directory, verified, then named. A local file with the right content is left alone.
    One whose object is in cold storage comes back marked ``cold`` (the object's key), with
    its item, for the run to fetch once the object is restored (dmp_cli.runs.restoring)."""
    if "cold_error" in item:  # its object's restore was refused, or the object is gone
        raise StoreError(str(item["cold_error"]))
    try:
        return _download(item, ctx)
    except ColdObject as exc:
        packed = item.get("packed")
        key = pack_key(packed[0]) if packed is not None else ctx.vault().key(item["digest"])
        row: Row = {"status": "failed", "error": str(exc), "bytes": 0, "cold": key}
        row["item"] = dict(item)
        if exc.storage_class is not None:  # as the HEAD said: no need to ask again
            row["cold_state"] = [exc.storage_class, exc.restore]
        return row
    except OSError as exc:
        if exc.errno not in TARGET_UNUSABLE:
            raise
        # Said by the run as it stops, so the name is quoted here as the CLI quotes names.
        name = quote_name(item["path"]).decode("utf-8", "surrogateescape")
        raise TargetUnusable(
            f"{name}: {exc.strerror}; fetch stopped, as no later file could be written"
        ) from exc


def _download(item: Item, ctx: Context) -> Row:
    options = ctx.options
    digest = item["digest"]
    parts = target_parts(item["path"], options.absolute_names)
    dir_fd = open_parent(parts, make=not options.dry_run, cwd=ctx.work.cwd)
    try:
        name = parts[-1]
        meta = item.get("meta")
        if is_link(meta):  # made at the end of the run, with the other links
            return {"status": "would-fetch" if options.dry_run else "fetched", "bytes": 0}
        local = _local_digest(dir_fd, name) if dir_fd is not None else None
        if local == digest:
            if meta and dir_fd is not None and not options.dry_run:
                _refused(apply_at(dir_fd, name, meta, options))
            return {"status": "present"}
        if local is not None and not options.overwrite:
            raise PathRefused(
                f"exists with another checksum ({local[:12]}…); use --overwrite to replace it"
            )
        vault = ctx.vault()
        if options.dry_run:
            if item.get("packed") is not None:
                return {"status": "would-fetch", "bytes": int(item["packed"][2])}
            info = vault.head(digest)
            if info is None:
                raise ObjectMissing(digest)
            return {"status": "would-fetch", "bytes": info.size}
        assert dir_fd is not None
        finish = partial(apply_fd, meta=meta, options=options) if meta else None
        first = meta.get("link") if meta else None
        linked = None
        if first is not None:
            linked = _link_to_first(first, digest, dir_fd, name, local is not None, finish, ctx)
        if linked is not None:  # a hard link of a name fetched before: counted as fetched
            size, refused = linked
        else:
            size, refused = _fetch_into(
                vault,
                digest,
                dir_fd,
                name,
                replace=local is not None,
                on_bytes=ctx.on_bytes,
                finish=finish,
                packed=item.get("packed"),
            )
        _refused(refused)
        return {"status": "fetched", "bytes": size}
    finally:
        if dir_fd is not None:
            os.close(dir_fd)


def _refused(refused: str | None) -> None:
    """The file is in place with everything else it records; what the target refused of
    its extended attributes fails its row, in one line."""
    if refused is not None:
        raise AttributesRefused(refused)


def _link_to_first(
    first: str,
    digest: str,
    dir_fd: int,
    name: str,
    replace: bool,
    finish: Callable[[int], str | None] | None,
    ctx: Context,
) -> tuple[int, str | None] | None:
    """A later name of a file recorded with hard links, linked to its first name if that
    is in place with the recorded content (the very file linked is the one read), its
    metadata applied: its size, and what was refused. None, and nothing left behind,
    where it cannot be (the first name not fetched yet, or not fetched at all; another
    filesystem): the name is then fetched as any other, and linked at the end of the
    run if the first one is there by then."""
    try:
        source_parts = target_parts(first, ctx.options.absolute_names)
        source = open_parent(source_parts, make=False, cwd=ctx.work.cwd)
    except (OSError, PathRefused):
        return None
    if source is None:
        return None
    try:
        try:
            there = os.stat(source_parts[-1], dir_fd=source, follow_symlinks=False)
            if not stat.S_ISREG(there.st_mode):
                return None
            temp = link_beside(source, source_parts[-1], there, dir_fd, name)
        except OSError:
            return None
    finally:
        os.close(source)
    if temp is None:
        return None
    try:
        fd = os.open(temp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            got, size = digest_fd(fd)
            if got != digest:
                return None
            refused = finish(fd) if finish is not None else None
        finally:
            os.close(fd)
        if replace:
            os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        else:
            try:  # never clobber a file that appeared meanwhile
                os.link(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            except FileExistsError:
                raise PathRefused("appeared while it was being fetched; left untouched") from None
        return size, refused
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=dir_fd)


def _local_digest(dir_fd: int, name: str) -> str | None:
    """The sha256 of the file already at the target, None if there is none."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise PathRefused("is a symbolic link; dmp does not write through links")
    if not stat.S_ISREG(st.st_mode):
        raise PathRefused("exists and is not a regular file")
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        return digest_fd(fd)[0]
    finally:
        os.close(fd)


def _fetch_into(
    vault: Vault,
    digest: str,
    dir_fd: int,
    name: str,
    replace: bool,
    on_bytes: OnBytes | None = None,
    finish: Callable[[int], str | None] | None = None,
    packed: list[Any] | None = None,
) -> tuple[int, str | None]:
    """The object, verified, at ``name``: its size, and what ``finish`` said. ``finish``
    is given the verified file's descriptor before it goes into place (the recorded
    metadata, applied where the file is written); what it returns (attributes the
    target refused) does not keep the file out."""
    with PendingFile(dir_fd, name) as pending:
        with os.fdopen(pending.fd, "w+b", closefd=False) as stream:
            if packed is not None:  # its member of a pack, out of a ranged read of it
                data = read_member(vault.store, packed)
                if sha256(data).hexdigest() != digest:  # a read kept, or spoiled: once more
                    data = read_member(vault.store, packed, alone=True)
                stream.write(data)
                if on_bytes is not None:
                    on_bytes(len(data))
            else:
                vault.get_file(digest, stream, on_bytes)
            stream.flush()
            os.fsync(stream.fileno())
            stream.seek(0)
            got, size = digest_fd(stream.fileno())
            refused = None
            if got == digest and finish is not None:
                refused = finish(stream.fileno())
        if got != digest and packed is not None:
            pack = vault.store.key_url(pack_key(packed[0]))
            raise IntegrityError(
                f"{pack}: its member {vault.key(digest)} hashes to {got}, not to its name; "
                "not fetched"
            )
        if got != digest:
            raise IntegrityError(f"the vault's object hashes to {got}, not to its key; not fetched")
        try:  # never clobber a file that appeared while we fetched
            pending.publish(replace)
        except FileExistsError:
            raise PathRefused("appeared while it was being fetched; left untouched") from None
    return size, refused


# The operations of this module, as dmp_cli.ops.TABLE names them.
HEAD = Operation("head", head_op, "io", base=_entry, where=_object)
UPLOAD = Operation("upload", upload_op, "io", base=_entry, where=_object)
DOWNLOAD = Operation("download", download_op, "io", base=_entry, where=_object)


__all__ = [
    "DOWNLOAD",
    "HEAD",
    "UPLOAD",
    "PathRefused",
    "download_op",
    "head_op",
    "path_key",
    "upload_op",
]
