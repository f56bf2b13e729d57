"""The vault: a content-addressed store, where the object for a file is its sha256.

``Vault`` owns the key layout (``dmp_cli.layout``): callers speak of checksums, never of
keys, so that the layout is written down once. It knows nothing of S3 or directories: the
store beneath is passed in.
"""

from __future__ import annotations

from typing import BinaryIO

from dmp_cli.layout import digest_key
from dmp_cli.store import ObjectInfo, OnBytes, Store


class Vault:
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

    def put_file(
        self,
        digest: str,
        path: str,
        size: int,
        on_bytes: OnBytes | None = None,
        if_absent: bool = False,
    ) -> int:
        return self.store.put_file(digest_key(digest), path, digest, size, on_bytes, if_absent)

    def get_file(self, digest: str, stream: BinaryIO, on_bytes: OnBytes | None = None) -> int:
        return self.store.get_file(digest_key(digest), stream, on_bytes)

    def copy_from(self, source: Store, source_key: str, digest: str) -> None:
        """A server-side copy of ``source``'s object into this checksum's place."""
        self.store.copy(source, source_key, digest_key(digest), digest)
