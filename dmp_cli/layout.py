"""Where an object lives in the vault: the key layout is part of the on-disk format."""

from __future__ import annotations

import re

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


def is_digest(text: str) -> bool:
    return _HEX64.match(text) is not None


def digest_key(digest: str) -> str:
    """`ab/cd/efgh/ijklmnop/<48 more>` for `abcdefghijklmnop...`: the split 2, 2, 4, 8, rest."""
    if not is_digest(digest):
        raise ValueError(f"not a lowercase sha256 hex digest: {digest!r}")
    return "/".join((digest[0:2], digest[2:4], digest[4:8], digest[8:16], digest[16:]))


def join_key(prefix: str, key: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{key}" if prefix else key
