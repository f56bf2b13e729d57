"""What every run shares: the ``Listener`` that hears it as it goes, the ``Report`` it
returns, and names as its messages show them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dmp_cli.quoting import quote_name
from dmp_cli.rows import Row
from dmp_cli.rules import Command, Verdict


def _nothing(*_: object) -> None:
    pass


@dataclass
class Listener:
    """How a caller hears of a run as it goes; every callback is optional."""

    # A file's outcome (a --vault, --archive or --fetch row with its copies resolved;
    # for --check every line but those --ignore-missing skips; for --create the files
    # hashed). Called in manifest (or input) order.
    on_row: Callable[[Row], None] = _nothing
    # Each item done, with the bytes it read or moved: for a progress bar.
    on_progress: Callable[[int, int], None] = _nothing
    # Bytes as they move, from transfer threads, where the executor can tell.
    on_bytes: Callable[[int], None] | None = None
    # --create: an input that cannot be used (path, reason), and patterns that matched
    # nothing ("warning: ..."), said once the walk is over.
    on_problem: Callable[[str, str], None] = _nothing
    # --check with a companion: an entry whose metadata differs (path, differences);
    # --fetch with one: a link or directory that could not be restored goes to on_problem.
    on_meta: Callable[[str, list[str]], None] = _nothing
    # The whole run's work as now expected (items, and their bytes where every item's
    # size is known, else None), for a progress bar's totals: told once the input has
    # been read to its end, then again whenever that changes (a file already archived
    # moves none of its bytes). Items are counted as ``on_progress`` counts them.
    on_total: Callable[[int, int | None], None] | None = None


@dataclass
class Report:
    command: Command
    verdict: Verdict
    error: str | None = None  # why the run failed as a whole, in one line (no file named)

    @property
    def status(self) -> int:
        """The run's exit status: 0 success, 1 a failure."""
        return self.verdict.status


def shown_name(path: str) -> str:
    """A file name as messages show it: quoted as coreutils quotes it."""
    return quote_name(path).decode("utf-8", "surrogateescape")


def shown_manifest(path: str) -> str:
    # sha256sum calls its stdin "standard input" in messages (quoted: it has a space)
    return shown_name("standard input" if path == "-" else path)
