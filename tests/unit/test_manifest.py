"""The manifest format: dmp's quoted lines, and every line form `sha256sum` writes."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import pytest

from dmp_cli.errors import ManifestError
from dmp_cli.manifest import (
    Entry,
    LineParser,
    format_gnu_line,
    format_line,
    open_manifest,
    parse_lines,
    quote_path,
    read_entries,
    unquote_path,
    write_entries,
)

H = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
HB = H.encode()


def parse(line: bytes) -> Entry | None:
    return LineParser().parse(line)


def path_of(name: bytes) -> str:
    return os.fsdecode(name)


# ---------------------------------------------------------------- writing


def test_format_line_is_digest_two_spaces_and_quoted_path() -> None:
    line = format_line(Entry(H, "dmp_cli/__init__.py"))
    assert line == HB + b'  "dmp_cli/__init__.py"\n'


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        (b"plain.txt", b'"plain.txt"'),
        (b"a b", b'"a b"'),
        (b'say "hi"', b'"say \\"hi\\""'),
        (b"back\\slash", b'"back\\\\slash"'),
        (b"new\nline", b'"new\\nline"'),
        (b"cr\rret", b'"cr\\rret"'),
        (b"tab\there", b'"tab\\there"'),
        (b"bell\x07", b'"bell\\x07"'),
        (b"esc\x1b[0m", b'"esc\\x1b[0m"'),
        (b"del\x7f", b'"del\\x7f"'),
        (b"\xff\xfe", b'"\\xff\\xfe"'),
        (b"caf\xc3\xa9", b'"caf\xc3\xa9"'),
        (b"half\xc3", b'"half\\xc3"'),
        (b"*star", b'"*star"'),
        (b"#hash", b'"#hash"'),
        (b" lead and trail ", b'" lead and trail "'),
    ],
    ids=[
        "plain",
        "space",
        "dquote",
        "backslash",
        "newline",
        "cr",
        "tab",
        "bell",
        "escape",
        "del",
        "non-utf8",
        "utf8-e-acute",
        "truncated-utf8",
        "star",
        "hash",
        "spaces",
    ],
)
def test_quote_path_escapes(name: bytes, quoted: bytes) -> None:
    assert quote_path(path_of(name)) == quoted
    assert unquote_path(quoted) == path_of(name)


@pytest.mark.parametrize(
    "quoted",
    [
        b'"unterminated',
        b"no quotes",
        b'"bad \\q escape"',
        b'"trailing\\"',
        b'"short \\x4"',
        b'""',
        b'"nul \\x00 inside"',
        b'"two" "strings"',
        b'"raw " quote"',
    ],
    ids=[
        "unterminated",
        "unquoted",
        "unknown-escape",
        "escaped-closing-quote",
        "short-hex",
        "empty",
        "nul",
        "two-strings",
        "raw-quote",
    ],
)
def test_unquote_path_rejects(quoted: bytes) -> None:
    assert unquote_path(quoted) is None


def test_unquote_path_accepts_uppercase_hex_escape() -> None:
    assert unquote_path(b'"\\xFF"') == path_of(b"\xff")


def _random_name(rng: random.Random) -> bytes:
    alphabet = [bytes([b]) for b in range(1, 256)] + [b"\xc3\xa9", b"\xe2\x82\xac", b"\\n"]
    return b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24)))


def test_dmp_lines_round_trip_random_byte_names() -> None:
    rng = random.Random(20240611)
    names = [_random_name(rng) for _ in range(3000)]
    entries = [Entry(f"{rng.getrandbits(256):064x}", path_of(name)) for name in names]
    stream = io.BytesIO()
    assert write_entries(stream, entries) == len(entries)
    data = stream.getvalue()
    assert data.count(b"\n") == len(entries)  # every newline in a name is escaped
    stream.seek(0)
    lines = list(parse_lines(stream))
    assert [line.entry for line in lines] == entries
    assert [line.number for line in lines] == list(range(1, len(entries) + 1))


def test_gnu_lines_round_trip_random_byte_names() -> None:
    rng = random.Random(7)
    entries = []
    for _ in range(3000):
        name = _random_name(rng)
        if name[:1] == b'"' and unquote_path(name) is not None:
            continue  # a name that is itself a dmp quoted string reads as that string
        entries.append(Entry(f"{rng.getrandbits(256):064x}", path_of(name)))
    stream = io.BytesIO()
    write_entries(stream, entries, fmt="sha256sum")
    stream.seek(0)
    assert [line.entry for line in parse_lines(stream)] == entries


@pytest.mark.parametrize(
    ("name", "line"),
    [
        (b"plain.txt", HB + b"  plain.txt\n"),
        (b"back\\slash", b"\\" + HB + b"  back\\\\slash\n"),
        (b"new\nline", b"\\" + HB + b"  new\\nline\n"),
        (b"cr\rret", b"\\" + HB + b"  cr\\rret\n"),
        (b'tab\tq"\xff', HB + b'  tab\tq"\xff\n'),
    ],
    ids=["plain", "backslash", "newline", "cr", "raw-tab-quote-byte"],
)
def test_format_gnu_line(name: bytes, line: bytes) -> None:
    assert format_gnu_line(Entry(H, path_of(name))) == line


# ---------------------------------------------------------------- reading


@pytest.mark.parametrize(
    ("line", "name"),
    [
        (HB + b"  plain.txt", b"plain.txt"),
        (HB + b" *binary.bin", b"binary.bin"),
        (HB.upper() + b"  upper.txt", b"upper.txt"),
        (b" \t" + HB + b"  indented", b"indented"),
        (HB + b"\tafter-tab", b"after-tab"),
        (HB + b"   three spaces", b" three spaces"),
        (HB + b"  *star-in-text-mode", b"*star-in-text-mode"),
        (HB + b"  trailing ", b"trailing "),
        (b"\\" + HB + b"  back\\\\slash", b"back\\slash"),
        (b"\\" + HB + b"  new\\nline\\rcr", b"new\nline\rcr"),
        (b"SHA256 (tagged.txt) = " + HB, b"tagged.txt"),
        (b"SHA256(tight)=" + HB, b"tight"),
        (b"SHA256 (paren) name.txt) = " + HB, b"paren) name.txt"),
        (b"\\SHA256 (tag\\nnew) = " + HB, b"tag\nnew"),
        (b"SHA256 (x) =\t" + HB.upper(), b"x"),
        (HB + b'  "quoted \\"dmp\\" name\\x01"', b'quoted "dmp" name\x01'),
        (HB + b'  "unbalanced', b'"unbalanced'),
        (HB + b"  nul\0ends the name", b"nul"),
        (b"SHA256 () = " + HB, b""),
        (b"SHA256 (x) = " + HB + b"\0junk", b"x"),
    ],
    ids=[
        "text",
        "binary-marker",
        "uppercase-hex",
        "leading-white",
        "tab-separator",
        "leading-space-name",
        "star-name",
        "trailing-space",
        "escaped-backslash",
        "escaped-newline-cr",
        "bsd-tag",
        "bsd-tight",
        "bsd-last-paren",
        "bsd-escaped",
        "bsd-tab-upper",
        "dmp-quoted",
        "quote-not-dmp",
        "nul-truncates",
        "bsd-empty-name",
        "bsd-nul-after-digest",
    ],
)
def test_parse_accepts(line: bytes, name: bytes) -> None:
    entry = parse(line)
    assert entry is not None
    assert entry.digest == H
    assert entry.path == path_of(name)


@pytest.mark.parametrize(
    "line",
    [
        b"junk",
        HB,
        HB + b" ",
        HB[:-1] + b"  short-digest",
        HB + b"0  long-digest",
        HB[:-1] + b"g  not-hex",
        HB + b"x name",
        b"\\" + HB + b"  bad\\tescape",
        b"\\" + HB + b"  trailing\\",
        b"\\" + HB + b"  nul\0in-escaped",
        b"SHA256  (two spaces) = " + HB,
        b"SHA256 (no equals) " + HB,
        b"SHA256 (x) = " + HB + b" ",
        b"SHA256 (x) = " + HB[:-1],
        b"SHA256 (x)y = " + HB,
        b"SHA1 (x) = " + HB,
        b"MD5 (x) = " + HB,
    ],
    ids=[
        "junk",
        "digest-only",
        "digest-space",
        "short",
        "long",
        "not-hex",
        "no-white",
        "unknown-escape",
        "dangling-escape",
        "escaped-nul",
        "bsd-two-spaces",
        "bsd-no-equals",
        "bsd-trailing-space",
        "bsd-short",
        "bsd-junk",
        "sha1-tag",
        "md5-tag",
    ],
)
def test_parse_rejects(line: bytes) -> None:
    assert parse(line) is None


def test_single_space_lines_are_accepted_until_a_standard_line_is_seen() -> None:
    parser = LineParser()
    assert parser.parse(HB + b" reversed") == Entry(H, "reversed")
    # once in "bsd reversed" mode, a two-space line keeps the second space in the name
    assert parser.parse(HB + b"  two") == Entry(H, " two")

    parser = LineParser()
    assert parser.parse(HB + b"  standard") == Entry(H, "standard")
    assert parser.parse(HB + b" reversed") is None


def test_parse_lines_skips_comments_and_blank_lines_and_drops_cr() -> None:
    data = b"".join(
        [
            b"# a comment\n",
            b"\n",
            HB + b"  crlf.txt\r\n",
            b"\r\n",
            b"junk\n",
            b"#" + HB + b"  commented\n",
            b"  # indented comment is not a comment\n",
            HB + b"  last-without-newline",
        ]
    )
    lines = list(parse_lines(io.BytesIO(data)))
    assert [(line.number, line.entry) for line in lines] == [
        (3, Entry(H, "crlf.txt")),
        (5, None),
        (7, None),
        (8, Entry(H, "last-without-newline")),
    ]


def test_read_entries_streams_valid_entries_only(tmp_path: Path) -> None:
    manifest = tmp_path / "m"
    manifest.write_bytes(format_line(Entry(H, "a")) + b"junk\n" + format_gnu_line(Entry(H, "b")))
    assert list(read_entries(str(manifest))) == [Entry(H, "a"), Entry(H, "b")]


def test_open_manifest_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"gone\.m: No such file or directory$"):
        open_manifest(str(tmp_path / "gone.m"))
    with pytest.raises(ManifestError, match=r": Is a directory$"):
        open_manifest(str(tmp_path))


def test_a_read_error_halfway_is_a_manifest_error(tmp_path: Path) -> None:
    (tmp_path / "mem").symlink_to("/proc/self/mem")
    with pytest.raises(ManifestError, match=r"mem: Input/output error$"):
        list(read_entries(str(tmp_path / "mem")))
