"""Properties over arbitrary input (hypothesis): every file name survives both manifest
formats through dmp's own reader, and no bytes make the reader or the JSON writer raise."""

from __future__ import annotations

import base64
import io
import json
import os

from hypothesis import example, given, settings
from hypothesis import strategies as st

from dmp_cli.cli.output import Output
from dmp_cli.layout import digest_key
from dmp_cli.manifest import FORMATS, LineParser, parse_lines

# A file name as a filesystem gives it: any bytes but NUL, not empty.
names = st.binary(min_size=1, max_size=64).filter(lambda b: b"\0" not in b)
digests = st.binary(min_size=32, max_size=32).map(bytes.hex)

EXAMPLES = int(os.environ.get("DMP_PROPERTY_EXAMPLES", "300"))


@settings(max_examples=EXAMPLES, deadline=None)
@given(name=names, digest=digests)
@example(name=b'"q"', digest="ab" * 32)  # read as dmp's quoted form, once
@example(name=b'"a\\b"', digest="ab" * 32)
@example(name=b"new\nline\r", digest="ab" * 32)
@example(name=b"\xff\xfe", digest="ab" * 32)
@example(name=b" lead", digest="ab" * 32)
def test_every_name_round_trips_in_both_formats(name: bytes, digest: str) -> None:
    path = os.fsdecode(name)
    for fmt, line in FORMATS.items():
        written = line(digest, path)
        assert written.endswith(b"\n") and written.count(b"\n") == 1, fmt
        [read] = list(parse_lines(io.BytesIO(written)))
        assert read.entry is not None, (fmt, written)
        assert (read.entry.digest, os.fsencode(read.entry.path)) == (digest, name), fmt


@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.binary(max_size=400))
def test_any_bytes_are_read_or_counted_as_misformatted(data: bytes) -> None:
    lines = list(parse_lines(io.BytesIO(data)))
    physical = [raw for raw in io.BytesIO(data).read().split(b"\n")[: data.count(b"\n") + 1] if raw]
    assert len(lines) <= len(physical)
    parser = LineParser()
    for raw in physical:
        parser.parse(raw.rstrip(b"\r"))  # never raises
    for line in lines:
        assert line.entry is None or len(line.entry.digest) == 64


@settings(max_examples=EXAMPLES, deadline=None)
@given(name=names, digest=digests)
def test_json_lines_keep_every_name(name: bytes, digest: str) -> None:
    stdout = io.BytesIO()
    out = Output(json_mode=True, stdout=stdout, stderr=io.BytesIO())
    path = os.fsdecode(name)
    out.record("file", path=path, digest=digest, status="ok")
    out.flush()
    record = json.loads(stdout.getvalue())
    got = base64.b64decode(record["path_b64"]) if "path_b64" in record else record["path"].encode()
    assert got == name


@settings(max_examples=EXAMPLES, deadline=None)
@given(digest=digests, junk=st.text(max_size=80))
def test_vault_keys_are_the_digest_split(digest: str, junk: str) -> None:
    """A key is the digest itself, split 2, 2, 4, 8 and the rest; anything else is
    refused with ValueError, never turned into a key."""
    key = digest_key(digest)
    assert key.replace("/", "") == digest
    assert [len(part) for part in key.split("/")] == [2, 2, 4, 8, 48]
    if junk != digest:
        try:
            digest_key(junk)
        except ValueError:
            pass
        else:
            raise AssertionError(f"{junk!r} made a key")
