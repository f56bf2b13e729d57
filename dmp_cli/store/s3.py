"""The vault on S3 (or MinIO, Ceph, any S3-compatible store): ``s3://bucket/prefix``.

Small files go in one PUT from memory, so the bytes hashed are the bytes sent, with
``ChecksumSHA256`` for the server to check too. Big files go multipart through s3transfer,
read through ``_HashingReader``: s3transfer reads a non-seekable stream once, in order,
into the parts it sends, so the reader sees exactly the uploaded bytes and can fail the
upload (s3transfer then aborts it) before it is completed. Multipart SHA-256 checksums
are composite, so every object also carries its sha256 as ``x-amz-meta-sha256``.

A process killed mid-upload leaves its multipart upload incomplete, billed until aborted;
so does a CreateMultipartUpload whose answer was lost (the SDK, trying again, begins a
second upload). An upload of a key, once complete, aborts every incomplete upload of that
key it then finds: keys are checksums, so an upload it cuts short was sending the very
object now there, and its uploader, finding it, counts its file as already archived.

Every object carries, besides its sha256, the token of the upload that wrote it
(``x-amz-meta-dmp-upload``): when a put-if-absent is refused after an attempt whose
answer was lost, the token tells whether that attempt wrote the object (this run
uploaded it) or it was there before (skipped).

botocore's errors are translated here, and nowhere else, into one-line StoreErrors.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, BinaryIO, cast

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.parsers import ResponseParserError
from s3transfer.exceptions import (
    RetriesExceededError,
    S3DownloadFailedError,
    S3UploadFailedError,
)
from s3transfer.manager import TransferConfig, TransferManager
from s3transfer.subscribers import BaseSubscriber

from dmp_cli.aws import TRANSFER_CONCURRENCY, s3_client
from dmp_cli.errors import (
    FatalStoreError,
    IntegrityError,
    ObjectExists,
    ObjectMissing,
    StoreError,
)
from dmp_cli.layout import join_key
from dmp_cli.options import StoreSpec
from dmp_cli.retry import with_retries
from dmp_cli.store import ObjectInfo, OnBytes, Store, Upload

log = logging.getLogger(__name__)

MiB = 1 << 20
MULTIPART_THRESHOLD = 16 * MiB
MULTIPART_CHUNKSIZE = 16 * MiB  # half the requests of s3transfer's 8 MiB: measured faster
# Big files go one at a time per process, their parts in parallel: a server assembles a
# completed upload while the next file's parts arrive, instead of all files at the end,
# and the parts held in memory stay bounded. Measured faster than two or four at once.
MULTIPART_FILES = 1
META_KEY = "sha256"  # sent as x-amz-meta-sha256
WRITER_KEY = "dmp-upload"  # sent as x-amz-meta-dmp-upload: the upload's token
# Below this size a put-if-absent replaces the HEAD that would precede the PUT: one
# request instead of two. The PUT goes with "Expect: 100-continue", so a store that
# already has the object refuses it (412) before the body is sent. Only on a store that
# has shown it refuses (see _ConditionalPuts): some accept the header and overwrite.
CONDITIONAL_PUT_MAX = 1 << 20
PROBE_NAME = ".dmp-conditional-put-probe"

_THROTTLED = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "RequestThrottled",
    "503",
}
_DENIED = {"AccessDenied", "403", "AllAccessDisabled", "AccountProblem"}
_BAD_CREDENTIALS = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
}
_MISSING = {"404", "NoSuchKey", "NotFound"}
_PRECONDITION_FAILED = {"PreconditionFailed", "412"}
_TAKEN, _REFUSED, _REFUSED_ON_RETRY = "taken", "refused", "refused on a retry"
# A store (or a user's policy) without ListMultipartUploads or AbortMultipartUpload.
_NO_UPLOAD_LISTING = _DENIED | {"NotImplemented", "501", "MethodNotAllowed", "405"}


class S3Store:
    """Objects under ``prefix`` in ``bucket``; one client and one transfer manager, shared
    by the threads of a process (both are thread-safe; neither survives a fork)."""

    multipart = True

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str,
        transfer_config: TransferConfig | None = None,
        conditional_put: str = "auto",
        learned: ConditionalPuts | None = None,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self.config = transfer_config or TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=MULTIPART_CHUNKSIZE,
            max_request_concurrency=TRANSFER_CONCURRENCY,
        )
        self._manager: TransferManager | None = None
        self._lock = threading.Lock()
        self._big_files = threading.BoundedSemaphore(MULTIPART_FILES)
        # Put-if-absent (If-None-Match: *): "auto" once the store has shown that it
        # refuses one for a key that exists, "on" trusted, "off" never used.
        self.conditional_put = conditional_put
        self._learned = learned or LEARNED
        # The tokens of uploads that failed transiently, by key: their answer may have
        # been lost after the store wrote the object, with this token (tried again, an
        # upload sends the same one).
        self._unanswered = _Tokens()
        self._conditional = conditional_put != "off"  # until a store answers 501
        self._tidy = True  # abort the stale uploads of a key, until the store refuses

    @classmethod
    def from_spec(cls, bucket: str, prefix: str, spec: StoreSpec) -> S3Store:
        with translated(f"s3://{bucket}"):
            client = s3_client(spec)
        transfer_config = TransferConfig(
            multipart_threshold=spec.multipart_threshold or MULTIPART_THRESHOLD,
            multipart_chunksize=spec.multipart_chunksize or MULTIPART_CHUNKSIZE,
            max_request_concurrency=TRANSFER_CONCURRENCY,
        )
        return cls(client, bucket, prefix, transfer_config, spec.conditional_put)

    def close(self) -> None:
        with self._lock:
            manager, self._manager = self._manager, None
        if manager is not None:
            manager.shutdown()
        self.client.close()

    @property
    def manager(self) -> TransferManager:
        # Made on first use, since its threads must start in the process that uses them;
        # once, under a lock, since the first big files all ask at the same moment and
        # one manager per file would multiply the concurrency and the memory in flight.
        with self._lock:
            if self._manager is None:
                self._manager = TransferManager(self.client, self.config)
            return self._manager

    def _key(self, key: str) -> str:
        return join_key(self.prefix, key)

    def key_url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def check(self, create: bool = False) -> None:  # prefixes need no making
        with_retries(self._check)

    def _check(self) -> None:
        with translated(f"s3://{self.bucket}", missing="no such bucket"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                # A user allowed only Get/PutObject may not HEAD the bucket: let the
                # object requests decide.
                if _code(exc) not in _DENIED:
                    raise

    def head(self, key: str) -> ObjectInfo | None:
        reply = self._head(key)
        if reply is None:
            return None
        return ObjectInfo(reply["ContentLength"], reply["Metadata"].get(META_KEY))

    def _head(self, key: str) -> dict[str, Any] | None:
        """The HEAD's answer (its size checked, its metadata a dict), None if no object."""
        with translated(self.key_url(key)):
            try:
                reply: dict[str, Any] = self.client.head_object(
                    Bucket=self.bucket, Key=self._key(key)
                )
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    return None
                raise
        # An answer cut inside its headers can still parse, without the ones cut off.
        if not isinstance(reply.get("ContentLength"), int):
            raise StoreError(
                f"{self.key_url(key)}: the answer to a HEAD came without its Content-Length "
                "(cut short?)",
                transient=True,
            )
        reply["Metadata"] = reply.get("Metadata") or {}
        return reply

    def _writer(self, key: str) -> str | None:
        """The token of the upload that wrote the object at ``key`` (None: no object, or
        written by something other than dmp)."""
        reply = self._head(key)
        return None if reply is None else reply["Metadata"].get(WRITER_KEY)

    def has(self, key: str, digest: str) -> bool:
        info = self.head(key)
        return info is not None and info.digest == digest

    def put_file(
        self,
        key: str,
        path: str,
        digest: str,
        size: int,
        on_bytes: OnBytes | None = None,
        if_absent: bool = False,
    ) -> int:
        # Tried again after a transient failure, an upload sends the token it sent then:
        # that attempt's answer may have been lost after the store wrote the object.
        lost = self._unanswered.get(key)
        token = lost or uuid.uuid4().hex
        try:
            sent = self._put_file(key, path, digest, token, bool(lost), on_bytes, if_absent)
        except StoreError as exc:
            if exc.transient:
                self._unanswered.add(key, token)
            else:
                self._unanswered.pop(key)
            raise
        self._unanswered.pop(key)
        return sent

    def _put_file(
        self,
        key: str,
        path: str,
        digest: str,
        token: str,
        lost: bool,
        on_bytes: OnBytes | None,
        if_absent: bool,
    ) -> int:
        with open(path, "rb") as source:
            size = os.fstat(source.fileno()).st_size
            if if_absent and (size >= CONDITIONAL_PUT_MAX or not self._trusts_conditional_put(key)):
                # Asking first is cheap beside sending a big file.
                reply = self._head(key)
                if reply is not None:
                    if lost and reply["Metadata"].get(WRITER_KEY) == token:
                        return self._sent(size, on_bytes)  # as a 412 in _put_single
                    raise ObjectExists(f"{self.key_url(key)}: already there")
                if_absent = False
            if size < self.config.multipart_threshold:
                return self._put_single(key, source, digest, token, lost, on_bytes, if_absent)
            return self._put_multipart(key, source, size, digest, token, on_bytes)

    def _put_single(
        self,
        key: str,
        source: BinaryIO,
        digest: str,
        token: str,
        lost: bool,
        on_bytes: OnBytes | None,
        if_absent: bool,
    ) -> int:
        data = source.read()
        got = hashlib.sha256(data).hexdigest()
        if got != digest:
            raise _changed(got)
        args: dict[str, Any] = {"IfNoneMatch": "*"} if if_absent else {}
        try:
            with translated(self.key_url(key)):
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self._key(key),
                    Body=data,
                    ChecksumSHA256=base64.b64encode(bytes.fromhex(digest)).decode("ascii"),
                    Metadata={META_KEY: digest, WRITER_KEY: token},
                    **args,
                )
        except StoreError as exc:
            cause = exc.__cause__
            code = _code(cause) if isinstance(cause, ClientError) else ""
            if if_absent and code in _PRECONDITION_FAILED:
                # Refused because the object is there. Written by this upload if an
                # earlier attempt (botocore's, or dmp's before botocore's attempts ran
                # out) may have reached the store and lost its answer; but a 503, a 500
                # or a reset may as well have come before the store wrote anything, and
                # the client cannot tell which. The object's token can: it is this
                # upload's only if one of its attempts wrote it. Without an earlier
                # attempt the object was there before: no question asked.
                if (lost or _retried(cast(ClientError, cause))) and self._writer(key) == token:
                    return self._sent(len(data), on_bytes)
                raise ObjectExists(f"{self.key_url(key)}: already there") from None
            if if_absent and code in ("NotImplemented", "501"):
                self._conditional = False  # a store without conditional writes: ask first
                return self._put_file(key, source.name, digest, token, lost, on_bytes, True)
            raise
        return self._sent(len(data), on_bytes)

    @staticmethod
    def _sent(size: int, on_bytes: OnBytes | None) -> int:
        if on_bytes:
            on_bytes(size)
        return size

    def _trusts_conditional_put(self, key: str) -> bool:
        if not self._conditional or self.conditional_put == "on":
            return self._conditional
        where = (self.client.meta.endpoint_url, self.bucket)
        return self._learned.learn(where, lambda: self._probe(self.key_url(key)))

    def _probe(self, url: str) -> bool:
        """Whether this store refuses a conditional PUT of a key that exists: a tiny
        object put twice with If-None-Match, the second must be refused (412). An answer
        that cannot tell (an error, the first refused although the key is new) is a no:
        then ask first. A store that cannot be used at all (credentials rejected) is
        said now, as the failure of the object ``url`` that was to be put. Each request
        is tried again as a file's would be, and the probe's object deleted in the end."""
        key = self._key(f"{PROBE_NAME}-{uuid.uuid4().hex}")
        lost = False  # an attempt failed transiently: its answer may have been lost

        def put() -> str:
            nonlocal lost
            try:
                with translated(url):
                    return self._probe_put(key)
            except StoreError as exc:
                lost = lost or exc.transient
                raise

        try:
            return self._ask(put, lambda: lost)
        finally:
            self._delete_probe(url, key)

    @staticmethod
    def _ask(put: Callable[[], str], lost: Callable[[], bool]) -> bool:
        try:
            first = with_retries(put)
        except FatalStoreError:
            raise
        except (StoreError, OSError):
            return False
        # A 412 that answered a retry refused the object an earlier attempt wrote (its
        # answer lost): that is the refusal sought, early.
        if first == _REFUSED_ON_RETRY or (first == _REFUSED and lost()):
            return True
        if first != _TAKEN:
            return False
        try:
            return with_retries(put) != _TAKEN
        except (StoreError, OSError):  # refused, as a write-once policy might: cannot tell
            return False

    def _delete_probe(self, url: str, key: str) -> None:
        def delete() -> None:
            with translated(url):
                self.client.delete_object(Bucket=self.bucket, Key=key)

        try:
            with_retries(delete)
        except StoreError as exc:  # refused, or failing past the retries: a 4-byte object
            log.debug("%s: the probe object %s is left: %s", self.url, key, exc)

    def _probe_put(self, key: str) -> str:
        """How a conditional PUT of ``key`` was answered: taken, or refused (412) at
        once or on a retry."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=b"dmp\n", IfNoneMatch="*")
        except ClientError as exc:
            if _code(exc) in _PRECONDITION_FAILED:
                return _REFUSED_ON_RETRY if _retried(exc) else _REFUSED
            raise
        return _TAKEN

    def _put_multipart(
        self,
        key: str,
        source: BinaryIO,
        size: int,
        digest: str,
        token: str,
        on_bytes: OnBytes | None,
    ) -> int:
        try:
            with _Turn(self._big_files) as turn, translated(self.key_url(key)):
                # The next big file may start once this one's parts are all read and sent
                # off, while the server is still receiving and assembling them.
                reader = _HashingReader(source, size, digest, on_end=turn.release)
                future = self.manager.upload(
                    cast(BinaryIO, reader),
                    self.bucket,
                    self._key(key),
                    extra_args={"Metadata": {META_KEY: digest, WRITER_KEY: token}},
                    subscribers=_subscribers(size, on_bytes),
                )
                future.result()
        except StoreError as exc:
            # The object may be there all the same: written by this upload, whose answer
            # to CompleteMultipartUpload was lost (tried again, S3 says NoSuchUpload), or
            # by an uploader of the same content that finished first and aborted this
            # one underneath (S3 says NoSuchUpload; other stores say it otherwise).
            writer = self._holder(key, digest)
            if writer is None:
                # Of other content (a key named by path, not by checksum): try again.
                cause = exc.__cause__
                if isinstance(cause, ClientError) and _code(cause) == "NoSuchUpload":
                    exc.transient = True
                raise
            self._sweep(self._key(key))
            if writer != token:
                raise ObjectExists(f"{self.key_url(key)}: already there") from None
        else:
            self._sweep(self._key(key))
        return size  # its parts' bytes were heard of as they went

    def _holder(self, key: str, digest: str) -> str | None:
        """The writer's token of the object at ``key`` if it holds ``digest`` ("" if it
        has none); None if not, or if the store cannot say."""
        try:
            reply = self._head(key)
        except StoreError:
            return None
        if reply is None or reply["Metadata"].get(META_KEY) != digest:
            return None
        return str(reply["Metadata"].get(WRITER_KEY) or "")

    def uploads(self) -> Iterator[Upload]:
        prefix = f"{self.prefix}/" if self.prefix else ""
        with translated(self.url, missing="no such bucket"):
            for upload in self._list_uploads(prefix):
                yield Upload(upload["Key"][len(prefix) :], upload["UploadId"], upload["Initiated"])

    def abort_upload(self, upload: Upload) -> bool:
        with translated(self.key_url(upload.key), missing="no such bucket"):
            try:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self._key(upload.key), UploadId=upload.upload_id
                )
            except ClientError as exc:
                if _code(exc) == "NoSuchUpload":
                    return False
                raise
        return True

    def _list_uploads(self, prefix: str) -> Iterator[dict[str, Any]]:
        pages = self.client.get_paginator("list_multipart_uploads")
        for page in pages.paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Uploads", [])

    def _sweep(self, key: str) -> None:
        """Abort the incomplete uploads of exactly ``key`` (a full key), listed once its
        object is complete: a killed uploader's; one whose CreateMultipartUpload answer
        was lost, this very upload's included; a live one of the same content (another
        batch), which this one makes needless. Tidying up is a courtesy, not the upload's
        business: a store that will not list or abort is left to its lifecycle rule."""
        try:
            for upload_id in with_retries(lambda: self._incomplete(key)):
                with_retries(partial(self._abort, key, upload_id))
        except StoreError as exc:
            log.debug("%s: stale multipart uploads left: %s", self.url, exc)

    def _incomplete(self, key: str) -> list[str]:
        if not self._tidy:
            return []
        with translated(self.url):
            try:
                return [u["UploadId"] for u in self._list_uploads(key) if u["Key"] == key]
            except ClientError as exc:
                if _code(exc) not in _NO_UPLOAD_LISTING:
                    raise
                self._untidy(exc)
                return []

    def _abort(self, key: str, upload_id: str) -> None:
        if not self._tidy:
            return
        with translated(self.url):
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except ClientError as exc:
                # NoSuchUpload: it ended meanwhile (completed, or aborted by another).
                if _code(exc) in _NO_UPLOAD_LISTING:
                    self._untidy(exc)
                elif _code(exc) != "NoSuchUpload":
                    raise

    def _untidy(self, exc: ClientError) -> None:
        """A refusal stops the tidying for good, said once."""
        with self._lock:
            said, self._tidy = not self._tidy, False
        if not said:
            log.debug(
                "%s: the store refuses to list or abort multipart uploads (%s); stale ones "
                "are left to the bucket's lifecycle rule",
                self.url,
                _code(exc),
            )

    def get_file(self, key: str, stream: BinaryIO, on_bytes: OnBytes | None = None) -> int:
        # Asked here rather than by s3transfer, which would take an answer cut short.
        reply = self._head(key)
        if reply is None:
            raise ObjectMissing(f"{self.key_url(key)}: not in the vault")
        size = reply["ContentLength"]
        with translated(self.key_url(key), missing="not in the vault"):
            future = self.manager.download(
                self.bucket, self._key(key), stream, subscribers=_subscribers(size, on_bytes)
            )
            future.result()
        got = stream.seek(0, os.SEEK_END)
        if got != size:  # a GET whose headers were cut before its Content-Length
            raise StoreError(
                f"{self.key_url(key)}: {got} bytes of {size} came (the answer was cut short)",
                transient=True,
            )
        return size

    def copy(self, source: Store, source_key: str, key: str, digest: str) -> None:
        if not isinstance(source, S3Store):
            raise StoreError(
                f"{source.url} -> {self.url}: no server-side copy between different kinds of store"
            )
        copy_source = {"Bucket": source.bucket, "Key": source._key(source_key)}
        with translated(self.key_url(key)):
            try:
                self.manager.copy(
                    copy_source,
                    self.bucket,
                    self._key(key),
                    source_client=source.client,
                    extra_args={"Metadata": {META_KEY: digest}, "MetadataDirective": "REPLACE"},
                ).result()
            except ClientError as exc:
                # A copy needs no destination: a missing key is always the source.
                if _code(exc) in _MISSING:
                    raise StoreError(
                        f"{source.key_url(source_key)}: no such object to copy to "
                        f"{self.key_url(key)}"
                    ) from exc
                raise


class _HashingReader:
    """A read-only, non-seekable view of ``size`` bytes of a file that hashes what is read
    and, at the end, raises IntegrityError if that is not the expected content."""

    def __init__(
        self, source: BinaryIO, size: int, digest: str, on_end: Callable[[], None] | None = None
    ) -> None:
        self._source = source
        self._left = size
        self._digest = digest
        self._hasher = hashlib.sha256()
        self._on_end = on_end

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, amount: int = -1) -> bytes:
        want = self._left if amount is None or amount < 0 else min(amount, self._left)
        data = self._source.read(want) if want else b""
        self._hasher.update(data)
        self._left -= len(data)
        if not data or self._left == 0:
            self._verify(short=want > len(data))
        return data

    def _verify(self, short: bool) -> None:
        if short:
            raise IntegrityError(
                "changed since the manifest was made (it shrank while being read); not stored"
            )
        got = self._hasher.hexdigest()
        if got != self._digest:
            raise _changed(got)
        if self._on_end:
            self._on_end()


class _Tokens:
    """A thread-safe map of keys to tokens, bounded: past ``bound`` the oldest are
    forgotten."""

    def __init__(self, bound: int = 4096) -> None:
        self._tokens: dict[str, str] = {}
        self._bound = bound
        self._lock = threading.Lock()

    def add(self, key: str, token: str) -> None:
        with self._lock:
            self._tokens[key] = token
            if len(self._tokens) > self._bound:
                del self._tokens[next(iter(self._tokens))]

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._tokens.get(key)

    def pop(self, key: str) -> None:
        with self._lock:
            self._tokens.pop(key, None)


class _Turn:
    """A turn at a semaphore, given back once: early by ``release``, else on exit."""

    def __init__(self, semaphore: threading.BoundedSemaphore) -> None:
        self._semaphore = semaphore
        self._held = False
        self._mutex = threading.Lock()

    def __enter__(self) -> _Turn:
        self._semaphore.acquire()
        self._held = True
        return self

    def release(self) -> None:
        with self._mutex:
            if self._held:
                self._held = False
                self._semaphore.release()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _subscribers(size: int | None, on_bytes: OnBytes | None) -> list[Any]:
    """Only the callbacks asked for: s3transfer calls an ``on_progress`` for every 8 KiB
    block sent, which costs measurable CPU on big files when nobody listens."""
    subscribers: list[Any] = []
    if size is not None:
        subscribers.append(_ProvideSize(size))
    if on_bytes is not None:
        subscribers.append(_Progress(on_bytes))
    return subscribers


class _ProvideSize:
    def __init__(self, size: int) -> None:
        self._size = size

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        future.meta.provide_transfer_size(self._size)


class _Progress(BaseSubscriber):
    def __init__(self, on_bytes: OnBytes) -> None:
        self._on_bytes = on_bytes

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self._on_bytes(bytes_transferred)


def _changed(got: str) -> IntegrityError:
    return IntegrityError(f"changed since the manifest was made (sha256 now {got}); not stored")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _retried(exc: ClientError) -> bool:
    """Whether botocore's answer came after attempts whose own answers were lost."""
    return bool(exc.response.get("ResponseMetadata", {}).get("RetryAttempts"))


