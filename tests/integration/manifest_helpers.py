"""Running `dmp manifest` and the real `sha256sum` side by side, under LC_ALL=C."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

from tests.servers import dmp_env, run_dmp

# The end of every summary line: the time a run took, and its rates (bytes/s where it read
# or moved bytes, then files/s).
PACE = re.compile(
    r",? in (\d+\.\d+ s|\d+m \d\ds|\d+h \d\dm \d\ds) "
    r"\((\d+(\.\d)? ([KMGT]i)?B/s, )?\d[\d,]*(\.\d)? files/s\)$"
)
PACE_FIELDS = ("seconds", "files_per_second", "bytes_per_second")


def without_pace(line: str) -> str:
    """A summary line without its time and rates, which must be there."""
    match = PACE.search(line)
    assert match, f"no time and rates at the end of {line!r}"
    return line[: match.start()]


def without_pace_fields(summary: dict[str, Any]) -> dict[str, Any]:
    """A JSON summary without its time and rates, which must be there (numbers)."""
    assert all(isinstance(summary[key], int | float) for key in PACE_FIELDS[:2]), summary
    return {key: value for key, value in summary.items() if key not in PACE_FIELDS}


def untimed(output: bytes) -> bytes:
    """What dmp wrote, with the time and rates of its summaries taken out, so that two
    runs can be compared."""
    lines = []
    for line in output.decode("utf-8", "surrogateescape").splitlines():
        if line.startswith('{"type": "summary"'):
            line = json.dumps({k: v for k, v in json.loads(line).items() if k not in PACE_FIELDS})
        lines.append(PACE.sub("", line) + "\n")
    return "".join(lines).encode("utf-8", "surrogateescape")


# File names that have broken tools before; every one must survive create -> check.
AWKWARD_NAMES: dict[str, bytes] = {
    "space": b"a b.txt",
    "dquote": b'say "hi".txt',
    "open-dquote": b'"open.txt',
    "apostrophe": b"it's.txt",
    "backslash": b"back\\slash.txt",
    "backslash-n": b"not\\nnewline.txt",
    "tab": b"tab\there.txt",
    "newline": b"new\nline.txt",
    "cr": b"cr\rret.txt",
    "newline-cr-backslash": b"all\n\r\\three.txt",
    "leading-space": b" leading.txt",
    "trailing-space": b"trailing.txt ",
    "star-leading": b"*star.txt",
    "non-utf8": b"\xff\xfe",
    "utf8": b"caf\xc3\xa9.txt",
    "option-like": b"-x",
    "hash-leading": b"#hash.txt",
    "paren": b"par)en (1).txt",
    "pattern-chars": b"[a]?.txt",
    "control": b"bell\x07.txt",
}


def dmp(
    *args: str | bytes,
    cwd: Path,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    subprocess: bool = False,
) -> CompletedProcess[bytes]:
    """`dmp ARGS` in this process, or with ``subprocess=True`` in one of its own."""
    proc = run_dmp(*args, cwd=cwd, input=input, env=env, timeout=120, subprocess=subprocess)
    assert b"Traceback" not in proc.stderr, proc.stderr.decode(errors="replace")
    return proc


def as_dmp_writes_gnu(listing: bytes) -> bytes:
    """What `--format sha256sum` writes, from what `sha256sum` writes: the same, except
    that a name in double quotes takes the escaped form (a leading backslash, which
    sha256sum accepts), as dmp's own reader would otherwise read it as quoted."""
    lines = listing.splitlines(keepends=True)
    return b"".join(
        b"\\" + line if line[:1] != b"\\" and line[66:67] == b'"' else line for line in lines
    )


def sha256sum(
    *args: str | bytes, cwd: Path, input: bytes | None = None, locale: str = "C"
) -> CompletedProcess[bytes]:
    return subprocess.run(
        ["sha256sum", *args],
        cwd=cwd,
        input=input,
        capture_output=True,
        env={"LC_ALL": locale, "PATH": os.environ["PATH"]},
        timeout=120,
    )


def as_dmp(stderr: bytes) -> bytes:
    """sha256sum's diagnostics with dmp's name as the prefix."""
    return re.sub(rb"(?m)^sha256sum: ", b"dmp: ", stderr)


def stderr_lines(proc: CompletedProcess[bytes]) -> list[bytes]:
    return proc.stderr.splitlines()


def make_files(directory: Path, names: dict[str, bytes]) -> dict[str, bytes]:
    """One file per name, each with its own content; returns id -> content."""
    contents = {}
    for key, name in names.items():
        content = f"content of {key}\n".encode()
        (directory / os.fsdecode(name)).write_bytes(content)
        contents[key] = content
    return contents


def temp_files(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if name.endswith(".dmp-tmp")]


__all__ = [
    "AWKWARD_NAMES",
    "as_dmp",
    "dmp",
    "dmp_env",
    "make_files",
    "sha256sum",
    "stderr_lines",
    "temp_files",
]
