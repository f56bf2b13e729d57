"""``S3Store``: the vault on S3 (or MinIO, Ceph, any S3-compatible store).

Its requests: HEAD, PUT (one from memory, or multipart through s3transfer), GET (whole, or
a range of an object), DELETE, copy and LIST (``listing``), each translated by ``errors``;
the rest as ``dmp_cli.store.s3`` says.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any, BinaryIO, cast

from botocore.exceptions import ClientError
from s3transfer.manager import TransferConfig, TransferManager
from urllib3.exceptions import ProtocolError

from dmp_cli.aws import TRANSFER_CONCURRENCY, s3_client
from dmp_cli.digest import CHUNK
from dmp_cli.errors import ColdObject, ObjectExists, ObjectMissing, StoreError
from dmp_cli.layout import join_key
from dmp_cli.options import StoreSpec
from dmp_cli.retry import with_retries
from dmp_cli.store import (
    NEEDS_RESTORE,
    RESTORE_UNKNOWN,
    ObjectInfo,
    ObjectState,
    OnBytes,
    Store,
    Upload,
)
from dmp_cli.store.s3.conditional import (
    CONDITIONAL_PUT_MAX,
    LEARNED,
    PROBE_NAME,
    ConditionalPuts,
    probe,
)
from dmp_cli.store.s3.errors import (
    DENIED,
    MISSING,
    PRECONDITION_FAILED,
    error_code,
    retried,
    translated,
)
from dmp_cli.store.s3.listing import KeyListing
from dmp_cli.store.s3.streams import HashingReader, Tokens, Turn, changed, subscribers
from dmp_cli.store.s3.tidy import Tidy, list_uploads

MiB = 1 << 20
MULTIPART_THRESHOLD = 16 * MiB
MULTIPART_CHUNKSIZE = 16 * MiB  # half the requests of s3transfer's 8 MiB: measured faster
# Big files go one at a time per process, their parts in parallel: a server assembles a
# completed upload while the next file's parts arrive, instead of all files at the end,
# and the parts held in memory stay bounded. Measured faster than two or four at once.
MULTIPART_FILES = 1
META_KEY = "sha256"  # sent as x-amz-meta-sha256
WRITER_KEY = "dmp-upload"  # sent as x-amz-meta-dmp-upload: the upload's token


def _whole(reply: dict[str, Any], url: str) -> bytes:
    """A GET's whole body, its length checked against the answer's Content-Length: an
    answer cut short (mid-body, or inside its headers, which the HTTP client takes as
    ended) is a transient error, never a shorter object."""
    size = reply.get("ContentLength")
    body = reply["Body"]
    try:
        data: bytes = body.read()
    except ProtocolError as exc:  # urllib3's, below botocore: the connection broke
        raise StoreError(f"{url}: the answer was cut short ({exc})", transient=True) from exc
    finally:
        body.close()
    if size is None or len(data) != size:
        got = "no length" if size is None else f"{len(data)} bytes of {size}"
        raise StoreError(f"{url}: the answer was cut short ({got})", transient=True)
    return data


class S3Store(KeyListing):
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
        self._unanswered = Tokens()
        self._conditional = conditional_put != "off"  # until a store answers 501
        self._tidy = Tidy(client, bucket, self.url)  # the stale uploads of a key, aborted
        # Whether a listing asks for the objects' restores, until the store refuses to.
        self._lists_restores = True

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
                if error_code(exc) not in DENIED:
                    raise

    def head(self, key: str) -> ObjectInfo | None:
        reply = self._head(key)
        if reply is None:
            return None
        return ObjectInfo(reply["ContentLength"], reply["Metadata"].get(META_KEY), _state(reply))

    def _head(self, key: str) -> dict[str, Any] | None:
        """The HEAD's answer (its size checked, its metadata a dict), None if no object."""
        with translated(self.key_url(key)):
            try:
                reply: dict[str, Any] = self.client.head_object(
                    Bucket=self.bucket, Key=self._key(key)
                )
            except ClientError as exc:
                if error_code(exc) in MISSING:
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
        storage_class: str | None = None,
    ) -> int:
        # Tried again after a transient failure, an upload sends the token it sent then:
        # that attempt's answer may have been lost after the store wrote the object.
        lost = self._unanswered.get(key)
        token = lost or uuid.uuid4().hex
        try:
            sent = self._put_file(
                key, path, digest, token, bool(lost), on_bytes, if_absent, storage_class
            )
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
        storage_class: str | None,
    ) -> int:
        with open(path, "rb") as source:
            size = os.fstat(source.fileno()).st_size
            if if_absent and (size >= CONDITIONAL_PUT_MAX or not self._trusts_conditional_put(key)):
                # Asking first is cheap beside sending a big file.
                reply = self._head(key)
                if reply is not None:
                    if lost and reply["Metadata"].get(WRITER_KEY) == token:
                        if size >= self.config.multipart_threshold:  # its sweep never ran
                            self._tidy.sweep(self._key(key))
                        return self._sent(size, on_bytes)  # as a 412 in _put_single
                    raise ObjectExists(f"{self.key_url(key)}: already there")
                if_absent = False
            if size < self.config.multipart_threshold:
                return self._put_single(
                    key, source, digest, token, lost, on_bytes, if_absent, storage_class
                )
            return self._put_multipart(key, source, size, digest, token, on_bytes, storage_class)

    def _put_single(
        self,
        key: str,
        source: BinaryIO,
        digest: str,
        token: str,
        lost: bool,
        on_bytes: OnBytes | None,
        if_absent: bool,
        storage_class: str | None = None,
    ) -> int:
        data = source.read()
        got = hashlib.sha256(data).hexdigest()
        if got != digest:
            raise changed(got)
        args: dict[str, Any] = {"IfNoneMatch": "*"} if if_absent else {}
        try:
            with translated(self.key_url(key)):
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self._key(key),
                    Body=data,
                    ChecksumSHA256=base64.b64encode(bytes.fromhex(digest)).decode("ascii"),
                    Metadata={META_KEY: digest, WRITER_KEY: token},
                    **_stored_in(storage_class),
                    **args,
                )
        except StoreError as exc:
            cause = exc.__cause__
            code = error_code(cause) if isinstance(cause, ClientError) else ""
            if if_absent and code in PRECONDITION_FAILED:
                # Refused because the object is there. Written by this upload if an
                # earlier attempt (botocore's, or dmp's before botocore's attempts ran
                # out) may have reached the store and lost its answer; but a 503, a 500
                # or a reset may as well have come before the store wrote anything, and
                # the client cannot tell which. The object's token can: it is this
                # upload's only if one of its attempts wrote it. Without an earlier
                # attempt the object was there before: no question asked.
                if (lost or retried(cast(ClientError, cause))) and self._writer(key) == token:
                    return self._sent(len(data), on_bytes)
                raise ObjectExists(f"{self.key_url(key)}: already there") from None
            if if_absent and code in ("NotImplemented", "501"):
                self._conditional = False  # a store without conditional writes: ask first
                return self._put_file(
                    key, source.name, digest, token, lost, on_bytes, True, storage_class
                )
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
        key = self._key(f"{PROBE_NAME}-{uuid.uuid4().hex}")
        return probe(self.client, self.bucket, key, url, self.url)

    def _put_multipart(
        self,
        key: str,
        source: BinaryIO,
        size: int,
        digest: str,
        token: str,
        on_bytes: OnBytes | None,
        storage_class: str | None = None,
    ) -> int:
        try:
            with Turn(self._big_files) as turn, translated(self.key_url(key)):
                # The next big file may start once this one's parts are all read and sent
                # off, while the server is still receiving and assembling them.
                reader = HashingReader(source, size, digest, on_end=turn.release)
                future = self.manager.upload(
                    cast(BinaryIO, reader),
                    self.bucket,
                    self._key(key),
                    extra_args={
                        "Metadata": {META_KEY: digest, WRITER_KEY: token},
                        **_stored_in(storage_class),
                    },
                    subscribers=subscribers(size, on_bytes),
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
                if isinstance(cause, ClientError) and error_code(cause) == "NoSuchUpload":
                    exc.transient = True
                raise
            self._tidy.sweep(self._key(key))
            if writer != token:
                raise ObjectExists(f"{self.key_url(key)}: already there") from None
        else:
            self._tidy.sweep(self._key(key))
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
            for upload in list_uploads(self.client, self.bucket, prefix):
                yield Upload(upload["Key"][len(prefix) :], upload["UploadId"], upload["Initiated"])

    def abort_upload(self, upload: Upload) -> bool:
        with translated(self.key_url(upload.key), missing="no such bucket"):
            try:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self._key(upload.key), UploadId=upload.upload_id
                )
            except ClientError as exc:
                if error_code(exc) == "NoSuchUpload":
                    return False
                raise
        return True

    def list_states(self, prefix: str) -> Iterator[tuple[str, int, ObjectState]]:
        # A page tells each object's StorageClass, and its restore when asked for it
        # (OptionalObjectAttributes): no request beyond the listing's own.
        asked = [False]  # whether the page being read was asked for the restores

        def fetch(args: dict[str, Any], url: str) -> dict[str, Any]:
            page, asked[0] = self._states_page(args, url)
            return page

        for key, entry in self._entries(prefix, fetch):
            yield key, int(entry["Size"]), _listed_state(entry, asked[0])

    def _states_page(self, args: dict[str, Any], url: str) -> tuple[dict[str, Any], bool]:
        """A page of the listing, and whether it was asked for the restores: once a store
        refuses that (an S3-compatible store without it, or a user without the permission
        it takes), this store lists without, and says the cold objects' restores unknown."""
        if self._lists_restores:
            with translated(url, missing="no such bucket"):
                try:
                    page = self.client.list_objects_v2(
                        **args, OptionalObjectAttributes=["RestoreStatus"]
                    )
                except ClientError as exc:
                    if error_code(exc) not in _ATTRIBUTES_REFUSED:
                        raise
                    self._lists_restores = False
                else:
                    return page, True
        with translated(url, missing="no such bucket"):
            return self.client.list_objects_v2(**args), False

    def object_state(self, key: str) -> ObjectState | None:
        reply = self._head(key)
        return None if reply is None else _state(reply)

    def request_restore(self, key: str, days: int | None, tier: str) -> str:
        url = self.key_url(key)
        request: dict[str, Any] = {"GlacierJobParameters": {"Tier": tier}}
        if days is not None:
            request["Days"] = days
        with translated(url):
            try:
                self.client.restore_object(
                    Bucket=self.bucket, Key=self._key(key), RestoreRequest=request
                )
            except ClientError as exc:
                code = error_code(exc)
                if code == "RestoreAlreadyInProgress":
                    return "ongoing"
                refusal = _RESTORE_REFUSED.get(code) or ("access denied" if code in DENIED else "")
                if code in MISSING:
                    raise ObjectMissing(f"{url}: not in the vault") from exc
                if refusal:  # this object's alone: the others may be restored
                    raise StoreError(f"{url}: restore refused: {refusal} ({code})") from exc
                raise
        return "requested"

    def get_file(self, key: str, stream: BinaryIO, on_bytes: OnBytes | None = None) -> int:
        # Asked here rather than by s3transfer, which would take an answer cut short.
        reply = self._head(key)
        if reply is None:
            raise ObjectMissing(f"{self.key_url(key)}: not in the vault")
        state = _state(reply)
        if not state.readable:  # no GET that the store would refuse
            raise ColdObject(
                f"{self.key_url(key)}: in cold storage, not readable until restored",
                storage_class=state.storage_class,
                restore=state.restore,
            )
        size = reply["ContentLength"]
        with translated(self.key_url(key), missing="not in the vault"):
            future = self.manager.download(
                self.bucket,
                self._key(key),
                stream,
                subscribers=subscribers(size, on_bytes, reply.get("ETag")),
            )
            future.result()
        got = stream.seek(0, os.SEEK_END)
        if got != size:  # a GET whose headers were cut before its Content-Length
            raise StoreError(
                f"{self.key_url(key)}: {got} bytes of {size} came (the answer was cut short)",
                transient=True,
            )
        return size

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise ValueError(f"not a range: {length} bytes at {start}")
        if length == 0:
            return b""
        url = self.key_url(key)
        end = start + length - 1
        with translated(url, missing="not in the vault"):
            try:
                reply = self.client.get_object(
                    Bucket=self.bucket, Key=self._key(key), Range=f"bytes={start}-{end}"
                )
            except ClientError as exc:
                if error_code(exc) == "InvalidRange":
                    raise StoreError(f"{url}: no byte {start} (the object is shorter)") from exc
                raise
            body = reply["Body"]
            try:
                data = _cut(body, _first_byte(reply, start, end, url), start, length)
            finally:
                body.close()  # what follows the range, if the store sent it, is not read
        if len(data) < length:
            raise StoreError(
                f"{url}: {len(data)} of the {length} bytes at {start} came (the object is shorter)"
            )
        return data

    def get_bytes(self, key: str) -> bytes | None:
        with translated(self.key_url(key)):
            try:
                reply = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as exc:
                if error_code(exc) in MISSING:
                    return None
                raise
            data = _whole(reply, self.key_url(key))
        return data

    def put_bytes(self, key: str, data: bytes) -> None:
        digest = hashlib.sha256(data).hexdigest()
        with translated(self.key_url(key)):
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ChecksumSHA256=base64.b64encode(bytes.fromhex(digest)).decode("ascii"),
                Metadata={META_KEY: digest},
            )

    def delete(self, key: str) -> None:
        with translated(self.key_url(key)):
            try:
                self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as exc:  # S3 says 204 either way; some stores say 404
                if error_code(exc) not in MISSING:
                    raise

    def copy(
        self,
        source: Store,
        source_key: str,
        key: str,
        digest: str,
        storage_class: str | None = None,
    ) -> None:
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
                    extra_args={
                        "Metadata": {META_KEY: digest},
                        "MetadataDirective": "REPLACE",
                        **_stored_in(storage_class),
                    },
                ).result()
            except ClientError as exc:
                # A copy needs no destination: a missing key is always the source.
                if error_code(exc) in MISSING:
                    raise StoreError(
                        f"{source.key_url(source_key)}: no such object to copy to "
                        f"{self.key_url(key)}"
                    ) from exc
                raise


