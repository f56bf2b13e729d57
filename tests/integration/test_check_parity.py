"""`dmp manifest --check` against the real `sha256sum --check` (coreutils 9.1), byte for byte:
stdout, stderr (with dmp's name as the prefix) and exit status, for every flag."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.manifest_helpers import (
    AWKWARD_NAMES,
    as_dmp,
    as_dmp_writes_gnu,
    dmp,
    dmp_env,
    make_files,
    sha256sum,
)

pytestmark = pytest.mark.integration


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).hexdigest().encode()


class Workdir:
    """Files with awkward names, one changed after hashing, one gone, one a directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.contents = make_files(path, AWKWARD_NAMES)
        (path / "ok1").write_bytes(b"ok1\n")
        (path / "nul").write_bytes(b"nul\n")
        (path / "changed.txt").write_bytes(b"before\n")
        (path / "adir").mkdir()
        (path / "mem").symlink_to("/proc/self/mem")  # a read error, even for root

    def digest(self, key: str) -> bytes:
        return sha(self.contents[key])

    def sha256sum_lines(self, *flags: str) -> bytes:
        names = [*AWKWARD_NAMES.values(), b"changed.txt", b"ok1"]
        proc = sha256sum(*flags, "--", *names, cwd=self.path)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout


def _sha256sum_made(w: Workdir) -> bytes:
    (w.path / "gone.txt").write_bytes(b"gone\n")
    made = w.sha256sum_lines() + sha256sum("gone.txt", cwd=w.path).stdout
    (w.path / "gone.txt").unlink()
    (w.path / "changed.txt").write_bytes(b"after\n")
    return made


def _sha256sum_tag(w: Workdir) -> bytes:
    made = w.sha256sum_lines("--tag")
    (w.path / "changed.txt").write_bytes(b"after\n")
    return made


def _sha256sum_binary(w: Workdir) -> bytes:
    return w.sha256sum_lines("--binary")


def _hand_mixed(w: Workdir) -> bytes:
    ok1 = sha(b"ok1\n")
    back = w.digest("backslash")
    return b"".join(
        [
            b"# made by hand\n",
            b"\n",
            ok1 + b"  ok1\r\n",
            ok1 + b" *ok1\n",
            ok1.upper() + b"  ok1\n",
            b" \t" + ok1 + b"  ok1\n",
            b"SHA256 (ok1) = " + ok1 + b"\n",
            b"SHA256(ok1)=" + ok1 + b"\n",
            b"SHA256 (" + AWKWARD_NAMES["paren"] + b") = " + w.digest("paren") + b"\n",
            b"\\" + back + b"  back\\\\slash.txt\n",
            b"\\" + w.digest("newline") + b"  new\\nline.txt\n",
            b"\\" + w.digest("cr") + b"  cr\\rret.txt\n",
            b"\\" + back + b"  bad\\tescape\n",
            b"not a checksum line\n",
            ok1 + b"\n",
            ok1[:-1] + b"  short-digest\n",
            ok1 + b"\tok1\n",
            ok1 + b"  adir\n",
            sha(b"before\n") + b"  changed.txt\n",
            ok1 + b"  gone.txt\n",
            b"\\" + ok1 + b"  gone\\nwith newline\n",
            ok1 + b"  gone with 'space'\t\xff\n",
            ok1 + b"  mem\n",
            sha(b"nul\n") + b"  nul\0ignored after NUL\n",
            b"SHA256 () = " + ok1 + b"\n",
            b"#" + ok1 + b"  ok1\n",
            ok1 + b"  " + AWKWARD_NAMES["dquote"] + b"\n",
            ok1 + b"  last-line-without-newline",
        ]
    )


def _single_space_first(w: Workdir) -> bytes:
    ok1 = sha(b"ok1\n")
    return ok1 + b" ok1\n" + ok1 + b"  ok1\n" + ok1 + b" *ok1\n" + ok1 + b" ok1\n"


def _dash_entries(w: Workdir) -> bytes:
    ok1 = sha(b"ok1\n")
    return ok1 + b"  -\n" + ok1 + b"  ok1\nSHA256 (-) = " + ok1 + b"\n"


def _no_valid_lines(w: Workdir) -> bytes:
    return b"# only junk\nnot a line\n" + sha(b"x")[:-2] + b"  short\n\n"


def _empty(w: Workdir) -> bytes:
    return b""


def _only_comments(w: Workdir) -> bytes:
    return b"# nothing\n\n# here\n"


def _all_missing(w: Workdir) -> bytes:
    return sha(b"x") + b"  gone1\n" + sha(b"y") + b"  gone 2\n"


def _mismatch_and_missing(w: Workdir) -> bytes:
    return sha(b"x") + b"  ok1\n" + sha(b"y") + b"  gone\n" + sha(b"z") + b"  ok1\n"


