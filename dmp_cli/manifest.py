"""Manifest lines: reading every form `sha256sum` writes, writing dmp's quoted form.

A dmp line is 64 lowercase hex digits, two spaces and the path in double quotes, with
``\\\\ \\" \\n \\r \\t`` and ``\\xHH`` (any other control byte, or a byte that is not valid
UTF-8) escaped inside the quotes, so that every POSIX name round-trips exactly.

Paths are ``str`` as the ``os`` module gives them (undecodable bytes held as surrogate
escapes); ``os.fsencode`` turns them back into the exact bytes.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from dmp_cli.errors import ManifestError

DIGEST_HEX = 64
_HEX = b"0123456789abcdefABCDEF"
_WHITE = b" \t"
_TAG = b"SHA256"

# dmp format: characters that are escaped inside the quotes.
_NEEDS_QUOTE_ESCAPE = re.compile('[\x00-\x1f\x7f"\\\\\udc80-\udcff]')
_QUOTE_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNQUOTE = re.compile(rb'\\(x[0-9a-fA-F]{2}|[\\"nrt])')
_UNQUOTE_BYTES = {b"\\": b"\\", b'"': b'"', b"n": b"\n", b"r": b"\r", b"t": b"\t"}
# The lines nearly every manifest is made of, read in one match: a dmp line without
# escapes, or a sha256sum line whose name is not quoted; anything else takes the long way.
_COMMON_LINE = re.compile(rb'([0-9a-fA-F]{64}) [ *](?:"([^"\\\x00]+)"|([^"\x00][^\x00]*))\Z')
_QUOTED = re.compile(rb'"((?:[^"\\]|\\.)*)"\Z', re.DOTALL)
# What os.fsdecode and os.fsencode do, without their calls and type checks: the parser
# decodes every name, and --check encodes every name it prints.
FS_ENCODING = sys.getfilesystemencoding()
FS_ERRORS = sys.getfilesystemencodeerrors()


# Entry and Line are not frozen: the parser makes one of each a line, and a frozen
# dataclass costs twice as much to make (about a fifth of parsing a line). An Entry is
# still hashable, as a value: nothing in dmp changes one once made.
@dataclass(slots=True, unsafe_hash=True)
class Entry:
    """One manifest line that names a file: its sha256 (lowercase hex) and its path."""

    digest: str
    path: str


@dataclass(slots=True)
class Line:
    """One line of a manifest as read: ``entry`` is None when the line is improperly formatted."""

    number: int
    entry: Entry | None


# ---------------------------------------------------------------- writing


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    known = _QUOTE_ESCAPES.get(char)
    if known is not None:
        return known
    code = ord(char)
    return f"\\x{code - 0xDC00 if code >= 0xDC80 else code:02x}"


def quote_path(path: str) -> bytes:
    """The path in double quotes with dmp's escapes, as UTF-8 bytes."""
    return b'"' + _NEEDS_QUOTE_ESCAPE.sub(_escape_char, path).encode("utf-8") + b'"'


def dmp_line(digest: str, path: str) -> bytes:
    """A dmp manifest line, newline included."""
    return f'{digest}  "{_NEEDS_QUOTE_ESCAPE.sub(_escape_char, path)}"\n'.encode()


def format_line(entry: Entry) -> bytes:
    """A dmp manifest line, newline included."""
    return dmp_line(entry.digest, entry.path)


def gnu_line(digest: str, path: str) -> bytes:
    """The line `sha256sum` writes for this file (text mode), newline included."""
    name = os.fsencode(path)
    # A name in double quotes would read back as dmp's quoted form: the escaped form
    # (a leading backslash, which sha256sum accepts for any name) keeps it a plain name.
    if b"\\" in name or b"\n" in name or b"\r" in name or name[:1] == b'"':
        name = name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
        return b"\\" + digest.encode("ascii") + b"  " + name + b"\n"
    return digest.encode("ascii") + b"  " + name + b"\n"


def format_gnu_line(entry: Entry) -> bytes:
    """The line `sha256sum` writes for this entry (text mode), newline included."""
    return gnu_line(entry.digest, entry.path)


def checked_name(path: str) -> bytes:
    """A name as `sha256sum --check` shows it in its line for a file (``NAME: OK``): its
    bytes, escaped only if they hold a newline (a leading backslash, and ``\\\\``,
    ``\\n``, ``\\r``), as coreutils 9.1 does."""
    name = path.encode(FS_ENCODING, FS_ERRORS)
    if b"\n" in name:
        name = name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
        return b"\\" + name
    return name


# Line writers by --format name, taking (digest, path).
FORMATS = {"dmp": dmp_line, "sha256sum": gnu_line}


# ---------------------------------------------------------------- reading


