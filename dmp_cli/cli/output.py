"""Everything dmp prints goes through ``Output``: results on stdout, JSON Lines,
messages on stderr, each in the run log too (``dmp_cli.cli.log``), and progress bars
(``dmp_cli.cli.progress``); and ``Pace``, the end of every summary."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

from dmp_cli.cli.log import RunLog
from dmp_cli.cli.progress import NO_PROGRESS, Bar, Progress
from dmp_cli.errors import UsageError
from dmp_cli.quoting import quote_name
from dmp_cli.stdio import ResultsStream, buffered_stdout, stderr_bytes
from dmp_cli.words import pace, per_second

PROG = "dmp"


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8, read as lone surrogates
        return False
    return True


def _text(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else os.fsencode(value)


def _command_line(argv: list[str]) -> str:
    import shlex

    return shlex.join(argv) if argv else PROG


def state_fields(row: Any) -> dict[str, Any]:
    """What ``--vault --json`` says of a present object's storage class and restore, from
    its row's ``state`` (``dmp_cli.transfer.head_op``): ``storage_class`` (None in a
    store without classes), ``restore`` ("ongoing", "restored", "unknown" or None) and,
    for a restored copy, ``restore_expiry``. Nothing if the row tells no state."""
    state = row.get("state")
    if not isinstance(state, list) or len(state) != 3:
        return {}
    storage_class, restore, expiry = state
    fields = {"storage_class": storage_class, "restore": restore}
    if restore == "restored" and expiry:
        fields["restore_expiry"] = expiry
    return fields


@dataclass(frozen=True)
class Pace:
    """How long a run took, and its files and bytes (None: it read or moved none):
    the end of every summary line, and fields of the JSON summary."""

    seconds: float
    files: int
    nbytes: int | None = None

    @classmethod
    def since(cls, started: float, files: int, nbytes: int | None = None) -> Pace:
        """From ``started``, a ``time.monotonic()`` reading, to now."""
        return cls(time.monotonic() - started, files, nbytes)

    def text(self) -> str:
        """``in 2.1 s (1.5 GiB/s, 8,349 files/s)``."""
        return pace(self.seconds, self.files, self.nbytes)

    def fields(self) -> dict[str, float]:
        fields = {
            "seconds": round(self.seconds, 3),
            "files_per_second": round(per_second(self.files, self.seconds), 1),
        }
        if self.nbytes is not None:
            fields["bytes_per_second"] = int(per_second(self.nbytes, self.seconds))
        return fields


class Output:
    """Where results and messages go: stdout for results, stderr for messages and bars."""

    def __init__(
        self,
        json_mode: bool = False,
        quiet: bool = False,
        verbose: int = 0,
        stdout: BinaryIO | None = None,
        stderr: BinaryIO | None = None,
    ) -> None:
        self.json = json_mode
        self.quiet = quiet
        self.verbose = verbose
        self.stdout: BinaryIO = cast(BinaryIO, ResultsStream(stdout or buffered_stdout()))
        self.stderr = stderr or stderr_bytes()
        # On a terminal each line shows as it is made; into a pipe or file, output goes
        # in blocks (a write per line costs more than the hashing of a small file).
        self._tty = self.stdout.isatty()
        self.log: RunLog | None = None
        self.command: list[str] = []  # the command line, for the log's first line

    # the log -------------------------------------------------------------
    def open_log(self, path: str, origin: str = "") -> None:
        """--log-file: from now on every line, shown or not, goes to ``path`` too; a
        path that cannot be opened for appending is a usage error, before any work."""
        if self.log is not None:
            if self.log.path == path:
                return
            self.log.close(discard=True)  # DMP_LOG_FILE, and --log-file after the command
            self.log = None
        try:
            self.log = RunLog(path, self._errors_of_log)
        except OSError as exc:
            name = quote_name(path).decode("utf-8", "surrogateescape")
            raise UsageError(
                f"cannot open the log file {name}{origin}: {exc.strerror or exc}"
            ) from None
        self.log.lines(f"{PROG}: started {_command_line(self.command)}".encode())

    def close_log(self, last: str) -> None:
        """End the log with ``last``, a line saying how the run ended."""
        log, self.log = self.log, None
        if log is not None:
            log.lines(last.encode())
            log.close()

    def _errors_of_log(self, path: str, exc: OSError) -> None:
        name = quote_name(path).decode("utf-8", "surrogateescape")
        self._message(f"cannot write the log file {name}: {exc.strerror or exc}; logging stopped")

    # results -------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Results on stdout, and in the log."""
        self.stdout.write(data)
        if self._tty:
            self.stdout.flush()
        if self.log is not None:
            self.log.lines(data)

    def result(self, line: bytes, show: bool = True) -> None:
        """One file's line: on stdout unless hidden (-q, --status) or in --json mode
        (where records go instead); in the log whatever hides it."""
        if show and not self.json:  # self.write, inline: this runs once a file
            self.stdout.write(line)
            if self._tty:
                self.stdout.flush()
            if self.log is not None:
                self.log.lines(line)
        elif self.log is not None:
            self.log.lines(line)

    def record(self, kind: str, **fields: Any) -> None:
        """One JSON Lines object on stdout (only in --json mode).

        A path that is not UTF-8 is written as Python reads it back (``\\udcff`` for the
        byte 0xff), which other JSON readers turn into U+FFFD; ``path_b64`` beside it
        then holds its bytes, base64-encoded, so that no reader loses the name.
        """
        if self.json:
            obj = {"type": kind, **fields}
            path = fields.get("path")
            if isinstance(path, str) and not path.isascii() and not _is_utf8(path):
                obj["path_b64"] = base64.b64encode(os.fsencode(path)).decode()
            self.stdout.write(json.dumps(obj, ensure_ascii=True).encode() + b"\n")

    def flush(self) -> None:
        self.stdout.flush()
        self.stderr.flush()

    # messages ------------------------------------------------------------
    def _message(self, *parts: str | bytes, show: bool = True) -> None:
        line = PROG.encode() + b": " + b"".join(_text(p) for p in parts)
        if show:
            self.stdout.flush()
            self.stderr.write(line + b"\n")
            self.stderr.flush()
        if self.log is not None:
            self.log.lines(line, flush=True)

    def error(self, *parts: str | bytes, show: bool = True) -> None:
        self._message(*parts, show=show)

    def file_error(self, path: str, reason: str, show: bool = True) -> None:
        """``dmp: NAME: reason``, the name quoted as coreutils quotes it."""
        self._message(quote_name(path), ": ", reason, show=show)

    def warning(self, *parts: str | bytes, show: bool = True) -> None:
        """``dmp: WARNING: ...``; in the log also when not shown (--status)."""
        self._message("WARNING: ", *parts, show=show)

    def info(self, *parts: str | bytes, show: bool = True) -> None:
        """A message for people, which -q (or ``show``) keeps from the terminal, not
        from the log."""
        self._message(*parts, show=show and not self.quiet)

    # progress ------------------------------------------------------------
    def wants_progress(self) -> bool:
        return not self.quiet and self.stderr.isatty()

    @contextmanager
    def progress(
        self,
        description: str,
        total: int | None = None,
        unit: str = " files",
        initial: tuple[int, int] = (0, 0),
        bytes_total: int | None = None,
    ) -> Iterator[Progress]:
        bar = Bar(description, total, unit, initial, bytes_total) if self.wants_progress() else None
        try:
            yield bar or NO_PROGRESS
        finally:
            if bar is not None:
                bar.close()