def _stored_in(storage_class: str | None) -> dict[str, str]:
    """The request's StorageClass argument: none for the store's default (STANDARD), so
    that a store without classes (or a user's policy that names none) is asked as ever."""
    return {"StorageClass": storage_class} if storage_class else {}


# Why a store refuses a restore, by its error code.
_RESTORE_REFUSED = {
    "InvalidObjectState": "the object is not in a storage class that needs one",
    "ObjectAlreadyInActiveTierError": "the object is not in an archive tier",
    "GlacierExpeditedRetrievalNotAvailable": "no Expedited capacity now",
    "NotImplemented": "the store has no restores",
    "501": "the store has no restores",
    "MethodNotAllowed": "the store has no restores",
    "405": "the store has no restores",
    "InvalidArgument": "the store refused the request",
    "MalformedXML": "the store refused the request",
}
# x-amz-restore: ongoing-request="false", expiry-date="Fri, 23 Dec 2012 00:00:00 GMT"
_RESTORE = re.compile(r'ongoing-request="(true|false)"(?:,\s*expiry-date="([^"]*)")?')


def _state(reply: dict[str, Any]) -> ObjectState:
    """The storage class and restore a HEAD's answer tells (no StorageClass: STANDARD)."""
    match = _RESTORE.search(str(reply.get("Restore") or ""))
    restore = None
    if match is not None:
        restore = "ongoing" if match[1] == "true" else "restored"
    return ObjectState(
        str(reply.get("StorageClass") or "STANDARD"),
        restore,
        match[2] if match is not None else None,
        reply.get("ArchiveStatus"),
    )