def unquote_path(quoted: bytes) -> str | None:
    """The path inside a dmp quoted string, or None if it is not one."""
    match = _QUOTED.match(quoted)
    if match is None:
        return None
    inner = match.group(1)
    if b"\\" in inner:
        pieces = _UNQUOTE.split(inner)
        # split() alternates literal text and escape bodies; a stray backslash left in
        # the literal text is an unknown escape.
        out = bytearray()
        for index, piece in enumerate(pieces):
            if index % 2 == 0:
                if b"\\" in piece:
                    return None
                out += piece
            elif piece[:1] == b"x":
                out.append(int(piece[1:], 16))
            else:
                out += _UNQUOTE_BYTES[piece]
        inner = bytes(out)
    if not inner or b"\0" in inner:
        return None
    return os.fsdecode(inner)


def _gnu_unescape(name: bytes) -> bytes | None:
    """Undo sha256sum's escaping (``\\\\``, ``\\n``, ``\\r``); None if any other escape."""
    out = bytearray()
    i = 0
    while i < len(name):
        byte = name[i]
        if byte == 0x5C:
            if i + 1 == len(name):
                return None
            nxt = name[i + 1]
            if nxt == 0x6E:
                out.append(0x0A)
            elif nxt == 0x72:
                out.append(0x0D)
            elif nxt == 0x5C:
                out.append(0x5C)
            else:
                return None
            i += 2
            continue
        if byte == 0:
            return None
        out.append(byte)
        i += 1
    return bytes(out)


def _is_hex(text: bytes) -> bool:
    # translate() deletes the hex digits in C: a per-byte loop here cost more than hashing.
    return len(text) == DIGEST_HEX and not text.translate(None, _HEX)


class LineParser:
    """Parses manifest lines one at a time, as `sha256sum --check` does.

    Stateful only in one way coreutils is: once a line has been read in the standard
    ``hash  name`` form, the single-space (reversed BSD) form is no longer accepted.
    """

    def __init__(self, reversed_bsd: bool | None = None) -> None:
        self._bsd_reversed = -1 if reversed_bsd is None else int(reversed_bsd)

    @property
    def reversed_bsd(self) -> bool | None:
        """Whether the lines are in the reversed BSD form (one space) rather than the
        standard one (two), once a line has settled it; None before. A parser made with
        this value reads the lines after that point as this one does."""
        return None if self._bsd_reversed < 0 else self._bsd_reversed == 1

    def standard(self) -> bool:
        """Whether a line in the standard ``hash  name`` form may come now: it is read as
        one (and from then on, the reversed BSD form is not)."""
        if self._bsd_reversed == 1:
            return False
        self._bsd_reversed = 0
        return True

    def parse(self, text: bytes) -> Entry | None:
        """Parse one line without its newline; None if improperly formatted."""
        if self._bsd_reversed != 1:
            common = _COMMON_LINE.match(text)
            if common is not None:
                self._bsd_reversed = 0
                digest, quoted, plain = common.groups()
                name = quoted if quoted is not None else plain
                path = name.decode(FS_ENCODING, FS_ERRORS)
                return Entry(digest.decode("ascii").lower(), path)
        return self._parse(text)

    def _parse(self, text: bytes) -> Entry | None:
        i = 0
        n = len(text)
        while i < n and text[i] in _WHITE:
            i += 1
        escaped = text[i : i + 1] == b"\\"
        if escaped:
            i += 1
        if text.startswith(_TAG, i):
            return self._parse_tag(text, i + len(_TAG), escaped)
        if n - i < DIGEST_HEX + 2:
            return None
        digest = text[i : i + DIGEST_HEX]
        i += DIGEST_HEX
        if not _is_hex(digest) or text[i] not in _WHITE:
            return None
        i += 1
        if n - i == 1 or text[i] not in b" *":
            if self._bsd_reversed == 0:
                return None
            self._bsd_reversed = 1
        elif self._bsd_reversed != 1:
            self._bsd_reversed = 0
            i += 1
        return self._entry(digest, text[i:], escaped)

    def _parse_tag(self, text: bytes, i: int, escaped: bool) -> Entry | None:
        if text[i : i + 1] == b" ":
            i += 1
        if text[i : i + 1] != b"(":
            return None
        i += 1
        close = text.rfind(b")", i)
        if close < 0:
            return None
        name = text[i:close]
        rest = text[close + 1 :].lstrip(_WHITE)
        if rest[:1] != b"=":
            return None
        digest = rest[1:].lstrip(_WHITE).partition(b"\0")[0]
        if not _is_hex(digest):
            return None
        return self._entry(digest, name, escaped)

    @staticmethod
    def _entry(digest: bytes, name: bytes, escaped: bool) -> Entry | None:
        path: str | None
        if escaped:
            raw = _gnu_unescape(name)
            if raw is None:
                return None
            path = os.fsdecode(raw)
        elif name[:1] == b'"' and (path := unquote_path(name)) is not None:
            pass
        else:
            # As in coreutils, the name is a C string: it ends at a NUL, and may be empty
            # (then opening it fails, and the line counts as a file that could not be read).
            path = os.fsdecode(name.partition(b"\0")[0])
        return Entry(digest.decode("ascii").lower(), path)


