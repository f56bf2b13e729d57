"""The vault on S3 (or MinIO, Ceph, any S3-compatible store): ``s3://bucket/prefix``.

Small files go in one PUT from memory, so the bytes hashed are the bytes sent, with
``ChecksumSHA256`` for the server to check too. Big files go multipart through s3transfer,
read through ``HashingReader``: s3transfer reads a non-seekable stream once, in order,
into the parts it sends, so the reader sees exactly the uploaded bytes and can fail the
upload (s3transfer then aborts it) before it is completed. Multipart SHA-256 checksums
are composite, so every object also carries its sha256 as ``x-amz-meta-sha256``.

Every object carries, besides its sha256, the token of the upload that wrote it
(``x-amz-meta-dmp-upload``): when a put-if-absent is refused after an attempt whose
answer was lost, the token tells whether that attempt wrote the object (this run
uploaded it) or it was there before (skipped).

One module per job:

- ``backend``: ``S3Store``, the ``Store`` interface over one client and one transfer
  manager;
- ``errors``: botocore's and s3transfer's errors translated, here and nowhere else, into
  one-line StoreErrors (``translated``, ``client_error``);
- ``conditional``: whether a store refuses a put-if-absent of a key it has, probed once
  per process (``ConditionalPuts``);
- ``streams``: the hashing reader of a multipart upload, the tokens of unanswered
  uploads, a big file's turn, s3transfer's subscribers;
- ``tidy``: the incomplete uploads of a key, aborted once its object is complete;
- ``listing``: the keys under a prefix, page by page, each page taken only whole.
"""

from __future__ import annotations

from dmp_cli.store.s3.backend import (
    META_KEY,
    MULTIPART_CHUNKSIZE,
    MULTIPART_THRESHOLD,
    WRITER_KEY,
    S3Store,
)
from dmp_cli.store.s3.conditional import (
    CONDITIONAL_PUT_MAX,
    LEARNED,
    PROBE_NAME,
    ConditionalPuts,
)
from dmp_cli.store.s3.errors import client_error, translated

__all__ = [
    "CONDITIONAL_PUT_MAX",
    "LEARNED",
    "META_KEY",
    "MULTIPART_CHUNKSIZE",
    "MULTIPART_THRESHOLD",
    "PROBE_NAME",
    "WRITER_KEY",
    "ConditionalPuts",
    "S3Store",
    "client_error",
    "translated",
]
