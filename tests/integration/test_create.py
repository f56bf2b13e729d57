"""`dmp manifest --create`, run as the real command line: every input form, the output
order, the formats, and names that must round-trip through create -> manifest -> check."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
from pathlib import Path

import pytest

from dmp_cli.manifest import read_entries
from tests.integration.manifest_helpers import (
    AWKWARD_NAMES,
    as_dmp_writes_gnu,
    dmp,
    make_files,
    sha256sum,
    temp_files,
    without_pace_fields,
)

pytestmark = pytest.mark.integration


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def line(data: bytes, name: str) -> bytes:
    return f'{sha(data)}  "{name}"\n'.encode()


def on_disk(tree: Path, name: str) -> bytes:
    """The manifest line for a file as it is on disk."""
    return line((tree / name).read_bytes(), name)


def create(*args: str | bytes, cwd: Path, input: bytes | None = None) -> bytes:
    proc = dmp("manifest", "--create", *args, cwd=cwd, input=input)
    assert (proc.returncode, proc.stderr) == (0, b"")
    return proc.stdout


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in [
        "b.txt",
        "a.txt",
        "ab.txt",
        "c.csv",
        ".hidden.txt",
        "data/x.csv",
        "data/y.csv",
        "data/sub/z.csv",
        "data/sub/deeper/w.csv",
        "other/o.txt",
        "real/r.csv",
    ]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())
    (tmp_path / "data" / "linked").symlink_to("../real")
    (tmp_path / "data" / "loop").symlink_to(".")
    (tmp_path / "data" / "file-link.csv").symlink_to("y.csv")
    return tmp_path


def test_file_names_in_the_order_given(tree: Path) -> None:
    assert create("c.csv", "a.txt", "data/x.csv", cwd=tree) == (
        line(b"c.csv", "c.csv") + line(b"a.txt", "a.txt") + line(b"data/x.csv", "data/x.csv")
    )


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        (["*.txt"], ["a.txt", "ab.txt", "b.txt"]),
        (["?.txt"], ["a.txt", "b.txt"]),
        (["[bc]*"], ["b.txt", "c.csv"]),
        (
            ["data/**/*.csv"],
            [
                "data/file-link.csv",
                "data/sub/deeper/w.csv",
                "data/sub/z.csv",
                "data/x.csv",
                "data/y.csv",
            ],
        ),
        (
            ["**/*.csv"],
            [
                "c.csv",
                "data/file-link.csv",
                "data/sub/deeper/w.csv",
                "data/sub/z.csv",
                "data/x.csv",
                "data/y.csv",
                "real/r.csv",
            ],
        ),
        (["*.csv", "*.txt"], ["c.csv", "a.txt", "ab.txt", "b.txt"]),
        (["?.txt", "a.txt"], ["a.txt", "b.txt", "a.txt"]),
    ],
    ids=[
        "star",
        "question",
        "class",
        "globstar",
        "globstar-top",
        "two-patterns",
        "pattern-then-name",
    ],
)
def test_patterns_are_expanded_by_dmp(tree: Path, patterns: list[str], expected: list[str]) -> None:
    assert create(*patterns, cwd=tree) == b"".join(on_disk(tree, name) for name in expected)


def test_dir_is_repeatable_and_not_recursive_by_default(tree: Path) -> None:
    out = create("--dir", "other", "--dir", "data", cwd=tree)
    assert out == (
        line(b"other/o.txt", "other/o.txt")
        + line(b"data/y.csv", "data/file-link.csv")
        + line(b"data/x.csv", "data/x.csv")
        + line(b"data/y.csv", "data/y.csv")
    )


def test_recursive_is_sorted_and_skips_symlinked_directories(tree: Path) -> None:
    out = create("--dir", "data", "--recursive", cwd=tree)
    assert out == b"".join(
        [
            line(b"data/y.csv", "data/file-link.csv"),
            line(b"data/sub/deeper/w.csv", "data/sub/deeper/w.csv"),
            line(b"data/sub/z.csv", "data/sub/z.csv"),
            line(b"data/x.csv", "data/x.csv"),
            line(b"data/y.csv", "data/y.csv"),
        ]
    )
    assert create("-r", "--dir", "data", cwd=tree) == out  # the same tree, the same manifest


def test_names_dirs_and_list_together(tree: Path) -> None:
    out = create("a.txt", "--dir", "other", "--files-from", "-", cwd=tree, input=b"c.csv\n")
    assert out == line(b"a.txt", "a.txt") + line(b"other/o.txt", "other/o.txt") + line(
        b"c.csv", "c.csv"
    )


@pytest.mark.parametrize(
    ("source", "data", "null"),
    [
        ("file", b"c.csv\na.txt\n\ndata/x.csv\n", False),
        ("stdin", b"c.csv\na.txt\ndata/x.csv", False),
        ("file", b"c.csv\0a.txt\0data/x.csv\0", True),
        ("stdin", b"c.csv\0a.txt\0data/x.csv", True),
    ],
    ids=["file-lines", "stdin-lines", "file-nul", "stdin-nul"],
)
def test_files_from(tree: Path, source: str, data: bytes, null: bool) -> None:
    args = ["-0"] if null else []
    if source == "file":
        (tree / "list").write_bytes(data)
        out = create("--files-from", "list", *args, cwd=tree)
    else:
        out = create("--files-from", "-", *args, cwd=tree, input=data)
    assert out == line(b"c.csv", "c.csv") + line(b"a.txt", "a.txt") + line(
        b"data/x.csv", "data/x.csv"
    )


def test_files_from_find_print0(tree: Path) -> None:
    import subprocess

    found = subprocess.run(
        ["find", "data", "-type", "f", "-print0"], cwd=tree, capture_output=True, check=True
    ).stdout
    out = create("--null", "--files-from", "-", cwd=tree, input=found)
    assert len(out.splitlines()) == found.count(b"\0") == 4


def test_manifest_file_has_what_stdout_would_have(tree: Path) -> None:
    to_stdout = create("--dir", "data", "-r", cwd=tree)
    assert create("--dir", "data", "-r", "--manifest", "m", cwd=tree) == b""
    assert (tree / "m").read_bytes() == to_stdout
    assert create("--dir", "data", "-r", "--manifest", "-", cwd=tree) == to_stdout
    assert temp_files(tree) == []


def test_manifest_inside_the_walked_directory_does_not_list_itself(tree: Path) -> None:
    assert create("--dir", "other", "--manifest", "other/m", cwd=tree) == b""
    assert (tree / "other" / "m").read_bytes() == line(b"other/o.txt", "other/o.txt")


def test_format_sha256sum_is_what_sha256sum_writes(tree: Path) -> None:
    out = create("--format", "sha256sum", "--dir", "data", "-r", "a.txt", cwd=tree)
    names = [
        b"a.txt",
        b"data/file-link.csv",
        b"data/sub/deeper/w.csv",
        b"data/sub/z.csv",
        b"data/x.csv",
        b"data/y.csv",
    ]
    assert out == sha256sum(*names, cwd=tree).stdout


def test_paths_are_stored_as_given(tree: Path) -> None:
    absolute = str(tree / "a.txt")
    out = create("./a.txt", absolute, "data/../b.txt", cwd=tree)
    assert out == line(b"a.txt", "./a.txt") + line(b"a.txt", absolute) + line(
        b"b.txt", "data/../b.txt"
    )


def test_output_is_in_input_order_although_hashing_is_parallel(tmp_path: Path) -> None:
    rng = random.Random(11)
    names = []
    for i in range(1500):
        size = rng.choice([0, 10, 3000, 50_000]) if i % 100 else 3_000_000
        name = f"f{i:04d}"
        (tmp_path / name).write_bytes(
            rng.randbytes(size) if size < 1_000_000 else bytes([i % 256]) * size
        )
        names.append(name)
    rng.shuffle(names)
    data = "\n".join(names).encode()
    parallel = dmp("-j", "2", "manifest", "--create", "--files-from", "-", cwd=tmp_path, input=data)
    serial = dmp("-j", "1", "manifest", "--create", "--files-from", "-", cwd=tmp_path, input=data)
    assert parallel.returncode == serial.returncode == 0
    assert parallel.stdout == serial.stdout
    got = [entry.split(b'"')[1].decode() for entry in parallel.stdout.splitlines()]
    assert got == names
    for text in parallel.stdout.splitlines()[:40]:
        digest, quoted = text.split(b'  "')
        assert digest.decode() == sha((tmp_path / quoted[:-1].decode()).read_bytes())


def test_json_lines_one_object_per_file_then_a_summary(tree: Path) -> None:
    proc = dmp("--json", "manifest", "--create", "a.txt", "--dir", "other", cwd=tree)
    assert proc.returncode == 0
    *objects, summary = [json.loads(text) for text in proc.stdout.splitlines()]
    assert [*objects, without_pace_fields(summary)] == [
        {"type": "file", "path": "a.txt", "digest": sha(b"a.txt"), "bytes": 5, "status": "ok"},
        {
            "type": "file",
            "path": "other/o.txt",
            "digest": sha(b"other/o.txt"),
            "bytes": 11,
            "status": "ok",
        },
        {"type": "summary", "files": 2, "bytes": 16, "manifest": None},
    ]


def test_json_names_that_are_not_utf8_come_with_their_bytes(tmp_path: Path) -> None:
    """JSON readers other than Python's turn a lone surrogate into U+FFFD: path_b64
    gives them the name's bytes."""
    raw = b"latin1-\xff\xfe.bin"
    (tmp_path / os.fsdecode(raw)).write_bytes(b"x")
    (tmp_path / "ünï.txt").write_bytes(b"y")
    proc = dmp("--json", "manifest", "--create", "--dir", ".", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    files = [json.loads(text) for text in proc.stdout.splitlines()][:-1]
    odd, plain = sorted(files, key=lambda o: "path_b64" not in o)
    assert os.fsencode(odd["path"]) == b"./" + raw  # Python reads the name back exactly
    assert base64.b64decode(odd["path_b64"]) == b"./" + raw
    assert plain["path"] == "./ünï.txt" and "path_b64" not in plain


def test_json_with_a_manifest_file_still_writes_the_manifest(tree: Path) -> None:
    proc = dmp("--json", "manifest", "--create", "a.txt", "--manifest", "m", cwd=tree)
    assert proc.returncode == 0
    assert (tree / "m").read_bytes() == line(b"a.txt", "a.txt")
    assert without_pace_fields(json.loads(proc.stdout.splitlines()[-1])) == {
        "type": "summary",
        "files": 1,
        "bytes": 5,
        "manifest": "m",
    }


def test_json_check_one_object_per_file_then_a_summary(tree: Path) -> None:
    (tree / "m").write_bytes(
        b"".join(
            [
                f"{sha(b'a.txt')}  a.txt\n".encode(),
                f"{sha(b'x')}  b.txt\n".encode(),
                b"junk\n",
                f"{sha(b'x')}  gone\n".encode(),
                f"{sha(b'x')}  data\n".encode(),
            ]
        )
    )
    proc = dmp("--json", "manifest", "--check", "--manifest", "m", cwd=tree)
    assert proc.returncode == 1
    objects = [json.loads(text) for text in proc.stdout.splitlines()]
    assert [(o["type"], o.get("path"), o.get("status")) for o in objects] == [
        ("file", "a.txt", "ok"),
        ("file", "b.txt", "failed"),
        ("file", "gone", "unreadable"),
        ("file", "data", "unreadable"),
        ("summary", None, None),
    ]
    assert objects[1]["expected"] == sha(b"x") and objects[1]["digest"] == sha(b"b.txt")
    assert objects[2]["error"] == "No such file or directory"
    assert {k: objects[-1][k] for k in ("ok", "failed", "unreadable", "misformatted")} == {
        "ok": 1,
        "failed": 1,
        "unreadable": 2,
        "misformatted": 1,
    }


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", ["dmp", "sha256sum"])
@pytest.mark.parametrize("how", ["arguments", "files-from-nul"])
def test_awkward_names_round_trip(tmp_path: Path, fmt: str, how: str) -> None:
    contents = make_files(tmp_path, AWKWARD_NAMES)
    names = list(AWKWARD_NAMES.values())
    if how == "arguments":
        args: list[str | bytes] = ["--", *names]
        stdin = None
    else:
        args, stdin = ["--files-from", "-", "-0"], b"\0".join(names)
    proc = dmp(
        "manifest", "--create", "--format", fmt, "--manifest", "m", *args, cwd=tmp_path, input=stdin
    )
    assert (proc.returncode, proc.stderr) == (0, b"")
    entries = list(read_entries(str(tmp_path / "m")))
    assert [os.fsencode(entry.path) for entry in entries] == names
    assert [entry.digest for entry in entries] == [sha(contents[key]) for key in AWKWARD_NAMES]
    checked = dmp("manifest", "--check", "--strict", "--manifest", "m", cwd=tmp_path)
    assert (checked.returncode, checked.stderr) == (0, b"")
    assert checked.stdout.count(b": OK\n") == len(names)
    if fmt == "dmp":
        assert (tmp_path / "m").read_bytes().count(b"\n") == len(names)


def test_round_trip_detects_a_change(tmp_path: Path) -> None:
    make_files(tmp_path, AWKWARD_NAMES)
    names = list(AWKWARD_NAMES.values())
    assert (
        dmp("manifest", "--create", "--manifest", "m", "--", *names, cwd=tmp_path).returncode == 0
    )
    (tmp_path / os.fsdecode(AWKWARD_NAMES["newline"])).write_bytes(b"changed")
    checked = dmp("manifest", "--check", "--quiet", "--manifest", "m", cwd=tmp_path)
    assert checked.returncode == 1
    assert checked.stdout == b"\\new\\nline.txt: FAILED\n"
    assert checked.stderr == b"dmp: WARNING: 1 computed checksum did NOT match\n"


def test_random_byte_names_round_trip_and_match_sha256sum(tmp_path: Path) -> None:
    rng = random.Random(99)
    alphabet = [bytes([b]) for b in range(1, 256) if b != ord("/")]
    names = sorted(
        {b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(300)}
        - {b".", b"..", b"-"}
    )
    for name in names:
        (tmp_path / os.fsdecode(name)).write_bytes(name)
    listed = b"\0".join(names)
    gnu = dmp(
        "manifest",
        "--create",
        "--format",
        "sha256sum",
        "--files-from",
        "-",
        "-0",
        cwd=tmp_path,
        input=listed,
    )
    assert (gnu.returncode, gnu.stderr) == (0, b"")
    assert gnu.stdout == as_dmp_writes_gnu(sha256sum("--", *names, cwd=tmp_path).stdout)
    ours = dmp(
        "manifest",
        "--create",
        "--files-from",
        "-",
        "-0",
        "--manifest",
        "m",
        cwd=tmp_path,
        input=listed,
    )
    assert ours.returncode == 0
    assert [os.fsencode(e.path) for e in read_entries(str(tmp_path / "m"))] == names
    checked = dmp("manifest", "--check", "--quiet", "--strict", "--manifest", "m", cwd=tmp_path)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, b"", b"")
