"""Object stores: where the vault (and an archive's ``--path``) keeps its objects.

Two backends share one small interface and one key layout: ``s3://bucket/prefix`` (boto3)
and ``file:///dir`` (a directory: a laptop, a shared or tape-backed filesystem). The
per-file operations are written against ``Store`` and know neither.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from dmp_cli.errors import UsageError

# Called with a number of bytes as they move, from any thread.
OnBytes = Callable[[int], None]


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    digest: str | None = None  # the sha256 recorded with the object, if the store keeps one


class Store(Protocol):
    url: str

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


@dataclass(frozen=True)
class Location:
    scheme: str  # "s3" or "file"
    netloc: str  # the bucket, for s3
    prefix: str  # inside the bucket, or the directory for file


def parse_url(url: str) -> Location:
    """``s3://bucket/prefix`` or ``file:///dir``; anything else is a usage error."""
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise UsageError(f"{url}: an S3 URL needs a bucket (s3://bucket/prefix)")
        return Location("s3", parts.netloc, parts.path.strip("/"))
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise UsageError(f"{url}: a file URL needs an absolute directory (file:///dir)")
        return Location("file", "", unquote(parts.path).rstrip("/") or "/")
    raise UsageError(f"{url}: not an s3://bucket/prefix or file:///dir URL")


def open_store(url: str, config: Mapping[str, Any]) -> Store:
    """The store for a URL, its clients made from ``config`` (the run's plain settings)."""
    location = parse_url(url)
    if location.scheme == "file":
        from dmp_cli.store.local import FileStore

        return FileStore(location.prefix)
    from dmp_cli.store.s3 import S3Store

    return S3Store.from_config(location.netloc, location.prefix, config)


def same_kind(a: str, b: str) -> bool:
    """Whether a server-side copy between the two URLs is possible."""
    return parse_url(a).scheme == parse_url(b).scheme
