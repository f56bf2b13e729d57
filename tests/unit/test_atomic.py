"""A manifest is written to a temporary file beside it, then linked without clobbering."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from dmp_cli.errors import DmpError
from dmp_cli.fsutil import AtomicFile


def temps(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if name.endswith(".dmp-tmp")]


def test_temporary_file_beside_the_target_until_commit(tmp_path: Path) -> None:
    target = tmp_path / "m"
    atomic = AtomicFile(str(target))
    assert os.path.dirname(atomic.temp) == str(tmp_path)
    assert temps(tmp_path) == [os.path.basename(atomic.temp)]
    atomic.stream.write(b"line\n")
    assert not target.exists()
    atomic.commit()
    assert target.read_bytes() == b"line\n"
    assert temps(tmp_path) == []


def test_mode_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        atomic = AtomicFile(str(tmp_path / "m"))
    finally:
        os.umask(old)
    atomic.commit()
    assert stat.S_IMODE(os.stat(tmp_path / "m").st_mode) == 0o640


def test_a_file_that_appears_meanwhile_is_not_clobbered(tmp_path: Path) -> None:
    target = tmp_path / "m"
    atomic = AtomicFile(str(target))
    atomic.stream.write(b"new\n")
    target.write_bytes(b"appeared\n")
    with pytest.raises(DmpError, match="File exists"):
        atomic.commit()
    assert target.read_bytes() == b"appeared\n"
    assert temps(tmp_path) == []


@pytest.mark.parametrize("code", [errno.EPERM, errno.EXDEV], ids=["eperm", "exdev"])
def test_without_hard_links_the_name_is_still_claimed_exclusively(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def no_link(source: str, target: str) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", no_link)
    target = tmp_path / "m"
    atomic = AtomicFile(str(target))
    atomic.stream.write(b"new\n")
    atomic.commit()
    assert target.read_bytes() == b"new\n"
    assert temps(tmp_path) == []

    again = AtomicFile(str(target))
    again.stream.write(b"other\n")
    with pytest.raises(DmpError, match="File exists"):
        again.commit()
    assert target.read_bytes() == b"new\n"
    assert temps(tmp_path) == []


def test_an_exception_inside_the_block_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), AtomicFile(str(tmp_path / "m")) as atomic:
        atomic.stream.write(b"half")
        raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []


def test_abort_leaves_nothing(tmp_path: Path) -> None:
    atomic = AtomicFile(str(tmp_path / "m"))
    atomic.stream.write(b"half")
    atomic.abort()
    atomic.abort()  # twice is harmless
    assert os.listdir(tmp_path) == []


def test_an_impossible_target_fails_at_once(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        AtomicFile(str(tmp_path / "no" / "m"))
