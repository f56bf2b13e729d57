"""Running a batch's file work as the user who submitted it, in a process of its own.

On a shared fleet the workers run as root, and every file a job reads or writes must be
opened as the submitting user: the filesystem's own permissions decide, exactly as if the
user had run dmp. ``run_as(uid, gid, fn, *args)`` forks a child that drops to that uid, gid
and the user's supplementary groups for good (real, effective and saved ids alike, every
capability gone, so no later call can take root back), runs ``fn(*args)`` there, sends its
result back through a pipe and exits. A switch per thread (``setfsuid``, or seteuid and
back) would leave root one call away in the same process; a process of its own does not.

What the child is, and what ``fn`` may rely on:

- It is a fork of the caller: the same modules, the same environment (``HOME``, ``TMPDIR``,
  ``AWS_*``), working directory and umask. Files the environment names (root's
  ``~/.aws/config``) are now opened as the user, so the caller passes a store's settings
  in ``args`` rather than counting on reading them there.
- Modules are imported as the user once the child has dropped, and a user may not be
  able to read the Python installation (one under /root): the modules ``fn`` needs are
  imported before ``run_as``, not inside ``fn``.
- Only the forking thread exists in the child. ``fn`` must not rely on the parent's
  threads, thread pools or connections, nor on a lock another thread may have held at the
  fork: it makes its own store clients and Redis clients. Processes it starts must not
  outlive it, as they would hold the result's pipe open and keep the caller waiting.
- The parent's Python signal handlers (Celery's among them) are the parent's: the child
  has the default action for those signals, and keeps the ones the parent ignores. It is
  killed if the process that forked it dies (Linux), so a worker killed at its hard time
  limit leaves no batch running as the user.
- An exception that escapes ``fn`` comes back as ``BatchFailed``, naming its type and
  message; a file that cannot be read is better caught by ``fn`` and made a row. The
  result must be plain data: built-in types, dates, paths, and dmp's dataclasses, named
  tuples and enums. The parent, as root, reads what a process of the user wrote, so it
  builds no other class from it.

Who may be run as whom:

- Running as root: any uid but 0. A uid of 0 raises ``ValueError`` unless the caller
  passes ``allow_root=True`` (its setting allows jobs from root): the batch then runs as
  root in a child all the same, with root's groups and the gid given.
- Running as another user: only that user's own uid and gid, in a child on the same code
  path, keeping the process's own supplementary groups (an unprivileged process cannot set
  them). Any other uid or gid raises ``UserSwitchRefused``, a ``PermissionError``.
"""

from __future__ import annotations

import ctypes
import dataclasses
import enum
import io
import os
import pickle
import pwd
import signal
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, TypeVar

from dmp_cli.errors import DmpError

T = TypeVar("T")

# An id of -1 as the kernel takes it: to setresuid, "leave this one as it is".
_NO_ID = 2**32 - 1
# Linux's prctl(PR_SET_PDEATHSIG, sig): the signal the child gets when its parent dies.
_PR_SET_PDEATHSIG = 1


class UserSwitchRefused(DmpError, PermissionError):
    """This process cannot run work as that user: it is not root, or the drop failed."""


class BatchFailed(DmpError):
    """``fn`` raised in the child. ``type_name`` names the exception's class, ``errno``
    is its errno if it had one; ``transient`` and ``fatal`` are those of a DmpError."""

    def __init__(
        self,
        message: str,
        *,
        type_name: str = "",
        errno: int | None = None,
        transient: bool = False,
        fatal: bool = False,
    ) -> None:
        super().__init__(message, transient=transient)
        self.type_name = type_name
        self.errno = errno
        self.fatal = fatal


class BatchDied(DmpError):
    """The child ended without sending a result: killed by a signal, or exited."""


