"""What `--create` hashes: names, patterns dmp expands itself, directories, list files."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from dmp_cli.inputs import Inputs, expand


class Collected:
    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []
        self.unmatched: list[tuple[str, str]] = []

    def paths(self, inputs: Inputs) -> list[str]:
        items = expand(
            inputs,
            lambda p, r: self.problems.append((p, r)),
            lambda p, r: self.unmatched.append((p, r)),
        )
        return [item["path"] for item in items]


def paths(inputs: Inputs) -> list[str]:
    collected = Collected()
    result = collected.paths(inputs)
    assert collected.problems == []
    return result


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small tree, with the working directory at its root."""
    for name in [
        "b.txt",
        "a.txt",
        "c.csv",
        "ab.txt",
        ".hidden.txt",
        "d/x.txt",
        "d/e/y.txt",
        "d/e/f/z.txt",
        "d/.h/w.txt",
        "d/a.dat",
        "real/r.txt",
    ]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode() * 3)
    (tmp_path / "d" / "link-to-real").symlink_to("../real")
    (tmp_path / "d" / "loop").symlink_to("..")
    (tmp_path / "d" / "file-link.txt").symlink_to("x.txt")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_names_in_the_order_given_with_sizes(tree: Path) -> None:
    items = list(expand(Inputs(["c.csv", "a.txt", "d/x.txt", "a.txt"]), _fail, _fail))
    assert items == [
        {"path": "c.csv", "size": 15},
        {"path": "a.txt", "size": 15},
        {"path": "d/x.txt", "size": 21},
        {"path": "a.txt", "size": 15},
    ]


def test_paths_are_kept_as_given(tree: Path) -> None:
    absolute = str(tree / "a.txt")
    assert paths(Inputs(["./a.txt", absolute, "d/../b.txt"])) == ["./a.txt", absolute, "d/../b.txt"]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("*.txt", ["a.txt", "ab.txt", "b.txt"]),
        ("?.txt", ["a.txt", "b.txt"]),
        ("[ac]*", ["a.txt", "ab.txt", "c.csv"]),
        ("[!a]*.txt", ["b.txt"]),
        (".*.txt", [".hidden.txt"]),
        ("d/*", ["d/a.dat", "d/file-link.txt", "d/x.txt"]),
        ("*/*.txt", ["d/file-link.txt", "d/x.txt", "real/r.txt"]),
        ("d/**/*.txt", ["d/e/f/z.txt", "d/e/y.txt", "d/file-link.txt", "d/x.txt"]),
        (
            "**/*.txt",
            [
                "a.txt",
                "ab.txt",
                "b.txt",
                "d/e/f/z.txt",
                "d/e/y.txt",
                "d/file-link.txt",
                "d/x.txt",
                "real/r.txt",
            ],
        ),
        ("d/**", ["d/a.dat", "d/e/f/z.txt", "d/e/y.txt", "d/file-link.txt", "d/x.txt"]),
        ("d/**/**/z.txt", ["d/e/f/z.txt"]),
        ("**/e/*", ["d/e/y.txt"]),
        ("./d/e/*.txt", ["./d/e/y.txt"]),
    ],
    ids=[
        "star",
        "question",
        "class",
        "negated-class",
        "hidden-explicit",
        "dir-star",
        "star-dir",
        "globstar",
        "globstar-top",
        "globstar-all",
        "globstar-twice",
        "globstar-prefix",
        "dot-prefix",
    ],
)
def test_patterns_are_expanded_sorted_to_regular_files(
    tree: Path, pattern: str, expected: list[str]
) -> None:
    assert paths(Inputs([pattern])) == expected


def test_globstar_does_not_descend_symlinked_directories_or_loops(tree: Path) -> None:
    found = paths(Inputs(["**"]))
    assert not [p for p in found if "loop" in p or "link-to-real" in p]
    assert "real/r.txt" in found
    assert len(found) == len(set(found))


def test_absolute_pattern(tree: Path) -> None:
    assert paths(Inputs([f"{tree}/d/e/*"])) == [f"{tree}/d/e/y.txt"]


def test_existing_name_with_pattern_characters_is_taken_literally(tree: Path) -> None:
    (tree / "[a].txt").write_bytes(b"literal")
    (tree / "*").write_bytes(b"star")
    assert paths(Inputs(["[a].txt", "*"])) == ["[a].txt", "*"]


def test_pattern_without_match_is_reported_as_unmatched(tree: Path) -> None:
    collected = Collected()
    assert collected.paths(Inputs(["*.nothing", "a.txt", "d/e"])) == ["a.txt"]
    assert collected.unmatched == [("*.nothing", "no regular file matches this pattern")]
    assert collected.problems == [("d/e", "Is a directory (use --dir to include its files)")]


