"""dmp_tasks.asuser: a batch run in a child that dropped to another user for good, where the
filesystem's own permissions decide what it may read and write."""

from __future__ import annotations

import errno
import os
import pwd
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dmp_cli.errors import FatalStoreError, StoreError
from dmp_cli.rows import Status
from dmp_tasks.asuser import BatchDied, BatchFailed, UserSwitchRefused, groups_of, run_as

# Numeric ids with no passwd entry: nobody's files here but the tests'.
A = 60001
B = 60002
NOBODY = 65534

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change users")


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory every user may enter and write in (pytest's tmp_path is root's alone),
    removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="dmp-asuser-") as name:
        os.chmod(name, 0o1777)
        yield Path(name)


def owned_by(path: Path, uid: int, mode: int, text: str = "secret\n") -> Path:
    path.write_text(text)
    os.chown(path, uid, uid)
    os.chmod(path, mode)
    return path


def read(path: Path) -> str:
    return path.read_text()


def read_each(paths: list[Path]) -> list[dict[str, Any]]:
    """A batch as the caller writes it: a file that cannot be read is a row, not the end."""
    rows: list[dict[str, Any]] = []
    for path in paths:
        try:
            rows.append({"path": str(path), "status": Status.OK, "text": path.read_text()})
        except OSError as exc:
            rows.append({"path": str(path), "status": Status.UNREADABLE, "errno": exc.errno})
    return rows


def credentials() -> dict[str, Any]:
    return {
        "uid": os.getresuid(),
        "gid": os.getresgid(),
        "groups": sorted(os.getgroups()),
    }


@needs_root
def test_a_file_only_b_may_read_is_refused_to_a(shared: Path) -> None:
    path = owned_by(shared / "b-only", B, 0o400)
    assert run_as(B, B, read, path) == "secret\n"
    with pytest.raises(BatchFailed) as caught:
        run_as(A, A, read, path)
    assert caught.value.type_name == "PermissionError"
    assert caught.value.errno == errno.EACCES
    assert str(caught.value).startswith(
        "the batch as uid 60001 failed: PermissionError: [Errno 13] Permission denied:"
    )


@needs_root
def test_a_batch_that_catches_makes_the_refused_file_a_row(shared: Path) -> None:
    mine = owned_by(shared / "a-only", A, 0o400, "mine\n")
    theirs = owned_by(shared / "b-only", B, 0o400)
    group = owned_by(shared / "group", B, 0o440, "group\n")
    os.chown(group, B, A)  # readable by the group A is in
    rows = run_as(A, A, read_each, [mine, theirs, group])
    assert [row["status"] for row in rows] == [Status.OK, Status.UNREADABLE, Status.OK]
    assert rows[0]["text"] == "mine\n"
    assert rows[1]["errno"] == errno.EACCES
    assert rows[2]["text"] == "group\n"


def create(path: Path) -> int:
    path.write_text("made by the batch\n")
    umask = os.umask(0)
    os.umask(umask)
    return umask


@needs_root
def test_a_file_the_batch_creates_is_the_users_and_the_umask_is_kept(shared: Path) -> None:
    umask = os.umask(0o027)
    try:
        assert run_as(A, B, create, shared / "new") == 0o027
    finally:
        os.umask(umask)
    made = (shared / "new").stat()
    assert (made.st_uid, made.st_gid) == (A, B)
    assert made.st_mode & 0o777 == 0o640


@needs_root
def test_a_uid_without_passwd_entry_has_its_gid_alone() -> None:
    assert groups_of(A, B) == [B]
    assert run_as(A, B, credentials) == {"uid": (A, A, A), "gid": (B, B, B), "groups": [B]}


@needs_root
def test_nobody_has_exactly_its_groups() -> None:
    try:
        entry = pwd.getpwuid(NOBODY)
    except KeyError:
        pytest.skip("no passwd entry for uid 65534 (nobody) here")
    expected = sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid)))
    assert sorted(groups_of(NOBODY, entry.pw_gid)) == expected
    assert run_as(NOBODY, entry.pw_gid, credentials)["groups"] == expected


