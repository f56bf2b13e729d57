"""A vault, archive or fetch run's entries: manifest lines in, per-file items out
(``EntryReader``), rows counted (``Tally``), copies of a failed file tried again.

Nothing here talks to a store: the operations in ``dmp_cli.transfer`` do, under an
executor. Each distinct checksum is asked about (and uploaded) once: later entries with
the same content become ``same`` items, answered from the first one's row. The checksums
met, and the first rows' outcomes, are kept in memory while they are few, then on disk
(``dmp_cli.runs.seen``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from dmp_cli.manifest import Line
from dmp_cli.rows import Item, Row
from dmp_cli.rules import RULES, Command
from dmp_cli.runs.seen import Seen

# The statuses of a file that was not archived or fetched (asking the vault, the caller
# takes "missing" for an answer: see dmp_cli.rules).
FAILED = RULES[Command.ARCHIVE].fails
# The outcome taken for a copy whose first row never came.
_UNKNOWN: tuple[str, str | None] = ("missing", None)


@dataclass
class EntryReader:
    """Reads a manifest's lines into one mode's items, counting its entries and its
    improperly formatted lines as it goes. The checksums met are forgotten (their table
    on disk removed) once the items are read, or their reading is stopped."""

    dedupe: bool = True
    with_size: bool = False
    entries: int = 0
    misformatted: int = 0
    _seen: Seen = field(default_factory=Seen)

    def items(self, lines: Iterable[Line]) -> Iterator[Item]:
        first = self._seen.first
        try:
            for line in lines:
                entry = line.entry
                if entry is None:
                    self.misformatted += 1
                    continue
                self.entries += 1
                item: Item = {"line": line.number, "path": entry.path, "digest": entry.digest}
                if self.dedupe and not first(bytes.fromhex(entry.digest)):
                    item["same"] = True
                elif self.with_size:
                    item["size"] = _size(entry.path)
                yield item
        finally:
            self._seen.close()


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0  # the upload reports why


@dataclass
class Tally:
    """What a vault, archive or fetch run did, by status; ``nbytes`` moved (or present).

    A ``same`` row (content the manifest named before) takes the first row's status: in
    --vault each file is reported; in --archive the content was moved once, so a copy of
    it is "skipped". If the first one failed (it changed, or cannot be read), the copy
    may still hold the content: ``needs_retry`` says so, and the caller tries it itself.
    The first rows' outcomes are kept in memory while they are few, then on disk, until
    ``close``.
    """

    archive: bool = False
    dedupe: bool = True
    counts: dict[str, int] = field(default_factory=dict)
    nbytes: int = 0
    distinct: int = 0
    _first: Seen = field(default_factory=Seen)

    def needs_retry(self, row: Row) -> bool:
        """An --archive copy of content whose first file failed: not counted yet."""
        if not (self.archive and row["status"] == "same"):
            return False
        status, _ = self._first.get(bytes.fromhex(row["digest"])) or _UNKNOWN
        return status in FAILED

    def add(self, row: Row) -> Row:
        """Count one row; returns it, a ``same`` row resolved."""
        if row["status"] == "same":
            status, error = self._first.get(bytes.fromhex(row["digest"])) or _UNKNOWN
            if self.archive and status not in FAILED:
                status = "skipped"
            row = {**row, "status": status, "error": error, "same": True}
        else:
            # Without dedupe no ``same`` row comes: each row is counted as distinct.
            if not self.dedupe or self._first.put(
                bytes.fromhex(row["digest"]), row["status"], row.get("error")
            ):
                self.distinct += 1
            self.nbytes += row.get("bytes") or 0
        self.counts[row["status"]] = self.counts.get(row["status"], 0) + 1
        return row

    def __getitem__(self, status: str) -> int:
        return self.counts.get(status, 0)

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.counts.items() if status in FAILED)

    def close(self) -> None:
        """Forget the first rows (their table on disk removed); the counts stay."""
        self._first.close()


def retry_items(rows: Iterable[Row], with_size: bool) -> Iterator[Item]:
    """Items for the copies whose first file failed: again the first of each checksum
    for real, the others ``same``."""
    seen: set[str] = set()
    for row in rows:
        item: Item = {"path": row["path"], "digest": row["digest"]}
        if "line" in row:
            item["line"] = row["line"]
        if row["digest"] in seen:
            item["same"] = True
        else:
            seen.add(row["digest"])
            if with_size:
                item["size"] = _size(row["path"])
        yield item
