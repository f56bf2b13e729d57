"""The fleet's credentials without munged: the digest of the work, the settings, and a
missing libmunge."""

from __future__ import annotations

import pytest

from dmp_cli.errors import UsageError
from dmp_tasks.credentials import (
    DEFAULT_SOCKET,
    DEFAULT_TTL,
    LibraryMissing,
    Refused,
    _load,
    digest_of,
    munge_socket,
    munge_ttl,
    verify,
)


def test_digest_is_stable_and_hex() -> None:
    digest = digest_of("dmp.batch", b"\x00\xff", {"b": 1, "a": [1, 2]})
    assert digest == digest_of("dmp.batch", b"\x00\xff", {"a": [1, 2], "b": 1})
    assert len(digest) == 64 and int(digest, 16) >= 0


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (("ab", "c"), ("a", "bc")),
        (("a",), ("a", "")),
        (("a",), (b"a",)),
        (("1",), (1,)),
        ((1,), (1.0,)),
        ((1,), (True,)),
        (([],), ("[]",)),
        ((), ("",)),
        (("a/b\udcff",), ("a/b\udcfe",)),
    ],
    ids=[
        "framing",
        "empty-part",
        "str-bytes",
        "str-int",
        "int-float",
        "int-bool",
        "json-str",
        "no-parts",
        "surrogates",
    ],
)
def test_different_work_different_digest(
    one: tuple[object, ...], other: tuple[object, ...]
) -> None:
    assert digest_of(*one) != digest_of(*other)


@pytest.mark.parametrize("part", [object(), float("nan"), {1, 2}], ids=["object", "nan", "set"])
def test_what_cannot_be_digested(part: object) -> None:
    with pytest.raises(TypeError, match=r"^cannot digest a "):
        digest_of(part)


def test_settings() -> None:
    assert munge_socket({}) == DEFAULT_SOCKET
    assert munge_socket({"DMP_MUNGE_SOCKET": "/x/sock"}) == "/x/sock"
    assert munge_ttl({}) == DEFAULT_TTL
    assert munge_ttl({"DMP_MUNGE_TTL": "600"}) == 600
    with pytest.raises(UsageError, match=r"^DMP_MUNGE_TTL must be at least 1 second, not 0$"):
        munge_ttl({"DMP_MUNGE_TTL": "0"})


def test_missing_library_in_one_line() -> None:
    with pytest.raises(LibraryMissing) as caught:
        _load("libmunge-not-here.so.2")
    message = str(caught.value)
    assert message.startswith("libmunge-not-here.so.2 cannot be loaded: ")
    assert "\n" not in message


def test_no_credential_needs_no_munged() -> None:
    with pytest.raises(Refused, match=r"^no credential$"):
        verify(None, digest_of("work"), "/nonexistent/socket")
