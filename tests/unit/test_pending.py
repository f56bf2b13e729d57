"""A pending file takes its name only when complete; a dead writer's temporary is cleared
by the next writer of the target, a live one's never."""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dmp_cli import fsutil
from dmp_cli.fsutil import NAMED_TEMPORARIES, PendingFile, clear_if_dead, temporary_names


@pytest.fixture(params=["unnamed", "named"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(NAMED_TEMPORARIES, "1" if request.param == "named" else "0")
    return str(request.param)


@pytest.fixture
def dir_fd(tmp_path: Path) -> Iterator[int]:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def write(pending: PendingFile, data: bytes) -> None:
    os.write(pending.fd, data)


def test_the_name_appears_only_on_publish(tmp_path: Path, dir_fd: int, mode: str) -> None:
    with PendingFile(dir_fd, "f") as pending:
        write(pending, b"data")
        visible = os.listdir(tmp_path)
        pending.publish(replace=False)
    assert (tmp_path / "f").read_bytes() == b"data"
    assert os.listdir(tmp_path) == ["f"]
    # Unnamed, nothing at all was visible while it was written; named, its temporary.
    assert visible == ([] if mode == "unnamed" else [temporary_names("f")[0]])


def test_discarded_unless_published(tmp_path: Path, dir_fd: int, mode: str) -> None:
    with pytest.raises(RuntimeError), PendingFile(dir_fd, "f") as pending:
        write(pending, b"half")
        raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []


def test_publish_never_clobbers_unless_asked(tmp_path: Path, dir_fd: int, mode: str) -> None:
    (tmp_path / "f").write_bytes(b"old")
    with PendingFile(dir_fd, "f") as pending, pytest.raises(FileExistsError):
        write(pending, b"new")
        pending.publish(replace=False)
    assert (tmp_path / "f").read_bytes() == b"old"
    with PendingFile(dir_fd, "f") as pending:
        write(pending, b"new")
        pending.publish(replace=True)
    assert (tmp_path / "f").read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["f"]


def test_replace_replaces_a_link_not_what_it_points_to(
    tmp_path: Path, dir_fd: int, mode: str
) -> None:
    (tmp_path / "elsewhere").write_bytes(b"keep")
    (tmp_path / "f").symlink_to(tmp_path / "elsewhere")
    with PendingFile(dir_fd, "f") as pending:
        write(pending, b"new")
        pending.publish(replace=True)
    assert not (tmp_path / "f").is_symlink()
    assert (tmp_path / "f").read_bytes() == b"new"
    assert (tmp_path / "elsewhere").read_bytes() == b"keep"
    assert sorted(os.listdir(tmp_path)) == ["elsewhere", "f"]


def test_mode_follows_the_umask(tmp_path: Path, dir_fd: int, mode: str) -> None:
    old = os.umask(0o027)
    try:
        with PendingFile(dir_fd, "f", 0o666) as pending:
            pending.publish(replace=False)
        with PendingFile(dir_fd, "g", 0o600) as pending:
            pending.publish(replace=True)
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "g").stat().st_mode & 0o777 == 0o600


def test_no_o_tmpfile_falls_back_to_a_named_temporary(
    tmp_path: Path, dir_fd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NFS and some parallel filesystems refuse O_TMPFILE with EOPNOTSUPP."""
    monkeypatch.setenv(NAMED_TEMPORARIES, "0")
    real_open = os.open

    def no_tmpfile(path: str, flags: int, *args: object, **kwargs: object) -> int:
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fsutil.os, "open", no_tmpfile)
    with PendingFile(dir_fd, "f") as pending:
        assert pending.temp == temporary_names("f")[0]
        write(pending, b"data")
        pending.publish(replace=False)
    assert os.listdir(tmp_path) == ["f"]


def test_a_dead_writers_temporary_is_cleared_by_the_next_writer(
    tmp_path: Path, dir_fd: int, mode: str
) -> None:
    """A temporary nobody holds a lock on is what a killed writer leaves."""
    stale = [tmp_path / temp for temp in temporary_names("f")[:3]]
    for path in stale:
        path.write_bytes(b"partial")
    with PendingFile(dir_fd, "f") as pending:
        write(pending, b"data")
        pending.publish(replace=True)
    assert os.listdir(tmp_path) == ["f"]


def test_a_live_writers_temporary_is_left_alone(
    tmp_path: Path, dir_fd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(NAMED_TEMPORARIES, "1")
    with PendingFile(dir_fd, "f") as live:
        assert live.temp == temporary_names("f")[0]
        with PendingFile(dir_fd, "f") as second:  # beside it, under the next name
            assert second.temp == temporary_names("f")[1]
            assert (tmp_path / live.temp).exists()
        write(live, b"mine")
        live.publish(replace=False)
    assert (tmp_path / "f").read_bytes() == b"mine"
    assert os.listdir(tmp_path) == ["f"]


def test_clear_if_dead(tmp_path: Path, dir_fd: int, monkeypatch: pytest.MonkeyPatch) -> None:
    temp = temporary_names("f")[0]
    assert clear_if_dead(temp, dir_fd)  # nothing there: free

    (tmp_path / temp).write_bytes(b"x")
    held = os.open(tmp_path / temp, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)  # its writer lives
    assert not clear_if_dead(temp, dir_fd)
    assert (tmp_path / temp).exists()
    os.close(held)  # its writer died: the lock goes with its descriptors
    assert clear_if_dead(temp, dir_fd)
    assert not (tmp_path / temp).exists()

    (tmp_path / "elsewhere").write_bytes(b"keep")
    (tmp_path / temp).symlink_to(tmp_path / "elsewhere")
    assert not clear_if_dead(temp, dir_fd)  # not dmp's temporary: never touched
    (tmp_path / temp).unlink()
    (tmp_path / temp).mkdir()
    assert not clear_if_dead(temp, dir_fd)
    (tmp_path / temp).rmdir()

    (tmp_path / temp).write_bytes(b"x")

    def no_flock(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fsutil.fcntl, "flock", no_flock)
    assert not clear_if_dead(temp, dir_fd)  # no telling a live writer: left alone
    assert (tmp_path / temp).read_bytes() == b"x"


def test_names_are_hidden_and_differ_by_target() -> None:
    names = temporary_names("data.bin")
    assert len(set(names)) == len(names) == fsutil.SLOTS
    assert all(n.startswith(".data.bin.") and n.endswith(".dmp-tmp") for n in names)
    assert len(names[0]) == len(".data.bin.") + 8 + len(".dmp-tmp")
    assert not set(names) & set(temporary_names("data.bin2"))
    long = "x" * 300
    assert temporary_names(long)[0].startswith(f".{'x' * 100}.")
    assert temporary_names(long) != temporary_names(long + "y")
