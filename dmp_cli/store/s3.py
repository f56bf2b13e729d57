"""The vault on S3 (or MinIO, Ceph, any S3-compatible store): ``s3://bucket/prefix``.

Small files go in one PUT from memory, so the bytes hashed are the bytes sent, with
``ChecksumSHA256`` for the server to check too. Big files go multipart through s3transfer,
read through ``_HashingReader``: s3transfer reads a non-seekable stream once, in order,
into the parts it sends, so the reader sees exactly the uploaded bytes and can fail the
upload (s3transfer then aborts it) before it is completed. Multipart SHA-256 checksums
are composite, so every object also carries its sha256 as ``x-amz-meta-sha256``.

A process killed mid-upload leaves its multipart upload incomplete, billed until aborted.
The next upload of that key (a redelivered batch, a rerun) aborts the ones it found when
it began, once its own is complete: keys are checksums, so an upload it cuts short was
sending the very object now there, and its uploader, finding it, counts its file as done.

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
from contextlib import contextmanager, suppress
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
        # Put-if-absent uploads that failed transiently: their answer may have been lost
        # after the store wrote the object, so finding it there next time is no surprise.
        self._unanswered = _Keys()
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
        with translated(f"s3://{self.bucket}", missing="no such bucket"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                # A user allowed only Get/PutObject may not HEAD the bucket: let the
                # object requests decide.
                if _code(exc) not in _DENIED:
                    raise

    def head(self, key: str) -> ObjectInfo | None:
        with translated(self.key_url(key)):
            try:
                reply = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    return None
                raise
        return ObjectInfo(reply["ContentLength"], reply.get("Metadata", {}).get(META_KEY))

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
        with open(path, "rb") as source:
            size = os.fstat(source.fileno()).st_size
            asked = False
            if if_absent and (size >= CONDITIONAL_PUT_MAX or not self._trusts_conditional_put(key)):
                # Asking first is cheap beside sending a big file.
                if self.head(key) is not None:
                    if self._unanswered.pop(key):  # as a 412 in _put_single
                        return self._sent(size, on_bytes)
                    raise ObjectExists(f"{self.key_url(key)}: already there")
                if_absent, asked = False, True
            try:
                if size < self.config.multipart_threshold:
                    return self._put_single(key, source, digest, on_bytes, if_absent)
                return self._put_multipart(key, source, size, digest, on_bytes)
            except StoreError as exc:
                if asked and exc.transient:
                    self._unanswered.add(key)
                raise

    def _put_single(
        self, key: str, source: BinaryIO, digest: str, on_bytes: OnBytes | None, if_absent: bool
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
                    Metadata={META_KEY: digest},
                    **args,
                )
        except StoreError as exc:
            cause = exc.__cause__
            code = _code(cause) if isinstance(cause, ClientError) else ""
            unanswered = self._unanswered.pop(key)
            if if_absent and code in _PRECONDITION_FAILED:
                if unanswered or _retried(cast(ClientError, cause)):
                    # Tried again (by botocore, or by dmp after botocore's attempts)
                    # after a PUT whose answer was lost (a reset, a timeout): that PUT
                    # most likely wrote the object, so this run uploaded it.
                    return self._sent(len(data), on_bytes)
                raise ObjectExists(f"{self.key_url(key)}: already there") from None
            if if_absent and code in ("NotImplemented", "501"):
                self._conditional = False  # a store without conditional writes: ask first
                return self.put_file(key, source.name, digest, len(data), on_bytes, True)
            if if_absent and exc.transient:
                self._unanswered.add(key)
            raise
        self._unanswered.pop(key)
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
        said now, as the failure of the object ``url`` that was to be put."""
        key = self._key(f"{PROBE_NAME}-{uuid.uuid4().hex}")
        try:
            with translated(url):
                first = self._probe_put(key)
            # A 412 that answered botocore's retry refused the object the first
            # attempt wrote (its answer lost): that is the refusal sought, early.
            return first == _REFUSED_ON_RETRY or (
                first == _TAKEN and self._probe_put(key) != _TAKEN
            )
        except FatalStoreError:
            raise
        except (StoreError, ClientError, BotoCoreError, OSError):
            return False
        finally:
            # A store that refuses the delete keeps a 4-byte object; nothing to say.
            with suppress(ClientError, BotoCoreError, OSError):
                self.client.delete_object(Bucket=self.bucket, Key=key)

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
        self, key: str, source: BinaryIO, size: int, digest: str, on_bytes: OnBytes | None
    ) -> int:
        # Listed before this upload begins, so never this one: a killed uploader's, or
        # a live one of the same content (another batch), which ours makes needless.
        stale = self._incomplete(self._key(key))
        try:
            with _Turn(self._big_files) as turn, translated(self.key_url(key)):
                # The next big file may start once this one's parts are all read and sent
                # off, while the server is still receiving and assembling them.
                reader = _HashingReader(source, size, digest, on_end=turn.release)
                future = self.manager.upload(
                    cast(BinaryIO, reader),
                    self.bucket,
                    self._key(key),
                    extra_args={"Metadata": {META_KEY: digest}},
                    subscribers=_subscribers(size, on_bytes),
                )
                future.result()
        except StoreError as exc:
            # Aborted underneath by an uploader of the same content that finished first
            # (S3 says NoSuchUpload; other stores say it otherwise): the object is there.
            if not self._holds(key, digest):
                # Of other content (a key named by path, not by checksum): try again.
                cause = exc.__cause__
                if isinstance(cause, ClientError) and _code(cause) == "NoSuchUpload":
                    exc.transient = True
                raise
        self._abort_stale(self._key(key), stale)
        return size

    def _holds(self, key: str, digest: str) -> bool:
        try:
            return self.has(key, digest)
        except StoreError:
            return False

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

    def _incomplete(self, key: str) -> list[str]:
        """The ids of the incomplete uploads of exactly ``key`` (a full key): none if the
        store will not say, since tidying up is a courtesy, not the upload's business."""
        if not self._tidy:
            return []
        try:
            return [u["UploadId"] for u in self._list_uploads(key) if u["Key"] == key]
        except (ClientError, BotoCoreError) as exc:
            self._untidy(exc)
            return []

    def _abort_stale(self, key: str, upload_ids: list[str]) -> None:
        for upload_id in upload_ids:
            if not self._tidy:
                return
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except (ClientError, BotoCoreError) as exc:
                # NoSuchUpload: it ended meanwhile (completed, or aborted by another).
                if not (isinstance(exc, ClientError) and _code(exc) == "NoSuchUpload"):
                    self._untidy(exc)

    def _untidy(self, exc: ClientError | BotoCoreError) -> None:
        """A refusal stops the tidying for good, said once; anything else, each time."""
        refused = isinstance(exc, ClientError) and _code(exc) in _NO_UPLOAD_LISTING
        if not refused:
            log.debug("%s: stale multipart uploads left: %s", self.url, _describe(exc))
            return
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
        with translated(self.key_url(key), missing="not in the vault"):
            future = self.manager.download(
                self.bucket, self._key(key), stream, subscribers=_subscribers(None, on_bytes)
            )
            future.result()
        return int(future.meta.size or 0)

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


class _Keys:
    """A thread-safe set of keys, bounded: past ``bound`` the oldest are forgotten."""

    def __init__(self, bound: int = 4096) -> None:
        self._keys: dict[str, None] = {}
        self._bound = bound
        self._lock = threading.Lock()

    def add(self, key: str) -> None:
        with self._lock:
            self._keys[key] = None
            if len(self._keys) > self._bound:
                del self._keys[next(iter(self._keys))]

    def pop(self, key: str) -> bool:
        """Whether ``key`` was there (it is not, after)."""
        with self._lock:
            return self._keys.pop(key, False) is None


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