def groups_of(uid: int, gid: int) -> list[int]:
    """The supplementary groups the user would have at login: those the group database
    gives its name (with ``gid`` first), or just ``gid`` for a uid with no passwd entry."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return [gid]
    groups = [gid]
    for group in os.getgrouplist(name, gid):
        if group not in groups:
            groups.append(group)
    return groups


def run_as(uid: int, gid: int, fn: Callable[..., T], *args: Any, allow_root: bool = False) -> T:
    """``fn(*args)`` run in a child process that has dropped to ``uid``, ``gid`` and the
    user's groups for good; its result, or ``BatchFailed`` if it raised.

    Raises ``ValueError`` for uid 0 (unless ``allow_root``) or an id out of range,
    ``UserSwitchRefused`` if this process cannot become that user, and ``BatchDied`` if the
    child ends without a result."""
    groups = _groups_allowed(uid, gid, allow_root)
    for stream in (sys.stdout, sys.stderr):  # else the child would write them out again
        _flush(stream)
    parent = os.getpid()
    read_end, write_end = os.pipe()
    # Signals wait until each side is ready for them: the child must not run a handler of
    # the caller's (raise into its code) before it is in _child, nor the parent before the
    # child is in its hands to be killed and reaped.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(read_end)
        os.close(write_end)
        raise
    if pid == 0:  # the child: never returns
        os.close(read_end)
        _child(uid, gid, groups, parent, write_end, mask, fn, args)
    os.close(write_end)
    pipe = open(read_end, "rb")  # noqa: SIM115 - closed below, whatever happens
    reaped = False
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        data = pipe.read()  # all of it before waitpid: results may be large
        _, status = os.waitpid(pid, 0)
        reaped = True
    finally:
        pipe.close()
        if not reaped:  # interrupted (a time limit, Ctrl-C): the batch stops with us
            _kill_and_reap(pid)
    return _outcome(uid, data, status)


def _groups_allowed(uid: int, gid: int, allow_root: bool) -> list[int] | None:
    """The groups the child sets; None where it keeps its own (not root, its own uid)."""
    if not (0 <= uid < _NO_ID and 0 <= gid < _NO_ID):
        raise ValueError(f"no such user to run a batch as: uid {uid} gid {gid}")
    if uid == 0 and not allow_root:
        raise ValueError("a batch is not run as uid 0 unless root's jobs are allowed")
    if os.geteuid() == 0:
        return groups_of(uid, gid)
    if (uid, uid) != (os.getuid(), os.geteuid()) or (gid, gid) != (os.getgid(), os.getegid()):
        raise UserSwitchRefused(
            f"cannot run a batch as uid {uid} gid {gid}: this process runs as uid "
            f"{os.geteuid()} gid {os.getegid()}, and only root changes users"
        )
    return None


def _child(
    uid: int,
    gid: int,
    groups: list[int] | None,
    parent: int,
    write_end: int,
    mask: Iterable[int],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
) -> NoReturn:
    """Drop to the user, run ``fn``, write what came of it, exit. Whatever happens, the
    child ends here: it must never return into the caller's code."""
    code = 1
    try:
        try:
            message = _dropped_and_run(uid, gid, groups, parent, mask, fn, args)
        except BaseException as exc:  # the child's own steps failed: say so all the same
            message = _raised(exc)
        _flush(sys.stdout)
        _flush(sys.stderr)
        _send(write_end, message)
        code = 0
    finally:
        os._exit(code)


def _dropped_and_run(
    uid: int,
    gid: int,
    groups: list[int] | None,
    parent: int,
    mask: Iterable[int],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
) -> tuple[Any, ...]:
    """In the child: what the parent is to be told, as plain values."""
    _reset_signals()
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    try:
        _drop(uid, gid, groups)
    except OSError as exc:
        return ("refused", f"cannot drop to uid {uid} gid {gid}: {_line(exc)}")
    _die_with(parent)
    try:
        return ("ok", fn(*args))
    except BaseException as exc:  # all of it goes back to the parent
        return _raised(exc)


def _reset_signals() -> None:
    """The default action for every signal the parent handles in Python; ignored ones stay
    ignored, as they would across exec."""
    for signum in signal.valid_signals():
        try:
            if callable(signal.getsignal(signum)):
                signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL, SIGSTOP, and numbers Python will not set
            pass


def _drop(uid: int, gid: int, groups: list[int] | None) -> None:
    """Become ``uid``/``gid`` with ``groups``, then prove that root cannot come back."""
    if groups is not None:
        os.setgroups(groups)
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise PermissionError(f"the ids did not change (uid {os.getresuid()})")
    if uid == 0:
        return  # allow_root: root stays root
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise PermissionError("setuid(0) succeeded after the drop")
    capabilities = _capabilities()
    if capabilities:
        raise PermissionError(f"capabilities remain after the drop ({capabilities})")


def _capabilities() -> str:
    """The capability sets of this process that are not empty, as /proc shows them; ''
    if there is none (or no /proc to ask)."""
    try:
        with open("/proc/self/status", "rb") as status:  # bytes: no codec to import
            lines = status.read().splitlines()
    except OSError:
        return ""
    kept = []
    for line in lines:
        name, _, value = line.partition(b":")
        if name in (b"CapPrm", b"CapEff", b"CapAmb") and int(value.strip() or b"0", 16):
            kept.append(f"{name.decode()} {value.strip().decode()}")
    return ", ".join(kept)


