"""Object stores: where the vault (and an archive's ``--path``) keeps its objects.

Two backends share one small interface and one key layout: ``s3://bucket/prefix`` (boto3)
and ``file:///dir`` (a directory: a laptop, a shared or tape-backed filesystem). The
per-file operations are written against ``Store`` and know neither.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, BinaryIO, Protocol

from dmp_cli.errors import UsageError
from dmp_cli.options import StoreSpec
from dmp_cli.urls import parse_url

if TYPE_CHECKING:
    from dmp_cli.vault import Vault

# Called with a number of bytes as they move, from any thread.
OnBytes = Callable[[int], None]


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    digest: str | None = None  # the sha256 recorded with the object, if the store keeps one


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

    def put_file(
        self,
        key: str,
        path: str,
        digest: str,
        size: int,
        on_bytes: OnBytes | None = None,
        if_absent: bool = False,
    ) -> int:
        """Store the file at ``key``, hashing the bytes as they are sent: if they do not
        hash to ``digest`` (the file changed), raise IntegrityError and store nothing.
        With ``if_absent``, raise ObjectExists instead if ``key`` already holds an object."""
        ...

    def get_file(self, key: str, stream: BinaryIO, on_bytes: OnBytes | None = None) -> int:
        """Write the object's bytes to ``stream`` (seekable); raise ObjectMissing if absent."""
        ...

    def copy(self, source: Store, source_key: str, key: str, digest: str) -> None:
        """Copy an object of ``source`` (a store of the same kind) to ``key``, server-side."""
        ...

    def uploads(self) -> Iterator[Upload]:
        """The multipart uploads under the store's prefix that are still incomplete."""
        ...

    def abort_upload(self, upload: Upload) -> bool:
        """Abort an incomplete upload and free its parts; False if it had already ended
        (completed or aborted by someone else)."""
        ...

    def close(self) -> None:
        """Let go of clients, connections and threads."""
        ...


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
        from dmp_cli.vault import Vault

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
