"""Standard streams that were closed when dmp started (`<&-`, `>&-`, `2>&-`).

Python leaves ``sys.stdin`` (or ``sys.stdout``, ``sys.stderr``) None for a descriptor
that was closed, and the next file dmp opens would take its number: a manifest read as
if it were stdin, or results written into a file opened for something else. ``guard``
puts ``/dev/null`` there instead, opened the wrong way round (stdin for writing, stdout
and stderr for reading), so that the descriptor stays taken and every read or write of
it still fails with EBADF, as it did closed: dmp then says what sha256sum says
(`write error: Bad file descriptor`). ``stdin_closed`` is how a run asks whether it may
read stdin; one that asked of a closed stdin ends as sha256sum does, with
`standard input: Bad file descriptor`.
"""

from __future__ import annotations

import errno
import os
import sys

STDIN_CLOSED_MESSAGE = f"standard input: {os.strerror(errno.EBADF)}"

_wanted_closed_stdin = False


def _is_closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError as exc:
        return exc.errno == errno.EBADF
    return False


def guard() -> None:
    """Take each standard descriptor that is closed with a ``/dev/null`` that cannot be
    used in its direction (see the module's description)."""
    for fd, flags in ((0, os.O_WRONLY), (1, os.O_RDONLY), (2, os.O_RDONLY)):
        if not _is_closed(fd):
            continue
        null = os.open(os.devnull, flags)
        if null != fd:
            os.dup2(null, fd, inheritable=True)
            os.close(null)
        else:
            os.set_inheritable(fd, True)


def stdin_closed() -> bool:
    """Whether stdin was closed when dmp started; asked by a run about to read it, which
    makes the run end with sha256sum's `standard input: Bad file descriptor`."""
    global _wanted_closed_stdin
    if sys.stdin is None:
        _wanted_closed_stdin = True
        return True
    return False


def take_closed_stdin_wanted() -> bool:
    """Whether this run asked for a closed stdin (``stdin_closed``); asked once, at the end."""
    global _wanted_closed_stdin
    wanted, _wanted_closed_stdin = _wanted_closed_stdin, False
    return wanted