def _die_with(parent: int) -> None:
    """Be killed when the process that forked us dies (Linux; elsewhere nothing). Set after
    the drop, since a change of ids clears it; and the parent may already be gone. (The
    kernel watches the forking thread, which run_as holds until the child ends.)"""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no libc to load, or no prctl in it
        return
    if os.getppid() != parent:
        os._exit(1)


def _raised(exc: BaseException) -> tuple[Any, ...]:
    """What the parent is told of an exception: plain values only."""
    number = exc.errno if isinstance(exc, OSError) and isinstance(exc.errno, int) else None
    transient = bool(getattr(exc, "transient", False)) if isinstance(exc, DmpError) else False
    fatal = bool(getattr(exc, "fatal", False)) if isinstance(exc, DmpError) else False
    return ("raised", type(exc).__name__, _line(exc), number, transient, fatal)


def _send(write_end: int, message: tuple[Any, ...]) -> None:
    """Pickle ``message`` and write all of it; a result that cannot be pickled is sent
    as the error it is."""
    try:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # whatever pickling raises, say so
        reason = f"the batch's result cannot be sent back: {_line(exc)}"
        data = pickle.dumps(("raised", type(exc).__name__, reason, None, False, False))
    with open(write_end, "wb") as pipe:
        pipe.write(data)


def _outcome(uid: int, data: bytes, status: int) -> Any:
    """The result the child sent, or the error that says why there is none."""
    try:
        message = _Plain(io.BytesIO(data)).load() if data else None
    except _NotPlain as exc:
        raise BatchFailed(
            f"the batch as uid {uid} returned {exc}", type_name="UnpicklingError"
        ) from None
    except Exception:  # a truncated result: the child died writing it
        message = None
    if not isinstance(message, tuple) or len(message) not in (2, 6):
        raise BatchDied(f"the batch's process as uid {uid} died: {_how_it_ended(status)}")
    if message[0] == "ok" and len(message) == 2:
        return message[1]
    if message[0] == "refused" and len(message) == 2:
        raise UserSwitchRefused(str(message[1]))
    _, type_name, text, number, transient, fatal = message + (None,) * (6 - len(message))
    raise BatchFailed(
        f"the batch as uid {uid} failed: {type_name}: {text}",
        type_name=type_name,
        errno=number,
        transient=transient,
        fatal=fatal,
    )


def _how_it_ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        return f"killed by {name}"
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)} and no result"
    return f"ended with wait status {status} and no result"


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _flush(stream: Any) -> None:
    try:
        stream.flush()
    except (AttributeError, OSError, ValueError):
        pass


def _line(exc: BaseException) -> str:
    """The exception's message on one line."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# The classes a result may hold besides built-in types. The parent reads the pickle as root
# and the child wrote it as the user: a class named there is called, so only value types.
_PLAIN = {
    "builtins": {"complex", "set", "frozenset", "bytearray", "slice", "range"},
    "collections": {"OrderedDict", "Counter", "deque"},
    "datetime": {"date", "time", "datetime", "timedelta", "timezone"},
    "decimal": {"Decimal"},
    "fractions": {"Fraction"},
    "pathlib": {"PurePath", "PurePosixPath", "PosixPath", "Path"},
    "pathlib._local": {"PurePath", "PurePosixPath", "PosixPath", "Path"},  # Python 3.13's
    "uuid": {"UUID"},
}
_OURS = ("dmp_cli", "dmp_tasks")


class _NotPlain(pickle.UnpicklingError):
    """A result names a class the parent will not build."""


class _Plain(pickle.Unpickler):
    """An unpickler that builds only plain data: the types above, and dmp's own
    dataclasses, named tuples and enums."""

    def find_class(self, module: str, name: str) -> Any:
        ours = module.partition(".")[0] in _OURS and "." not in name
        if name in _PLAIN.get(module, ()) or ours:
            found = super().find_class(module, name)
            if not ours or _value_type(found):
                return found
        raise _NotPlain(f"a {module}.{name}, which is not plain data")


def _value_type(found: Any) -> bool:
    return isinstance(found, type) and (
        dataclasses.is_dataclass(found) or issubclass(found, (tuple, enum.Enum))
    )
