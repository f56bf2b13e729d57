"""File names in messages, quoted as GNU coreutils quotes them (gnulib's shell-escape style).

`sha256sum` writes ``gone.txt: No such file or directory`` but ``'a b': ...`` and
``'new'$'\\n''line': ...``; `--check` must print the same bytes.
"""

from __future__ import annotations

import codecs
import locale
import os
import unicodedata

_ALWAYS_SPECIAL = frozenset(b" !\"$&'()*;<=>?[\\^`|:")
_SPECIAL_FIRST = frozenset(b"#~")
_SPECIAL_ALONE = frozenset(b"{}")
# Characters that still allow the double-quoted form "it's" (gnulib's "c and shell quote
# compatible" set); '#' and '~' only first, '{' and '}' only alone.
_DOUBLE_QUOTE_SAFE = frozenset(
    b" '%+,-./0123456789:@ABCDEFGHIJKLMNOPQRSTUVWXYZ]_abcdefghijklmnopqrstuvwxyz"
)
_C_ESCAPES = {7: "a", 8: "b", 9: "t", 10: "n", 11: "v", 12: "f", 13: "r"}
# glibc's iswprint() is true for every assigned character but controls and line and
# paragraph separators: spaces (U+00A0), format characters (U+200B) and private use
# included, unlike str.isprintable().
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cn", "Cs", "Zl", "Zp"})

Unit = tuple[bytes, bool, int]  # the bytes of one character, printable?, offset in the name


def _utf8_locale() -> bool:
    encoding = locale.getlocale(locale.LC_CTYPE)[1] or locale.nl_langinfo(locale.CODESET)
    try:
        return codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False


def _units(name: bytes, utf8: bool) -> list[Unit]:
    """Split a name into characters in a UTF-8 locale, else bytes."""
    units: list[Unit] = []
    i = 0
    while i < len(name):
        byte = name[i]
        if byte < 0x80 or not utf8:
            units.append((name[i : i + 1], 0x20 <= byte < 0x7F, i))
            i += 1
            continue
        for width in (2, 3, 4):
            chunk = name[i : i + width]
            try:
                char = chunk.decode("utf-8")
            except UnicodeDecodeError:
                continue
            units.append((chunk, unicodedata.category(char) not in _UNPRINTABLE_CATEGORIES, i))
            i += width
            break
        else:
            units.append((name[i : i + 1], False, i))
            i += 1
    return units


def _needs_quotes(name: bytes, units: list[Unit]) -> bool:
    return (
        not all(printable for _, printable, _ in units)
        or any(b in _ALWAYS_SPECIAL for b in name)
        or name[0] in _SPECIAL_FIRST
        or (len(name) == 1 and name[0] in _SPECIAL_ALONE)
    )


def _double_quote_safe(chunk: bytes, offset: int, name: bytes) -> bool:
    if len(chunk) > 1:
        return True  # a printable multibyte character
    byte = chunk[0]
    return (
        byte in _DOUBLE_QUOTE_SAFE
        or (byte in _SPECIAL_FIRST and offset == 0)
        or (byte in _SPECIAL_ALONE and len(name) == 1)
    )


def _single_quoted(units: list[Unit], pending: bool) -> tuple[bytes, bool]:
    """One pass of gnulib's shell-always style with $'...' escapes; ``pending`` is whether
    a $'...' section is open. Returns the text and whether one is open at the end."""
    out = bytearray(b"'")
    for chunk, printable, _ in units:
        if not printable:
            for byte in chunk:
                if not pending:
                    out += b"'$'"
                    pending = True
                letter = _C_ESCAPES.get(byte)
                out += f"\\{letter}".encode() if letter else f"\\{byte:03o}".encode()
        elif chunk == b"'":
            out += b"'\\''"  # closes any $'...' section too
            pending = False
        else:
            if pending:
                out += b"''"
                pending = False
            out += chunk
    out += b"'"
    return bytes(out), pending


def quote_name(path: str | bytes, utf8: bool | None = None) -> bytes:
    """The name as coreutils' ``quotef`` prints it in a diagnostic."""
    name = os.fsencode(path)
    if not name:
        return b"''"
    units = _units(name, _utf8_locale() if utf8 is None else utf8)
    if not _needs_quotes(name, units):
        return name
    text, pending = _single_quoted(units, False)
    if b"'" not in name:
        return text
    if all(
        printable and _double_quote_safe(chunk, offset, name) for chunk, printable, offset in units
    ):
        return b'"' + name + b'"'
    # With a single quote in the name gnulib renders the name a second time, and starts
    # that pass with the $'...' state the first one ended in: reproduce it exactly.
    return _single_quoted(units, pending)[0]
