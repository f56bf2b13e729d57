"""--check's items, one per manifest line, and the counts `sha256sum --check` keeps."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from dmp_cli.checking import check_item
from dmp_cli.rows import Item, Row, Status
from dmp_cli.rules import Command, judge


@dataclass
class CheckCounts:
    """What a check found; ``ok()`` is the exit status rule of coreutils."""

    properly_formatted: int = 0
    misformatted: int = 0
    unreadable: int = 0
    mismatched: int = 0
    matched: int = 0
    ignored: int = 0
    bytes: int = 0

    def add(self, row: Row, ignore_missing: bool = False) -> str:
        """Count one row; returns how it counts: ok, failed, unreadable, ignored, misformatted."""
        status = row["status"]
        if status == "ok":  # first: nearly every row
            self.properly_formatted += 1
            self.matched += 1
            self.bytes += row.get("bytes", 0)
            return "ok"
        if status == "misformatted":
            self.misformatted += 1
            return status
        self.properly_formatted += 1
        if status == "failed":
            self.mismatched += 1
            self.bytes += row.get("bytes", 0)
            return "failed"
        if status == "missing" and ignore_missing:
            self.ignored += 1
            return "ignored"
        self.unreadable += 1
        return "unreadable"

    def add_matched(self, files: int, nbytes: int) -> None:
        """Count ``files`` that matched, ``nbytes`` read, at once: ``add`` of their rows."""
        self.properly_formatted += files
        self.matched += files
        self.bytes += nbytes

    def statuses(self) -> dict[str, int]:
        """The counts by status, as ``dmp_cli.rules`` judges them (a missing file that
        was not ignored counts among the unreadable)."""
        return {
            Status.OK: self.matched,
            Status.FAILED: self.mismatched,
            Status.UNREADABLE: self.unreadable,
            Status.MISSING: self.ignored,
            Status.MISFORMATTED: self.misformatted,
        }

    def ok(self, strict: bool = False, ignore_missing: bool = False) -> bool:
        verdict = judge(
            Command.CHECK, self.statuses(), strict=strict, ignore_missing=ignore_missing
        )
        return verdict.status == 0


def check_items(
    entries: Iterable[tuple[int, str | None, str]],
    stdin_manifest: bool = False,
    read_stdin: Callable[[Item], None] | None = None,
) -> Iterator[Item]:
    """Items for the check operation, one per line of ``entries`` (as
    ``dmp_cli.manifest.parsed`` reads them), so that results keep the line order. With
    ``stdin_manifest``, a line naming '-' (stdin) is improperly formatted, as in sha256sum;
    else ``read_stdin``, if given, is handed the item of such a line as it comes."""
    for number, digest, path in entries:
        item = check_item(number, digest, path, stdin_manifest)
        if path == "-" and read_stdin is not None and "bad" not in item:
            read_stdin(item)
        yield item