def parse_lines(stream: BinaryIO) -> Iterator[Line]:
    """Every line of a manifest that is not blank or a comment, in order."""
    for number, digest, path in parsed(stream):
        yield Line(number, None if digest is None else Entry(digest, path))


# Manifests are read a block at a time, and the lines nearly every manifest is made of
# (a dmp line without escapes, its checksum in lowercase) are found in the block by one
# call: each line of the block is one match, in groups 1 and 2 if it is such a line,
# else whole in group 3, for the parser. Line by line, the reading, the match and the
# objects made cost three times as much.
_BLOCK = 1 << 20
_BLOCK_LINES = re.compile(rb'^(?:([0-9a-f]{64})  "([^"\\\x00\n]+)"|(.*))$', re.MULTILINE)


def blocks(stream: BinaryIO) -> Iterator[bytes]:
    """A manifest's lines, a block of whole lines at a time: joined by newlines, without
    the newline after the last, so that a block holds ``block.count(b"\\n") + 1`` lines.
    A read error halfway is a ManifestError, as one at opening is."""
    read = getattr(stream, "read1", stream.read)  # what has come, from a pipe
    rest = b""
    while True:
        try:
            data = read(_BLOCK)
        except OSError as exc:  # one clear error, as for open
            name = getattr(stream, "name", None)
            name = name if isinstance(name, str) else "standard input"
            raise ManifestError(f"{name}: {exc.strerror or exc}") from exc
        if data:
            block = rest + data if rest else data
            end = block.rfind(b"\n")
            if end < 0:
                rest = block
                continue
            rest = block[end + 1 :]
            yield block[:end]
        else:
            if rest:  # the last line, without its newline
                yield rest
            return


def parse_block(
    block: bytes, parser: LineParser, number: int = 0
) -> Iterator[tuple[int, str | None, str]]:
    """``parsed`` for the lines of one block (as ``blocks`` cuts them), numbered on from
    ``number``, the number of the line before them, by ``parser`` as it stands."""
    for digest, name, other in _BLOCK_LINES.findall(block):
        number += 1
        if digest and parser.standard():
            yield number, digest.decode("ascii"), name.decode(FS_ENCODING, FS_ERRORS)
            continue
        text = digest + b'  "' + name + b'"' if digest else other
        if text[:1] == b"#":
            continue
        if text[-1:] == b"\r":
            text = text[:-1]
        if text:
            entry = parser.parse(text)
            if entry is None:
                yield number, None, ""
            else:
                yield number, entry.digest, entry.path


def parsed(stream: BinaryIO) -> Iterator[tuple[int, str | None, str]]:
    """(line number, checksum, path) for every line of a manifest that is not blank or a
    comment, in order; for an improperly formatted line, no checksum (None) and no path."""
    parser = LineParser()
    number = 0
    for block in blocks(stream):
        yield from parse_block(block, parser, number)
        number += block.count(b"\n") + 1


def read_entries(path: str) -> Iterator[Entry]:
    """The entries of a manifest file, streamed; improperly formatted lines are skipped."""
    with open_manifest(path) as stream:
        for line in parse_lines(stream):
            if line.entry is not None:
                yield line.entry


def open_manifest(path: str, shown: str | None = None) -> BinaryIO:
    """Open a manifest for reading (``-`` is stdin), with one clear error if that fails,
    naming it ``shown`` (as the CLI quotes it) if given, else ``path``."""
    if path == "-":
        import sys

        from dmp_cli.stdio import stdin_closed

        try:
            if stdin_closed():  # `<&-`
                raise ManifestError("'standard input': read error")
            return os.fdopen(os.dup(sys.stdin.fileno()), "rb")
        except (AttributeError, OSError, ValueError):  # stdin closed (`<&-`): no stdin
            raise ManifestError("'standard input': read error") from None
    try:
        stream = open(path, "rb")  # noqa: SIM115 - the caller closes it
        if os.path.isdir(path):
            stream.close()
            raise IsADirectoryError(21, os.strerror(21), path)
        return stream
    except OSError as exc:
        raise ManifestError(f"{shown or path}: {exc.strerror or exc}") from exc


def write_entries(stream: BinaryIO, entries: Iterable[Entry], fmt: str = "dmp") -> int:
    """Write entries as manifest lines; returns how many were written."""
    formatter = FORMATS[fmt]
    count = 0
    for entry in entries:
        stream.write(formatter(entry.digest, entry.path))
        count += 1
    return count