class ConditionalPuts:
    """What each store (endpoint and bucket) has shown of put-if-absent, learned once per
    process, whichever thread asks first; the others wait for its answer."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], bool] = {}
        self._lock = threading.Lock()

    def learn(self, where: tuple[str, str], probe: Callable[[], bool]) -> bool:
        known = self._known.get(where)
        if known is not None:
            return known
        with self._lock:
            known = self._known.get(where)
            if known is None:
                known = self._known[where] = probe()
            return known


LEARNED = ConditionalPuts()  # the process's


@contextmanager
def translated(url: str, missing: str | None = None) -> Iterator[None]:
    """Turn botocore's exceptions into one-line StoreErrors naming ``url``."""
    try:
        yield
    except ClientError as exc:
        raise client_error(exc, url, missing) from exc
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise FatalStoreError(
            f"{url}: no AWS credentials found (set AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use "
            "--profile)"
        ) from exc
    except EndpointConnectionError as exc:
        # Fatal if it lasts: tried again first, in case the network only blinked.
        endpoint = exc.kwargs.get("endpoint_url", "")
        raise FatalStoreError(
            f"{url}: cannot connect to the S3 endpoint {endpoint}", transient=True
        ) from exc
    except BotoCoreError as exc:
        raise StoreError(f"{url}: {_describe(exc)}", transient=_transient(exc)) from exc
    except (RetriesExceededError, S3DownloadFailedError, S3UploadFailedError) as exc:
        # s3transfer's own retries of a body cut short, a reset, a timeout ran out.
        cause = getattr(exc, "last_exception", None) or exc.__cause__ or exc
        raise StoreError(f"{url}: {_describe(cause)}", transient=True) from exc
    except (ConnectionError, TimeoutError) as exc:  # sockets, below botocore's own errors
        raise StoreError(f"{url}: {_describe(exc)}", transient=True) from exc
    except KeyError as exc:
        # What these blocks run is requests: a field missing is an answer that did not
        # parse whole (cut inside its headers, which the HTTP client accepts as ended).
        raise StoreError(
            f"{url}: an answer came without its {exc} (cut short?)", transient=True
        ) from exc
    except ResponseParserError as exc:
        raise StoreError(
            f"{url}: an answer that does not parse: {_describe(exc)}", transient=True
        ) from exc