def member_of_other_groups() -> pwd.struct_passwd | None:
    """A passwd user (not root) whose group database gives it more than its own group."""
    for entry in pwd.getpwall():
        if entry.pw_uid != 0 and len(set(os.getgrouplist(entry.pw_name, entry.pw_gid))) > 1:
            return entry
    return None


@needs_root
def test_a_user_in_other_groups_has_exactly_those_groups() -> None:
    entry = member_of_other_groups()
    if entry is None:
        pytest.skip("no user here is a member of a group beside its own")
    expected = sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid)))
    assert run_as(entry.pw_uid, entry.pw_gid, credentials)["groups"] == expected


def take_root_back() -> dict[str, Any]:
    outcome: dict[str, Any] = {}
    for name, call in (("setuid", lambda: os.setuid(0)), ("setgid", lambda: os.setgid(0))):
        try:
            call()
            outcome[name] = "succeeded"
        except PermissionError as exc:
            outcome[name] = exc.errno
    status = Path("/proc/self/status").read_text().splitlines()
    outcome["CapEff"] = next(line.split()[1] for line in status if line.startswith("CapEff"))
    return outcome


@needs_root
def test_root_cannot_be_taken_back() -> None:
    assert run_as(A, A, take_root_back) == {
        "setuid": errno.EPERM,
        "setgid": errno.EPERM,
        "CapEff": "0000000000000000",
    }


def die(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(10)


@needs_root
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["KILL", "TERM"])
def test_a_batch_killed_by_a_signal_says_so(signum: int) -> None:
    # SIGTERM too: a handler the parent has (Celery's) is not the child's
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        with pytest.raises(BatchDied) as caught:
            run_as(A, A, die, signum)
    finally:
        signal.signal(signal.SIGTERM, previous)
    name = signal.Signals(signum).name
    assert str(caught.value) == f"the batch's process as uid 60001 died: killed by {name}"


@needs_root
def test_a_batch_that_exits_without_a_result_says_so() -> None:
    with pytest.raises(BatchDied, match=r"^the batch's process as uid 60001 died: exited with "):
        run_as(A, A, os._exit, 3)


@needs_root
def test_a_50_mb_result_comes_back() -> None:
    size = 50 * 1024 * 1024
    result = run_as(A, A, os.urandom, size)
    assert len(result) == size


@needs_root
@pytest.mark.parametrize(
    ("error", "transient", "fatal"),
    [
        (StoreError("s3://vault: SlowDown", transient=True), True, False),
        (FatalStoreError("s3://vault: NoSuchBucket"), False, True),
        (RuntimeError("s3://vault: not a DmpError"), False, False),
    ],
    ids=["transient", "fatal", "other"],
)
def test_an_error_keeps_what_a_retry_needs(error: Exception, transient: bool, fatal: bool) -> None:
    def fail() -> None:
        raise error

    with pytest.raises(BatchFailed) as caught:
        run_as(A, A, fail)
    assert caught.value.type_name == type(error).__name__
    assert (caught.value.transient, caught.value.fatal) == (transient, fatal)
    assert caught.value.errno is None


class NotPlain:
    """A class outside dmp: the parent, as root, does not build it from what the child sent."""

    def __init__(self, value: int) -> None:
        self.value = value


@needs_root
def test_a_result_the_parent_will_not_build_is_refused() -> None:
    with pytest.raises(BatchFailed, match=r"returned a tests\.unit\.test_asuser\.NotPlain, "):
        run_as(A, A, NotPlain, 1)


@needs_root
def test_a_result_that_cannot_be_pickled_is_an_error() -> None:
    with pytest.raises(BatchFailed, match=r"the batch's result cannot be sent back"):
        run_as(A, A, lambda: lambda: None)