def _directory_and_missing(w: Workdir) -> bytes:
    return sha(b"x") + b"  adir\n" + sha(b"y") + b"  gone\n"


MANIFESTS: dict[str, tuple[str, Callable[[Workdir], bytes]]] = {
    # id: (manifest file name, builder)
    "sha256sum-made": ("SHA256SUMS", _sha256sum_made),
    "sha256sum-tag": ("tagged.sha256", _sha256sum_tag),
    "sha256sum-binary": ("binary.sha256", _sha256sum_binary),
    "hand-mixed": ("my manifest's.txt", _hand_mixed),
    "single-space-first": ("reversed", _single_space_first),
    "no-valid-lines": ("junk manifest", _no_valid_lines),
    "empty": ("empty", _empty),
    "only-comments": ("comments", _only_comments),
    "all-missing": ("all missing", _all_missing),
    "mismatch-and-missing": ("mm", _mismatch_and_missing),
    "directory-and-missing": ("dm", _directory_and_missing),
}

FLAGS = {
    "plain": (),
    "quiet": ("--quiet",),
    "status": ("--status",),
    "strict": ("--strict",),
    "ignore-missing": ("--ignore-missing",),
    "warn": ("--warn",),
    "quiet-strict-warn-ignore": ("--quiet", "--strict", "--warn", "--ignore-missing"),
    "status-ignore-missing": ("--status", "--ignore-missing"),
    "warn-then-quiet": ("--warn", "--quiet"),  # the last of quiet/status/warn wins
    "status-then-warn": ("--status", "-w"),
    "warn-then-status": ("--warn", "--strict", "--status"),
}


def assert_same(
    ours: subprocess.CompletedProcess[bytes], theirs: subprocess.CompletedProcess[bytes]
) -> None:
    assert (ours.stdout, ours.stderr, ours.returncode) == (
        theirs.stdout,
        as_dmp(theirs.stderr),
        theirs.returncode,
    )


# Every flag set on the manifests where flags change the output; the few that matter on
# the others (which differ only in their final message).
FEW_FLAGS = ("plain", "status", "strict", "warn", "ignore-missing")
CASES = [
    pytest.param(manifest, FLAGS[flags], id=f"{manifest}-{flags}")
    for manifest in MANIFESTS
    for flags in (
        FLAGS
        if manifest
        in (
            "sha256sum-made",
            "hand-mixed",
            "all-missing",
            "mismatch-and-missing",
            "directory-and-missing",
        )
        else FEW_FLAGS
    )
]


@pytest.mark.parametrize(("manifest", "flags"), CASES)
def test_check_is_byte_identical_to_sha256sum(
    tmp_path: Path, manifest: str, flags: tuple[str, ...]
) -> None:
    name, build = MANIFESTS[manifest]
    work = Workdir(tmp_path)
    (tmp_path / name).write_bytes(build(work))
    theirs = sha256sum("--check", *flags, name, cwd=tmp_path)
    ours = dmp("manifest", "--check", *flags, "--manifest", name, cwd=tmp_path)
    assert_same(ours, theirs)


def test_the_parity_cases_exercise_every_outcome(tmp_path: Path) -> None:
    # the comparison above is only as good as its cases: the mixed manifest really has
    # OK, FAILED, unreadable and misformatted lines, and the awkward names all check OK
    work = Workdir(tmp_path)
    (tmp_path / "m").write_bytes(_hand_mixed(work))
    out = sha256sum("--check", "m", cwd=tmp_path)
    for expected in (b": OK\n", b": FAILED\n", b": FAILED open or read\n"):
        assert expected in out.stdout
    assert b"improperly formatted" in out.stderr
    (tmp_path / "s").write_bytes(work.sha256sum_lines())
    assert sha256sum("--check", "--quiet", "s", cwd=tmp_path).returncode == 0


@pytest.mark.parametrize(
    ("build", "flags"),
    [
        (_hand_mixed, ()),
        (_hand_mixed, ("--warn", "--strict")),
        (_no_valid_lines, ()),
        (_all_missing, ("--ignore-missing",)),
        (_dash_entries, ("--warn",)),
    ],
    ids=["mixed", "mixed-warn-strict", "no-valid-lines", "all-missing-ignored", "naming-stdin"],
)
def test_check_from_stdin_is_identical(
    tmp_path: Path, build: Callable[[Workdir], bytes], flags: tuple[str, ...]
) -> None:
    data = build(Workdir(tmp_path))
    theirs = sha256sum("--check", *flags, "-", cwd=tmp_path, input=data)
    ours = dmp("manifest", "--check", *flags, "--manifest", "-", cwd=tmp_path, input=data)
    assert_same(ours, theirs)


