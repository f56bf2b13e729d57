"""Multipart tidy-up: the incomplete uploads of a key, aborted once its object is complete.

A process killed mid-upload leaves its multipart upload incomplete, billed until aborted;
so does a CreateMultipartUpload whose answer was lost (the SDK, trying again, begins a
second upload). An upload of a key, once complete, aborts every incomplete upload of that
key it then finds: keys are checksums, so an upload it cuts short was sending the very
object now there, and its uploader, finding it, counts its file as already archived.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from functools import partial
from typing import Any

from botocore.exceptions import ClientError

from dmp_cli.errors import StoreError
from dmp_cli.retry import with_retries
from dmp_cli.store.s3.errors import NO_UPLOAD_LISTING, error_code, translated

log = logging.getLogger("dmp_cli.store.s3")  # the S3 backend's one logger


def list_uploads(client: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """The incomplete multipart uploads of the keys that begin with ``prefix``."""
    pages = client.get_paginator("list_multipart_uploads")
    for page in pages.paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Uploads", [])


class Tidy:
    """The sweep of a store's stale uploads, key by key, until the store refuses to list
    or abort them: then never again, said once."""

    def __init__(self, client: Any, bucket: str, url: str) -> None:
        self._client = client
        self._bucket = bucket
        self._url = url
        self._lock = threading.Lock()
        self._tidy = True  # abort the stale uploads of a key, until the store refuses

    def sweep(self, key: str) -> None:
        """Abort the incomplete uploads of exactly ``key`` (a full key), listed once its
        object is complete: a killed uploader's; one whose CreateMultipartUpload answer
        was lost, this very upload's included; a live one of the same content (another
        batch), which this one makes needless. Tidying up is a courtesy, not the upload's
        business: a store that will not list or abort is left to its lifecycle rule."""
        try:
            for upload_id in with_retries(lambda: self._incomplete(key)):
                with_retries(partial(self._abort, key, upload_id))
        except StoreError as exc:
            log.debug("%s: stale multipart uploads left: %s", self._url, exc)

    def _incomplete(self, key: str) -> list[str]:
        if not self._tidy:
            return []
        with translated(self._url):
            try:
                uploads = list_uploads(self._client, self._bucket, key)
                return [u["UploadId"] for u in uploads if u["Key"] == key]
            except ClientError as exc:
                if error_code(exc) not in NO_UPLOAD_LISTING:
                    raise
                self._untidy(exc)
                return []

    def _abort(self, key: str, upload_id: str) -> None:
        if not self._tidy:
            return
        with translated(self._url):
            try:
                self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=key, UploadId=upload_id
                )
            except ClientError as exc:
                # NoSuchUpload: it ended meanwhile (completed, or aborted by another).
                if error_code(exc) in NO_UPLOAD_LISTING:
                    self._untidy(exc)
                elif error_code(exc) != "NoSuchUpload":
                    raise

    def _untidy(self, exc: ClientError) -> None:
        """A refusal stops the tidying for good, said once."""
        with self._lock:
            said, self._tidy = not self._tidy, False
        if not said:
            log.debug(
                "%s: the store refuses to list or abort multipart uploads (%s); stale ones "
                "are left to the bucket's lifecycle rule",
                self._url,
                error_code(exc),
            )