@needs_root
def test_plain_values_and_dmp_enums_come_back(shared: Path) -> None:
    value = {"path": shared, "status": Status.MISSING, "sizes": {1, 2}, "n": 3.5, "b": b"x"}
    assert run_as(A, A, lambda: value) == value


@needs_root
def test_a_drop_that_did_not_happen_is_refused(
    shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "setresuid", lambda *_: None)  # the child stays root
    with pytest.raises(UserSwitchRefused) as caught:
        run_as(A, A, create, shared / "ran")
    assert str(caught.value) == (
        "cannot drop to uid 60001 gid 60001: the ids did not change (uid (0, 0, 0))"
    )
    assert isinstance(caught.value, PermissionError)
    assert not (shared / "ran").exists()  # fn did not run


def as_another(uid: int) -> str:
    try:
        return f"ran as {run_as(uid, uid, os.getuid)}"
    except UserSwitchRefused as exc:
        assert isinstance(exc, PermissionError)
        return str(exc)


@needs_root
def test_a_process_not_root_runs_as_itself_only() -> None:
    assert run_as(A, A, as_another, A) == "ran as 60001"
    assert run_as(A, A, as_another, B) == (
        "cannot run a batch as uid 60002 gid 60002: this process runs as uid 60001 "
        "gid 60001, and only root changes users"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="runs as root: the test above drops first")
def test_not_root_runs_as_itself_only() -> None:
    uid, gid = os.getuid(), os.getgid()
    assert run_as(uid, gid, os.getuid) == uid
    with pytest.raises(UserSwitchRefused):
        run_as(uid + 1, gid, os.getuid)


def test_uid_0_is_refused_unless_allowed() -> None:
    with pytest.raises(ValueError, match="not run as uid 0 unless"):
        run_as(0, 0, os.getuid)
    for uid, gid in ((-1, A), (A, -1), (2**32 - 1, A), (A, 2**32 - 1)):  # -1: "unchanged"
        with pytest.raises(ValueError, match="no such user"):
            run_as(uid, gid, os.getuid)


@needs_root
def test_uid_0_allowed_runs_as_root() -> None:
    assert run_as(0, 0, os.getresuid, allow_root=True) == (0, 0, 0)


def sleep_after_writing_pid(path: Path) -> None:
    path.write_text(str(os.getpid()))
    time.sleep(60)


def wait_for_pid(path: Path) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.01)
    raise AssertionError(f"no pid in {path}")


def gone(pid: int) -> bool:
    """The process has ended: no such process, or a zombie no one has reaped yet."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.01)
    return False


@needs_root
def test_an_interrupted_caller_stops_its_batch(shared: Path) -> None:
    class TimeLimit(Exception):
        pass

    def limit(*_: Any) -> None:
        raise TimeLimit

    previous = signal.signal(signal.SIGALRM, limit)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(TimeLimit):
            run_as(A, A, sleep_after_writing_pid, shared / "pid")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    pid = wait_for_pid(shared / "pid")
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(pid, 0)


@needs_root
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_a_batch_dies_with_the_process_that_forked_it(shared: Path) -> None:
    worker = os.fork()
    if worker == 0:  # a worker killed at its hard time limit
        try:
            run_as(A, A, sleep_after_writing_pid, shared / "pid")
        finally:
            os._exit(0)
    try:
        batch = wait_for_pid(shared / "pid")
    finally:
        os.kill(worker, signal.SIGKILL)
        os.waitpid(worker, 0)
    assert gone(batch)


@needs_root
def test_the_cost_of_a_round_trip(capsys: pytest.CaptureFixture[str]) -> None:
    """Measured and reported, not asserted: fork, drop, run, pipe back and reap."""
    rounds = 50
    start = time.perf_counter()
    for _ in range(rounds):
        run_as(A, A, os.getuid)
    cost = (time.perf_counter() - start) / rounds * 1000
    with capsys.disabled():
        print(f"\nrun_as round trip: {cost:.2f} ms (mean of {rounds})")