def test_check_in_a_utf8_locale_quotes_names_as_sha256sum_does(tmp_path: Path) -> None:
    ok1 = sha(b"ok1\n")
    (tmp_path / "ok1").write_bytes(b"ok1\n")
    names = [
        b"caf\xc3\xa9 gone",
        b"nb\xc2\xa0sp",
        b"it's\t\xe2\x80\x8b",
        b"\xff",
        b"ok1",
        b"\xe2\x80\xa8sep",
    ]
    lines = [ok1 + b"  " + name + b"\n" for name in names]
    lines.append(b"\\" + ok1 + b"  new\\nline \xc3\xa9\n")
    (tmp_path / "m \u00e9").write_bytes(b"".join(lines) + b"junk\n")
    theirs = sha256sum("--check", "--warn", "m \u00e9", cwd=tmp_path, locale="C.UTF-8")
    ours = dmp(
        "manifest",
        "--check",
        "--warn",
        "--manifest",
        "m \u00e9",
        cwd=tmp_path,
        env=dmp_env(LC_ALL="C.UTF-8"),
    )
    assert b"'caf\xc3\xa9 gone'" in ours.stderr  # printable in this locale
    assert_same(ours, theirs)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_check_output_does_not_depend_on_parallelism(tmp_path: Path, jobs: str) -> None:
    work = Workdir(tmp_path)
    lines = [f"{i:064x}  missing-{i}\n".encode() for i in range(300)]
    lines[::7] = [work.sha256sum_lines()] * len(lines[::7])
    (tmp_path / "m").write_bytes(b"".join(lines))
    theirs = sha256sum("--check", "m", cwd=tmp_path)
    ours = dmp("-j", jobs, "manifest", "--check", "--manifest", "m", cwd=tmp_path)
    assert_same(ours, theirs)


# ---------------------------------------------------------------- interop


