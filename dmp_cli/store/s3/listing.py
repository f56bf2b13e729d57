"""The keys under a prefix of an S3 store: ListObjectsV2, a page of up to 1,000 at a time.

A page is taken only whole: an answer cut short, or one whose count of keys does not
match the keys it holds, is a transient StoreError, and the caller lists the prefix
again from its start (``dmp_cli.retry``); so a listing is never half-read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from dmp_cli.errors import StoreError
from dmp_cli.layout import join_key
from dmp_cli.store.s3.errors import translated

PAGE_KEYS = 1000  # what S3 returns at most per request, and asks for by default


class KeyListing:
    """``list_keys`` and ``list_dated`` for ``S3Store``: the objects under a key prefix,
    page by page."""

    client: Any
    bucket: str
    prefix: str

    def key_url(self, key: str) -> str:
        raise NotImplementedError

    def list_keys(self, prefix: str) -> Iterator[tuple[str, int]]:
        for key, entry in self._entries(prefix):
            yield key, int(entry["Size"])

    def list_dated(self, prefix: str) -> Iterator[tuple[str, int, datetime]]:
        url = self.key_url(prefix)
        for key, entry in self._entries(prefix):
            written = entry.get("LastModified")
            if not isinstance(written, datetime) or written.tzinfo is None:
                raise StoreError(
                    f"{url}: a listing's entry came without its LastModified (cut short?)",
                    transient=True,
                )
            yield key, int(entry["Size"]), written

    def _entries(
        self, prefix: str, fetch: Callable[[dict[str, Any], str], dict[str, Any]] | None = None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Each object under ``prefix`` as its key and its entry in a page; ``fetch(args,
        url)`` asks for each page, if not a plain ListObjectsV2."""
        # The keys yielded are relative to the store's prefix, as the other requests' are.
        strip = len(join_key(self.prefix, ""))
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": join_key(self.prefix, prefix),
            "MaxKeys": PAGE_KEYS,
        }
        url = self.key_url(prefix)
        while True:
            if fetch is not None:
                page = fetch(args, url)
            else:
                with translated(url, missing="no such bucket"):
                    page = self.client.list_objects_v2(**args)
            contents = _checked(page, url)
            for entry in contents:
                yield entry["Key"][strip:], entry
            if not page["IsTruncated"]:
                return
            args["ContinuationToken"] = page["NextContinuationToken"]


def _checked(page: dict[str, Any], url: str) -> list[dict[str, Any]]:
    """A page's entries, if the page came whole; else a transient StoreError."""
    contents = page.get("Contents") or []
    truncated = page.get("IsTruncated")
    count = page.get("KeyCount")
    whole = (
        isinstance(truncated, bool)
        and (count is None or count == len(contents))
        and (not truncated or bool(page.get("NextContinuationToken")))
        and all(isinstance(e.get("Key"), str) and isinstance(e.get("Size"), int) for e in contents)
    )
    if not whole:
        raise StoreError(f"{url}: a listing's page came incomplete (cut short?)", transient=True)
    return list(contents)
