"""Where a store is: ``s3://bucket/prefix`` or ``file:///dir``, parsed and checked once.

Plain parsing, with no store behind it: the options check their URLs with it, and the
stores find their bucket or directory in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from dmp_cli.errors import UsageError


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


def same_kind(a: str, b: str) -> bool:
    """Whether a server-side copy between the two URLs is possible."""
    return parse_url(a).scheme == parse_url(b).scheme