def test_sha256sum_accepts_dmp_sha256sum_format(tmp_path: Path) -> None:
    make_files(tmp_path, AWKWARD_NAMES)
    names = list(AWKWARD_NAMES.values())
    created = dmp("manifest", "--create", "--format", "sha256sum", "--", *names, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert created.stdout == as_dmp_writes_gnu(sha256sum("--", *names, cwd=tmp_path).stdout)
    (tmp_path / "m").write_bytes(created.stdout)
    checked = sha256sum("--check", "--strict", "m", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.count(b": OK\n") == len(names)


@pytest.mark.parametrize("flags", [(), ("--tag",), ("--binary",)], ids=["text", "tag", "binary"])
def test_dmp_accepts_sha256sum_output(tmp_path: Path, flags: tuple[str, ...]) -> None:
    make_files(tmp_path, AWKWARD_NAMES)
    names = list(AWKWARD_NAMES.values())
    made = sha256sum(*flags, "--", *names, cwd=tmp_path).stdout
    assert b"\\" in made and b"\n\\" in made  # the escaped form is among them
    (tmp_path / "m").write_bytes(made)
    ours = dmp("manifest", "--check", "--strict", "--manifest", "m", cwd=tmp_path)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == sha256sum("--check", "m", cwd=tmp_path).stdout
    assert ours.stdout.count(b": OK\n") == len(names)


def test_dmp_reads_its_own_format_which_sha256sum_does_not(tmp_path: Path) -> None:
    # dmp's quoted form is not sha256sum's: the quotes would be part of the name there
    make_files(tmp_path, AWKWARD_NAMES)
    names = list(AWKWARD_NAMES.values())
    created = dmp("manifest", "--create", "--manifest", "m", "--", *names, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    ours = dmp("manifest", "--check", "--strict", "--manifest", "m", cwd=tmp_path)
    assert ours.returncode == 0, ours.stderr
    assert (
        ours.stdout
        == sha256sum(
            "--check", "-", cwd=tmp_path, input=sha256sum("--", *names, cwd=tmp_path).stdout
        ).stdout
    )
    assert sha256sum("--check", "m", cwd=tmp_path).returncode == 1


# ---------------------------------------------------------------- random manifests

FUZZ_FILES = {
    b"a": b"A",
    b"b c": b"BC",
    b"d\\e": b"DE",
    b"n\nl": b"NL",
    b"p)q": b"PQ",
    b" s": b"S",
    b"*t": b"T",
}
# Names that are not files; '-' (stdin for sha256sum) and '"a"' (a dmp quoted name) are left
# out on purpose: there dmp differs by design.
FUZZ_MISSING = [
    b"missing",
    b"",
    b"x\\ty",
    b"a\\",
    b"a\0b",
    b"a)",
    b"(a",
    b"a\rb",
    b"a b ",
    b"\\\\a",
]


def _fuzz_line(rng: random.Random) -> bytes:
    if rng.random() < 0.05:
        return b"#" + rng.choice([b"a", b" ", b"\\"]) * 3 + b"\n"
    if rng.random() < 0.03:
        return rng.choice([b"\n", b"\r\n", b" \n", b"\t\n"])
    if rng.random() < 0.6:
        name = rng.choice(list(FUZZ_FILES))
        digest = sha(FUZZ_FILES[name])
    else:
        name, digest = rng.choice(FUZZ_MISSING), sha(b"zz")
    if rng.random() < 0.3:
        digest = rng.choice(
            [digest.upper(), digest[:-1], digest + b"0", b"g" + digest[1:], b"", digest[:32]]
        )
    escaped = rng.random() < 0.3
    if escaped and rng.random() < 0.8:
        name = name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
    if rng.random() < 0.3:
        body = (
            b"SHA256"
            + rng.choice([b" ", b"", b"  "])
            + b"("
            + name
            + b")"
            + rng.choice([b" ", b"", b"\t", b"  "])
            + b"="
            + rng.choice([b" ", b"", b"\t"])
            + digest
            + rng.choice([b"", b"", b" ", b"\0x"])
        )
    else:
        body = (
            digest
            + rng.choice([b"  ", b"  ", b" *", b" ", b"\t", b" \t", b"\t ", b"*", b"   "])
            + name
        )
    return (
        rng.choice([b"", b"", b" ", b"\t", b" \t"])
        + (b"\\" if escaped else b"")
        + body
        + rng.choice([b"\n", b"\n", b"\r\n", b"\r\r\n"])
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_manifest_lines_are_read_as_sha256sum_reads_them(tmp_path: Path, seed: int) -> None:
    for name, content in FUZZ_FILES.items():
        (tmp_path / os.fsdecode(name)).write_bytes(content)
    rng = random.Random(seed)
    (tmp_path / "m").write_bytes(b"".join(_fuzz_line(rng) for _ in range(400)))
    for flags in ((), ("--warn", "--strict")):
        theirs = sha256sum("--check", *flags, "m", cwd=tmp_path)
        ours = dmp("manifest", "--check", *flags, "--manifest", "m", cwd=tmp_path)
        assert_same(ours, theirs)
    assert b": OK\n" in theirs.stdout and b": FAILED open or read\n" in theirs.stdout
    assert b"improperly formatted" in theirs.stderr


# An entry named '-' in a manifest file is stdin, for sha256sum: what is left of it when
# its line comes (so a second '-' reads nothing), and unreadable when stdin is closed.
STDIN_CASES = {
    "stdin-matches": b"ok1\n",
    "stdin-differs": b"other\n",
    "stdin-empty": b"",
}


@pytest.mark.parametrize("data", STDIN_CASES.values(), ids=STDIN_CASES.keys())
def test_an_entry_named_dash_in_a_manifest_file_reads_stdin(tmp_path: Path, data: bytes) -> None:
    ok1 = sha(b"ok1\n")
    (tmp_path / "ok1").write_bytes(b"ok1\n")
    (tmp_path / "-").write_bytes(b"ok1\n")  # a file named '-' is not what is read
    (tmp_path / "m").write_bytes(ok1 + b"  -\n" + ok1 + b"  ok1\n" + ok1 + b"  -\n")
    theirs = sha256sum("--check", "m", cwd=tmp_path, input=data)
    ours = dmp("manifest", "--check", "--manifest", "m", cwd=tmp_path, input=data)
    assert_same(ours, theirs)
    if data == b"ok1\n":
        assert ours.stdout == b"-: OK\nok1: OK\n-: FAILED\n"


def test_an_entry_named_dash_with_stdin_closed_cannot_be_read(tmp_path: Path) -> None:
    ok1 = sha(b"ok1\n")
    (tmp_path / "ok1").write_bytes(b"ok1\n")
    (tmp_path / "-").write_bytes(b"ok1\n")
    (tmp_path / "m").write_bytes(ok1 + b"  -\n" + ok1 + b"  ok1\n")
    shell = 'exec "$@" <&-'
    theirs = subprocess.run(
        ["sh", "-c", shell, "sh", "sha256sum", "--check", "m"],
        cwd=tmp_path,
        capture_output=True,
        env={"LC_ALL": "C", "PATH": os.environ["PATH"]},
        timeout=60,
    )
    ours = subprocess.run(
        [
            "sh",
            "-c",
            shell,
            "sh",
            sys.executable,
            "-m",
            "dmp_cli",
            *("manifest", "--check", "-m", "m"),
        ],
        cwd=tmp_path,
        capture_output=True,
        env=dmp_env(),
        timeout=60,
    )
    assert ours.stdout == theirs.stdout == b"-: FAILED open or read\nok1: OK\n"
    assert ours.returncode == theirs.returncode == 1
    # the last line says the closed stdin again, as sha256sum does at exit
    assert theirs.stderr.endswith(b"sha256sum: standard input: Bad file descriptor\n")
    assert ours.stderr == as_dmp(theirs.stderr)
