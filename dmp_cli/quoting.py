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
_DOUBLE_QUOTE_UNSAFE = frozenset(b'"$`\\!')
_C_ESCAPES = {7: "a", 8: "b", 9: "t", 10: "n", 11: "v", 12: "f", 13: "r"}
# glibc's iswprint() is true for every assigned character but controls and line and
# paragraph separators: spaces (U+00A0), format characters (U+200B) and private use
# included, unlike str.isprintable().
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cn", "Cs", "Zl", "Zp"})


def _utf8_locale() -> bool:
    encoding = locale.getlocale(locale.LC_CTYPE)[1] or locale.nl_langinfo(locale.CODESET)
    try:
        return codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False


def _units(name: bytes, utf8: bool) -> list[tuple[bytes, bool]]:
    """Split a name into (bytes, printable) units: characters in a UTF-8 locale, else bytes."""
    units: list[tuple[bytes, bool]] = []
    i = 0
    while i < len(name):
        byte = name[i]
        if byte < 0x80 or not utf8:
            units.append((name[i : i + 1], 0x20 <= byte < 0x7F))
            i += 1
            continue
        for width in (2, 3, 4):
            chunk = name[i : i + width]
            try:
                char = chunk.decode("utf-8")
            except UnicodeDecodeError:
                continue
            units.append((chunk, unicodedata.category(char) not in _UNPRINTABLE_CATEGORIES))
            i += width
            break
        else:
            units.append((name[i : i + 1], False))
            i += 1
    return units


def quote_name(path: str | bytes, utf8: bool | None = None) -> bytes:
    """The name as coreutils' ``quotef`` prints it in a diagnostic."""
    name = os.fsencode(path)
    if not name:
        return b"''"
    units = _units(name, _utf8_locale() if utf8 is None else utf8)
    plain = all(printable for _, printable in units)
    needs_quotes = (
        not plain
        or any(b in _ALWAYS_SPECIAL for b in name)
        or name[0] in _SPECIAL_FIRST
        or (len(name) == 1 and name[0] in _SPECIAL_ALONE)
    )
    if not needs_quotes:
        return name
    if plain and b"'" in name and not any(b in _DOUBLE_QUOTE_UNSAFE for b in name):
        return b'"' + name + b'"'
    out = bytearray(b"'")
    in_escape = False
    for chunk, printable in units:
        if printable:
            if in_escape:
                out += b"''"
                in_escape = False
            out += b"'\\''" if chunk == b"'" else chunk
        else:
            if not in_escape:
                out += b"'$'"
                in_escape = True
            for byte in chunk:
                letter = _C_ESCAPES.get(byte)
                out += f"\\{letter}".encode() if letter else f"\\{byte:03o}".encode()
    out += b"'"
    if in_escape and out.endswith(b"'''"):
        del out[-2:]
    return bytes(out)
