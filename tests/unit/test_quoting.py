"""File names in messages are quoted byte for byte as the real `sha256sum` quotes them."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from dmp_cli.quoting import quote_name

AWKWARD = {
    "plain": b"plain.txt",
    "space": b"a b",
    "apostrophe": b"it's",
    "dquote": b'say "hi"',
    "both-quotes": b'it\'s "x"',
    "tab": b"tab\there",
    "newline": b"new\nline",
    "cr": b"cr\rret",
    "newline-apostrophe": b"a'b\nc",
    "non-utf8": b"\xff\xfe",
    "utf8-e-acute": b"caf\xc3\xa9",
    "combining": b"e\xcc\x81",
    "truncated-utf8": b"x\xc3",
    "utf8-then-bad": b"\xc3\xa9\xff",
    "option-like": b"-x",
    "hash-first": b"#lead",
    "hash-inside": b"a#b",
    "tilde-first": b"~home",
    "tilde-inside": b"a~",
    "brace-alone": b"{",
    "braces": b"{}",
    "brace-inside": b"a{b",
    "star": b"*star",
    "question": b"what?",
    "brackets": b"[ab]",
    "backslash": b"back\\slash",
    "dollar": b"$HOME",
    "bang": b"!bang",
    "colon": b"a:b",
    "equals": b"a=b",
    "comma-percent-at-plus": b"a,b%c@d+e",
    "del": b"\x7f",
    "control": b"\x01x",
    "bell": b"\x07",
    "leading-space": b" lead",
    "trailing-space": b"trail ",
    "apostrophe-only": b"'",
    "caret": b"^x",
    "nbsp": b"\xc2\xa0",
    "zero-width-space": b"\xe2\x80\x8b",
    "line-separator": b"\xe2\x80\xa8",
    "c1-control": b"\xc2\x85",
    "private-use": b"\xee\x80\x80",
    "emoji": b"\xf0\x9f\x98\x80",
    "apostrophe-then-tab": b"a'\tb",
    "apostrophe-ending-in-escape": b"it's\t",
    "leading-apostrophe-tab": b"'\t",
    "tab-then-apostrophe": b"\t'",
    "tab-apostrophe-tab": b"\t'\t",
    "apostrophe-paren": b"it's (1)",
    "apostrophe-late-hash": b"it's a#b",
    "apostrophe-at": b"it's@home",
    "apostrophe-first-tilde": b"~it's",
    "apostrophe-brace": b"{'",
    "apostrophe-backslash": b"it's\\",
    "apostrophe-non-utf8": b"\xff'",
    "apostrophe-utf8": b"caf\xc3\xa9's",
}


def sha256sum_quotes(name: bytes, locale: str, cwd: Path) -> bytes:
    """How sha256sum names a file it cannot open, in its one diagnostic line."""
    proc = subprocess.run(
        ["sha256sum", "--", name],
        cwd=cwd,
        capture_output=True,
        env={"LC_ALL": locale, "PATH": os.environ["PATH"]},
    )
    assert proc.returncode == 1
    prefix, suffix = b"sha256sum: ", b": No such file or directory\n"
    assert proc.stderr.startswith(prefix) and proc.stderr.endswith(suffix)
    return proc.stderr[len(prefix) : -len(suffix)]


@pytest.mark.integration  # runs sha256sum
@pytest.mark.parametrize("name", AWKWARD.values(), ids=AWKWARD.keys())
def test_quote_name_matches_sha256sum_in_the_c_locale(name: bytes, tmp_path: Path) -> None:
    assert quote_name(os.fsdecode(name), utf8=False) == sha256sum_quotes(name, "C", tmp_path)


@pytest.mark.integration  # runs sha256sum
@pytest.mark.parametrize("name", AWKWARD.values(), ids=AWKWARD.keys())
def test_quote_name_matches_sha256sum_in_a_utf8_locale(name: bytes, tmp_path: Path) -> None:
    expected = sha256sum_quotes(name, "C.UTF-8", tmp_path)
    assert quote_name(os.fsdecode(name), utf8=True) == expected


def test_quote_name_accepts_bytes_and_quotes_the_empty_name() -> None:
    assert quote_name(b"a b", utf8=False) == b"'a b'"
    assert quote_name("", utf8=False) == b"''"


@pytest.mark.integration  # runs sha256sum
def test_quote_name_matches_sha256sum_for_random_names(tmp_path: Path) -> None:
    rng = random.Random(42)
    alphabet = [bytes([b]) for b in range(1, 128) if b != ord("/")]
    alphabet += [b"\xc3\xa9", b"\xff", b"\xe2\x80\x8b", b"\xc2\x85", b"\xe2\x82", b"'"] * 4
    names = sorted(
        {b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))) for _ in range(1500)}
        - {b".", b"..", b"-"}
    )
    for locale, utf8 in (("C", False), ("C.UTF-8", True)):
        proc = subprocess.run(
            ["sha256sum", "--", *names],
            cwd=tmp_path,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            env={"LC_ALL": locale, "PATH": os.environ["PATH"]},
        )
        lines = proc.stderr.splitlines()
        assert len(lines) == len(names)
        for name, text in zip(names, lines, strict=True):
            expected = text[len(b"sha256sum: ") : -len(b": No such file or directory")]
            assert quote_name(name, utf8=utf8) == expected, (locale, name)
