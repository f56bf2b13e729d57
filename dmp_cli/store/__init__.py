"""Object stores: where the vault (and an archive's ``--path``) keeps its objects.

Two backends share one small interface and one key layout: ``s3://bucket/prefix`` (boto3)
and ``file:///dir`` (a directory: a laptop, a shared or tape-backed filesystem). The
per-file operations are written against ``Store`` and know neither. Over any of them,
``Vault`` speaks of checksums rather than keys; ``StorePool`` keeps the stores of a process.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import BinaryIO, Protocol

from dmp_cli.errors import UsageError
from dmp_cli.layout import digest_key, is_digest
from dmp_cli.options import StoreSpec
from dmp_cli.urls import parse_url

# Called with a number of bytes as they move, from any thread.
OnBytes = Callable[[int], None]


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    digest: str | None = None  # the sha256 recorded with the object, if the store keeps one
    # Its storage class and restore, where the answer told them (an S3 HEAD does).
    state: ObjectState | None = None


# The storage classes whose objects are read only once restored (S3's RestoreObject);
# the others (GLACIER_IR, STANDARD_IA, ONEZONE_IA, ...) are read at once.
NEEDS_RESTORE = frozenset({"GLACIER", "DEEP_ARCHIVE"})
# INTELLIGENT_TIERING's tiers that need one too, as a HEAD's ArchiveStatus names them.
ARCHIVE_TIERS = frozenset({"ARCHIVE_ACCESS", "DEEP_ARCHIVE_ACCESS"})


@dataclass(frozen=True)
class ObjectState:
    """An object's storage class and restore, as a HEAD tells them."""

    storage_class: str | None  # None: the store has no classes (a directory)
    restore: str | None = None  # "ongoing", "restored", or None (never asked, or expired)
    expiry: str | None = None  # until when a restored copy can be read, as the store says
    archive_status: str | None = None  # INTELLIGENT_TIERING: the archive tier it is in

    @property
    def cold(self) -> bool:
        """Whether the object is kept where it cannot be read without a restore."""
        return self.storage_class in NEEDS_RESTORE or self.archive_status in ARCHIVE_TIERS

    @property
    def readable(self) -> bool:
        return not self.cold or self.restore == "restored"

    def fields(self) -> list[str | None]:
        """What a row carries of it (``--vault --json`` shows them): its storage class,
        its restore and, for a restored copy, when that goes (ISO 8601, UTC, where the
        store's date can be read)."""
        expiry = _iso_date(self.expiry) if self.restore == "restored" else None
        return [self.storage_class, self.restore, expiry]


# The restore of an object in a cold class that a listing could not tell: the store
# refused to list restores (ListObjectsV2's OptionalObjectAttributes).
RESTORE_UNKNOWN = "unknown"


def _iso_date(text: str | None) -> str | None:
    """A store's date (a HEAD's ``Fri, 23 Dec 2012 00:00:00 GMT``, or ISO 8601 already)
    as ISO 8601 in UTC; as it came if it reads as neither."""
    if not text:
        return text
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return text
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Upload:
    """A multipart upload begun and neither completed nor aborted: its parts are kept,
    and billed, until one or the other."""

    key: str
    upload_id: str
    initiated: datetime  # as the store reports it, timezone-aware


