"""Verifying files against a manifest, with the counts `sha256sum --check` keeps."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from dmp_cli.executor import Executor
from dmp_cli.manifest import Line, open_manifest, parse_lines
from dmp_cli.ops import Item, Row


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
        if status == "misformatted":
            self.misformatted += 1
            return status
        self.properly_formatted += 1
        if status == "ok":
            self.matched += 1
            self.bytes += row.get("bytes", 0)
            return "ok"
        if status == "failed":
            self.mismatched += 1
            self.bytes += row.get("bytes", 0)
            return "failed"
        if status == "missing" and ignore_missing:
            self.ignored += 1
            return "ignored"
        self.unreadable += 1
        return "unreadable"

    def ok(self, strict: bool = False, ignore_missing: bool = False) -> bool:
        return (
            self.properly_formatted > 0
            and self.mismatched == 0
            and self.unreadable == 0
            and not (strict and self.misformatted)
            and not (ignore_missing and self.matched == 0)
        )


def check_items(lines: Iterable[Line]) -> Iterator[Item]:
    """Items for the check operation, one per line, so that results keep the line order."""
    for line in lines:
        entry = line.entry
        if entry is None:
            yield {"line": line.number, "bad": True}
        else:
            yield {"line": line.number, "path": entry.path, "digest": entry.digest}


def check_lines(lines: Iterable[Line], executor: Executor) -> Iterator[Row]:
    """One row per manifest line (blank and comment lines aside), in manifest order."""
    return executor.map("check", check_items(lines), {})


def check_manifest(manifest: str, executor: Executor) -> Iterator[Row]:
    """Check every file a manifest names; the manifest is streamed, memory stays flat."""
    with open_manifest(manifest) as stream:
        yield from check_lines(parse_lines(stream), executor)
