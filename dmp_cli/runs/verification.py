"""--check: verify every file a manifest names, as `sha256sum --check` does (and, with a
companion, the metadata it records)."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import BinaryIO

from dmp_cli.checking import PIECE_BYTES, Piece, PieceChecker, check_batch, pieces
from dmp_cli.digest import digest_stream
from dmp_cli.errors import ManifestError
from dmp_cli.executor import Executor
from dmp_cli.manifest import LineParser, open_manifest, parse_block, parsed
from dmp_cli.options import Work
from dmp_cli.rows import Item, Row
from dmp_cli.rules import Command, judge
from dmp_cli.runs.check_counts import CheckCounts, check_items
from dmp_cli.runs.companion import compare, open_for
from dmp_cli.runs.report import Listener, Report, shown_manifest
from dmp_cli.runs.totals import expecting
from dmp_cli.stdio import stdin_closed


@dataclass
class CheckReport(Report):
    counts: CheckCounts = field(default_factory=CheckCounts)
    metadata: int | None = None  # with a companion: entries whose metadata differs


def check(
    manifest: str,
    executor: Executor,
    *,
    strict: bool = False,
    ignore_missing: bool = False,
    listener: Listener | None = None,
    stdin: bool = True,
    meta: str | None = None,
    on_matched: Callable[[bytes], None] | None = None,
) -> CheckReport:
    """Verify every file ``manifest`` names (``-`` is stdin) as `sha256sum --check` does:
    every line is checked, whatever fails before it. An entry named ``-`` in a manifest
    file is what is left of stdin, read when its line comes; without ``stdin`` (a detached
    job has none), such an entry cannot be read. With ``meta``, a companion file, the
    metadata it records is compared too, after the files (``Listener.on_meta``).

    ``on_matched``, if given, may hear of files that matched many at a time, instead of
    a row each through ``Listener.on_row``: it is handed the lines `sha256sum --check`
    prints for them (``NAME: OK``), in order among the rows (an executor that checks a
    manifest a piece at a time does this, where no listener wants progress totals)."""
    hear = listener or Listener()
    shown = shown_manifest(manifest)
    counts = CheckCounts()
    stream = open_manifest(manifest, shown)
    companion = open_for(meta, manifest, shown, stream)
    work = Work(Command.CHECK.operation)
    try:
        with stream:
            if on_matched and hear.on_total is None and isinstance(executor, PieceChecker):
                rows = _piece_rows(
                    executor, work, manifest, stream, stdin, counts, hear, on_matched
                )
                done = None
            else:
                items, done = expecting(hear, items_to_check(manifest, stream, stdin))
                rows = executor.map(work, items)
            for row in rows:
                if done:
                    done(row)
                hear.on_progress(1, row.get("bytes", 0))
                if counts.add(row, ignore_missing) != "ignored":
                    hear.on_row(row)
    except ManifestError as exc:  # the manifest could be opened but not read to the end
        reason = str(exc).rpartition(": ")[2]
        raise ManifestError(f"{shown}: {reason}") from None
    verdict = judge(Command.CHECK, counts.statuses(), strict=strict, ignore_missing=ignore_missing)
    differ = None
    if companion is not None:
        differ = compare(companion, hear)
        if differ:
            verdict = replace(verdict, status=1, failed=verdict.failed + differ)
    error = None
    if counts.properly_formatted == 0:
        error = f"{shown}: no properly formatted checksum lines found"
    elif ignore_missing and counts.matched == 0:
        error = f"{shown}: no file was verified"
    return CheckReport(Command.CHECK, verdict, error, counts, differ)


def items_to_check(manifest: str, stream: BinaryIO, stdin: bool) -> Iterator[Item]:
    entries = parsed(stream)
    if manifest == "-":
        return check_items(entries, stdin_manifest=True)
    return check_items(entries, read_stdin=partial(_read_stdin, stdin))


def _piece_rows(
    executor: PieceChecker,
    work: Work,
    manifest: str,
    stream: BinaryIO,
    stdin: bool,
    counts: CheckCounts,
    hear: Listener,
    on_matched: Callable[[bytes], None],
) -> Iterator[Row]:
    """The manifest checked a piece at a time (``PieceChecker``): the files of a piece
    that all matched are counted, and their lines handed to ``on_matched``, here; the
    rows of any other piece are yielded, for the caller to hear and count."""
    stdin_manifest = manifest == "-"
    for piece, result in executor.check_pieces(work, _pieces(stream), stdin_manifest):
        if isinstance(result, tuple):
            files, nbytes, lines = result
            if files:
                counts.add_matched(files, nbytes)
                hear.on_progress(files, nbytes)
                on_matched(lines)
        elif result is None:  # it names stdin, which only this process can read
            lines, number, reversed_bsd = piece
            entries = parse_block(lines, LineParser(reversed_bsd), number)
            items = check_items(entries, read_stdin=partial(_read_stdin, stdin))
            yield from check_batch(work, list(items))
        else:
            yield from result


def _pieces(stream: BinaryIO) -> Iterator[Piece]:
    """The manifest's lines in pieces, each with the number of the line before it and
    the parser's form at its start: read here, as far as a line settles it."""
    parser = LineParser()
    number = 0
    for lines in pieces(stream, PIECE_BYTES):
        reversed_bsd = parser.reversed_bsd
        yield lines, number, reversed_bsd
        if reversed_bsd is None:
            for _ in parse_block(lines, parser):
                if parser.reversed_bsd is not None:
                    break
        number += lines.count(b"\n") + 1


def _read_stdin(stdin: bool, item: Item) -> None:
    """An entry named '-' in a manifest file is stdin, as in sha256sum: hashed here, in
    order, since no other process (a pool's, a worker's) reads this one's stdin; the item
    carries the digest, or the error, to the check operation."""
    try:
        if not stdin or stdin_closed():  # none, or closed (`<&-`)
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        item["stdin"] = list(digest_stream(sys.stdin.buffer))
    except OSError as exc:
        item["stdin_error"] = [exc.errno or errno.EIO, exc.strerror or str(exc)]