class Store(Protocol):
    url: str
    # Whether the store takes objects in parts, which an uploader killed midway leaves
    # behind: S3 does, a directory does not.
    multipart: bool

    def key_url(self, key: str) -> str:
        """The object's address, for messages."""
        ...

    def check(self, create: bool = False) -> None:
        """Raise StoreError with one clear line if the store cannot be used at all;
        ``create`` makes what a first upload needs (an archive's directory)."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """What is at ``key``, or None if nothing is."""
        ...

    def has(self, key: str, digest: str) -> bool:
        """Whether ``key`` holds exactly the content with this sha256."""
        ...

    def list_keys(self, prefix: str) -> Iterator[tuple[str, int]]:
        """The objects whose keys start with ``prefix``, as (key, size), in no promised
        order; a request that fails raises StoreError. A listing that failed partway
        holds no answer: the caller lists again from the start, or not at all."""
        ...

    def put_file(
        self,
        key: str,
        path: str,
        digest: str,
        size: int,
        on_bytes: OnBytes | None = None,
        if_absent: bool = False,
        storage_class: str | None = None,
    ) -> int:
        """Store the file at ``key``, hashing the bytes as they are sent: if they do not
        hash to ``digest`` (the file changed), raise IntegrityError and store nothing.
        With ``if_absent``, raise ObjectExists instead if ``key`` already holds an object.
        ``storage_class`` (S3's StorageClass: GLACIER, STANDARD_IA...) is the object's,
        None the store's default; a store without classes ignores it."""
        ...

    def get_file(self, key: str, stream: BinaryIO, on_bytes: OnBytes | None = None) -> int:
        """Write the object's bytes to ``stream`` (seekable); raise ObjectMissing if absent."""
        ...

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """The ``length`` bytes of the object at ``start`` (one ranged GET); raise
        ObjectMissing if absent, and StoreError (one line naming the object) if the store
        answers with other bytes than those asked for and they cannot be cut from it."""
        ...

    def get_bytes(self, key: str) -> bytes | None:
        """A small object's bytes (a config, an index), or None if nothing is at ``key``."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store a small object whole, replacing what is at ``key``."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object at ``key``; nothing if it is not there."""
        ...

    def list_dated(self, prefix: str) -> Iterator[tuple[str, int, datetime]]:
        """As ``list_keys``, each object with when it was last written (timezone-aware)."""
        ...

    def list_states(self, prefix: str) -> Iterator[tuple[str, int, ObjectState]]:
        """As ``list_keys``, each object with its storage class and restore, in the same
        requests (a restore the store cannot list is ``RESTORE_UNKNOWN``)."""
        ...

    def copy(
        self,
        source: Store,
        source_key: str,
        key: str,
        digest: str,
        storage_class: str | None = None,
    ) -> None:
        """Copy an object of ``source`` (a store of the same kind) to ``key``, server-side,
        in ``storage_class`` (as ``put_file``)."""
        ...

    def uploads(self) -> Iterator[Upload]:
        """The multipart uploads under the store's prefix that are still incomplete."""
        ...

    def abort_upload(self, upload: Upload) -> bool:
        """Abort an incomplete upload and free its parts; False if it had already ended
        (completed or aborted by someone else)."""
        ...

    def object_state(self, key: str) -> ObjectState | None:
        """The object's storage class and restore (one HEAD), or None if absent."""
        ...

    def request_restore(self, key: str, days: int | None, tier: str) -> str:
        """Ask the store to restore a cold object for ``days`` (None: the store's own
        span, as INTELLIGENT_TIERING takes none) at ``tier`` (Bulk, Standard, Expedited):
        "requested", or "ongoing" if a restore is already under way. A refusal (access
        denied, an object not in a cold class, a store without restores) raises
        StoreError, one line in the store's words."""
        ...

    def close(self) -> None:
        """Let go of clients, connections and threads."""
        ...


class Vault:
    """The vault: a content-addressed store, where the object for a file is its sha256.

    It owns the key layout (``dmp_cli.layout``): callers speak of checksums, never of
    keys, so that the layout is written down once. It knows nothing of S3 or directories:
    the store beneath is passed in."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.url = store.url

    def key(self, digest: str) -> str:
        return digest_key(digest)

    def url_of(self, digest: str) -> str:
        """The address of a checksum's object, for messages."""
        return self.store.key_url(digest_key(digest))

    def check(self) -> None:
        self.store.check()

    def head(self, digest: str) -> ObjectInfo | None:
        return self.store.head(digest_key(digest))

    def listing(self, prefix: str) -> Iterator[tuple[str, int]]:
        """The checksums whose objects are under the key prefix ``prefix`` (``ab/`` or
        ``ab/cd/``), with their sizes: keys that are not a checksum's are passed over."""
        for key, size in self.store.list_keys(prefix):
            digest = key.replace("/", "")
            if len(digest) == 64 and is_digest(digest) and digest_key(digest) == key:
                yield digest, size

    def listing_states(self, prefix: str) -> Iterator[tuple[str, int, ObjectState]]:
        """As ``listing``, each checksum's object with its storage class and restore."""
        for key, size, state in self.store.list_states(prefix):
            digest = key.replace("/", "")
            if len(digest) == 64 and is_digest(digest) and digest_key(digest) == key:
                yield digest, size, state

    def put_file(
        self,
        digest: str,
        path: str,
        size: int,
        on_bytes: OnBytes | None = None,
        if_absent: bool = False,
        storage_class: str | None = None,
    ) -> int:
        return self.store.put_file(
            digest_key(digest), path, digest, size, on_bytes, if_absent, storage_class
        )

    def get_file(self, digest: str, stream: BinaryIO, on_bytes: OnBytes | None = None) -> int:
        return self.store.get_file(digest_key(digest), stream, on_bytes)

    def copy_from(
        self, source: Store, source_key: str, digest: str, storage_class: str | None = None
    ) -> None:
        """A server-side copy of ``source``'s object into this checksum's place."""
        self.store.copy(source, source_key, digest_key(digest), digest, storage_class)


def open_store(url: str, spec: StoreSpec) -> Store:
    """The store for a URL, its clients made from ``spec``."""
    location = parse_url(url)
    if location.scheme == "file":
        from dmp_cli.store.local import FileStore

        return FileStore(location.prefix)
    from dmp_cli.store.s3 import S3Store

    return S3Store.from_spec(location.netloc, location.prefix, spec)


class StorePool:
    """The stores of one process, made from their specs on first use and kept for the
    batches that follow: at most ``bound`` stores (a worker serves many jobs, each with
    a vault and perhaps a destination), the oldest closed when another comes, and all of
    them by ``close``. Thread-safe: the
    threads of a run all ask at once for the first files."""

    def __init__(self, bound: int = 8) -> None:
        self.bound = bound
        self._stores: OrderedDict[tuple[StoreSpec, str], Store] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, spec: StoreSpec, url: str) -> Store:
        key = (spec, url)
        with self._lock:
            store = self._stores.get(key)
            if store is not None:
                self._stores.move_to_end(key)
                return store
            store = self._stores[key] = open_store(url, spec)
            evicted = []
            while len(self._stores) > self.bound:
                evicted.append(self._stores.popitem(last=False)[1])
        for old in evicted:
            old.close()
        return store

    def vault(self, spec: StoreSpec) -> Vault:
        return Vault(self.get(spec, spec.vault))

    def dest(self, spec: StoreSpec) -> Store:
        if not spec.dest:
            raise UsageError("no archive destination was given")
        return self.get(spec, spec.dest)

    def close(self) -> None:
        with self._lock:
            stores = list(self._stores.values())
            self._stores.clear()
        for store in stores:
            store.close()