def _transient(exc: BotoCoreError) -> bool:
    """A connection refused, reset or timed out, a response cut short: worth a retry."""
    return isinstance(exc, BotoConnectionError | HTTPClientError | IncompleteReadError)


def _describe(exc: BaseException) -> str:
    """The error in one line (some of botocore's messages run over several)."""
    text = str(exc) if not isinstance(exc, OSError) else (exc.strerror or str(exc))
    return " ".join(text.split()) or type(exc).__name__


def client_error(exc: ClientError, url: str, missing: str | None = None) -> StoreError:
    """The one-line error for a failed request; ``missing`` words a 404 where one means
    that the thing asked for is absent (a GET or HEAD), not that a PUT failed."""
    code = _code(exc)
    error = exc.response.get("Error", {})
    attempts = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) + 1
    if code == "NoSuchBucket" or (code in _MISSING and missing == "no such bucket"):
        bucket = error.get("BucketName") or url.split("/")[2]
        return FatalStoreError(f"s3://{bucket}: no such bucket")
    if code in _MISSING and missing:
        return ObjectMissing(f"{url}: {missing}")
    if code in _DENIED:
        return FatalStoreError(
            f"{url}: access denied (check the credentials, the profile and the bucket policy)"
        )
    if code in _BAD_CREDENTIALS:
        return FatalStoreError(f"{url}: credentials rejected ({code})")
    if code in _THROTTLED:
        return StoreError(
            f"{url}: throttled by the server ({code}) after {attempts} attempts", transient=True
        )
    http = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    message = error.get("Message") or http or ""
    server_side = (isinstance(http, int) and http >= 500) or code.startswith("5")
    return StoreError(f"{url}: {code}: {message}".rstrip(": "), transient=server_side)