# A listing asked for the objects' restores, refused: by a store without
# OptionalObjectAttributes, or for a user without the permission it takes.
_ATTRIBUTES_REFUSED = {
    "InvalidArgument",
    "InvalidRequest",
    "NotImplemented",
    "501",
    "400",
    *DENIED,
}


def _listed_state(entry: dict[str, Any], asked: bool) -> ObjectState:
    """The storage class and restore a listing's entry tells; a cold object's restore is
    unknown if the listing was not asked for it (none listed: never asked, or expired)."""
    storage_class = str(entry.get("StorageClass") or "STANDARD")
    status = entry.get("RestoreStatus")
    if isinstance(status, dict):
        if status.get("IsRestoreInProgress"):
            return ObjectState(storage_class, "ongoing")
        expiry = status.get("RestoreExpiryDate")
        when = expiry.isoformat() if isinstance(expiry, datetime) else expiry
        return ObjectState(storage_class, "restored", str(when) if when else None)
    cold = storage_class in NEEDS_RESTORE or storage_class == "INTELLIGENT_TIERING"
    return ObjectState(storage_class, None if asked or not cold else RESTORE_UNKNOWN)


# A 206's Content-Range: the first and last bytes sent, and the object's size (or "*").
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(?:\d+|\*)")


def _first_byte(reply: dict[str, Any], start: int, end: int, url: str) -> int:
    """Where in the object the answer's body begins: 0 for a 200 (a store that ignores
    Range sends the whole object), else where its Content-Range says, if that covers
    ``start``; other bytes raise StoreError."""
    if reply.get("ResponseMetadata", {}).get("HTTPStatusCode") != 206:
        return 0
    sent = reply.get("ContentRange") or ""
    match = _CONTENT_RANGE.fullmatch(sent)
    if match is None or int(match[1]) > start or int(match[2]) < start:
        said = f"bytes {sent.removeprefix('bytes ')}" if sent else "no Content-Range"
        raise StoreError(f"{url}: bytes {start}-{end} asked for, {said} sent")
    return int(match[1])


def _cut(body: Any, first: int, start: int, length: int) -> bytes:
    """The ``length`` bytes at ``start`` of a body that begins at byte ``first``, read a
    chunk at a time: those before are dropped as they come, those after never read.
    Fewer if the body ends first."""
    skip = start - first
    while skip:
        chunk = body.read(min(skip, CHUNK))
        if not chunk:
            return b""
        skip -= len(chunk)
    parts = []
    need = length
    while need:
        chunk = body.read(min(need, CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        need -= len(chunk)
    return b"".join(parts)