def test_problems_are_reported_not_raised(tree: Path) -> None:
    os.mkfifo(tree / "fifo")
    (tree / "dangling").symlink_to("nowhere")
    collected = Collected()
    found = collected.paths(Inputs(["missing", "a.txt", "no/dir/x", "fifo", "dangling", "a.txt/x"]))
    assert found == ["a.txt"]
    assert collected.problems == [
        ("missing", "No such file or directory"),
        ("no/dir/x", "No such file or directory"),
        ("fifo", "Not a regular file"),
        ("dangling", "No such file or directory"),
        ("a.txt/x", "Not a directory"),
    ]


def test_dir_lists_regular_files_directly_in_it_sorted(tree: Path) -> None:
    assert paths(Inputs(dirs=["d"])) == ["d/a.dat", "d/file-link.txt", "d/x.txt"]


def test_dirs_are_taken_in_order_and_may_repeat(tree: Path) -> None:
    assert paths(Inputs(dirs=["real", "d/e", "real"])) == ["real/r.txt", "d/e/y.txt", "real/r.txt"]


def test_recursive_walk_is_sorted_and_skips_symlinked_directories(tree: Path) -> None:
    assert paths(Inputs(dirs=["d"], recursive=True)) == [
        "d/.h/w.txt",
        "d/a.dat",
        "d/e/f/z.txt",
        "d/e/y.txt",
        "d/file-link.txt",
        "d/x.txt",
    ]


def test_recursive_walk_sorts_by_bytes(tmp_path: Path) -> None:
    names = [b"Z", b"a", b"\xc3\xa9", b"\xff", b"_", b"0", b"a.b", b"a-b"]
    for name in names:
        (tmp_path / os.fsdecode(name)).write_bytes(b"")
    found = paths(Inputs(dirs=[str(tmp_path)], recursive=True))
    assert [os.fsencode(os.path.basename(p)) for p in found] == sorted(names)


def test_recursive_walk_is_deterministic(tree: Path) -> None:
    first = paths(Inputs(dirs=["."], recursive=True))
    assert first == paths(Inputs(dirs=["."], recursive=True))
    assert "./d/e/f/z.txt" in first


def test_dir_problems(tree: Path) -> None:
    collected = Collected()
    assert collected.paths(Inputs(dirs=["missing", "a.txt", "real"])) == ["real/r.txt"]
    assert collected.problems == [
        ("missing", "No such file or directory"),
        ("a.txt", "Not a directory"),
    ]


def test_names_then_dirs_then_list(tree: Path) -> None:
    (tree / "list").write_bytes(b"c.csv\n")
    assert paths(Inputs(["a.txt"], ["real"], files_from="list")) == ["a.txt", "real/r.txt", "c.csv"]


@pytest.mark.parametrize(
    ("data", "null"),
    [(b"b.txt\na.txt\n\nd/x.txt", False), (b"b.txt\0a.txt\0d/x.txt\0", True)],
    ids=["lines", "nul-separated"],
)
def test_files_from(tree: Path, data: bytes, null: bool) -> None:
    (tree / "list").write_bytes(data)
    assert paths(Inputs(files_from="list", null_separated=null)) == ["b.txt", "a.txt", "d/x.txt"]


def test_files_from_nul_keeps_newlines_and_odd_bytes(tree: Path) -> None:
    name = b"new\nline \xff"
    (tree / os.fsdecode(name)).write_bytes(b"x")
    (tree / "list").write_bytes(name + b"\0a.txt")
    assert paths(Inputs(files_from="list", null_separated=True)) == [os.fsdecode(name), "a.txt"]


def test_files_from_stdin(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"a.txt\0c.csv\0"))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert paths(Inputs(files_from="-", null_separated=True)) == ["a.txt", "c.csv"]


def test_files_from_a_long_list_split_across_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    names = [f"file-{i:05d}-{'x' * 40}" for i in range(3000)]  # about 150 KB of names
    for name in names:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "list").write_bytes("\n".join(names).encode())
    assert paths(Inputs(files_from="list")) == names


def test_files_from_missing_list(tree: Path) -> None:
    collected = Collected()
    assert collected.paths(Inputs(files_from="nope")) == []
    assert collected.problems == [("nope", "No such file or directory")]


def test_given() -> None:
    assert not Inputs().given()
    assert not Inputs(recursive=True).given()
    assert Inputs(["a"]).given()
    assert Inputs(dirs=["d"]).given()
    assert Inputs(files_from="-").given()


def _fail(path: str, reason: str) -> None:
    raise AssertionError(f"unexpected problem: {path}: {reason}")
