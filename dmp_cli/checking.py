"""--check's work in a hashing process: a batch of entries checked, and the rows it gives
(``check_batch``); and, for a manifest file checked embedded with the default output, a
piece of its lines read, checked and answered in one (``check_piece``), so that the
command's own process only reads the manifest and writes what comes back."""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator, Sequence
from typing import BinaryIO, Protocol, runtime_checkable

from dmp_cli.digest import small_digest
from dmp_cli.manifest import (
    DIGEST_HEX,
    FS_ENCODING,
    FS_ERRORS,
    LineParser,
    blocks,
    checked_name,
    parse_block,
)
from dmp_cli.ops import run_batch
from dmp_cli.options import Work
from dmp_cli.rows import Item, Row

# A check's batch of plain entries (a line, a path, a checksum: nearly every batch) goes
# to a hashing process as three lists, and what comes back for a file that matches is its
# size alone, its row made here from the entry: dicts pickled both ways, and the general
# path through the check operation, cost more CPU than hashing a small file. Anything
# else (a file that differs, cannot be read, or is too big to hash in one read) comes
# back as the row the check operation makes, byte for byte what the fleet's would be.
_PLAIN_ENTRY = frozenset({"line", "path", "digest"})


def plain_entries(batch: list[Item]) -> tuple[list[int], list[str], list[str]] | None:
    """A batch of plain entries as (lines, paths, checksums); None if any item is
    another kind (an improperly formatted line, an entry '-' read from stdin)."""
    for item in batch:
        if item.keys() != _PLAIN_ENTRY:
            return None
    return (
        [item["line"] for item in batch],
        [item["path"] for item in batch],
        [item["digest"] for item in batch],
    )


def check_entries(
    work: Work,
    lines: list[int],
    paths: list[str],
    digests: list[str],
    threads: bool = True,
    matched: Sequence[int] = (),
) -> list[int | Row]:
    """Check a batch of plain entries (``plain_entries``): for each, the size of its file if
    it matches, else its row from the check operation (``run_batch``: with ``threads``,
    big files side by side on threads). The first entries may be known to match
    already: ``matched`` holds their sizes."""
    results: list[int | Row] = list(matched)
    others: list[int] = []  # where the check operation must say
    done = len(results)
    for path, expected in zip(paths[done:], digests[done:], strict=True):
        try:
            found = small_digest(path)
        except Exception:  # the check operation says why, in its row
            found = None
        if found is not None and found[0] == expected:
            results.append(found[1])
        else:
            others.append(len(results))
            results.append(0)
    if others:
        items: list[Item] = [
            {"line": lines[i], "path": paths[i], "digest": digests[i]} for i in others
        ]
        for i, row in zip(others, run_batch(work, items, None, threads), strict=True):
            results[i] = row
    return results


def checked_rows(batch: list[Item], results: list[int | Row]) -> Iterator[Row]:
    """The rows of a batch of plain entries, from ``check_entries``' results: a size is
    a file that matched, and its row is the one the check operation makes."""
    for item, result in zip(batch, results, strict=True):
        if isinstance(result, int):
            digest = item["digest"]
            yield {
                "path": item["path"],
                "status": "ok",
                "digest": digest,
                "expected": digest,
                "bytes": result,
                "line": item["line"],
            }
        else:
            yield result


def check_item(number: int, digest: str | None, path: str, stdin_manifest: bool) -> Item:
    """The check operation's item for a manifest line (as ``dmp_cli.manifest.parsed``
    reads it): improperly formatted if it has no checksum, or, with ``stdin_manifest``
    (the manifest is stdin), if it names '-' (stdin), as in sha256sum."""
    if digest is None or (stdin_manifest and path == "-"):
        return {"line": number, "bad": True}
    return {"line": number, "path": path, "digest": digest}


def check_batch(
    work: Work, items: list[Item], threads: bool = True, matched: Sequence[int] = ()
) -> list[Row]:
    """The check operation's rows for a batch of items, in this process: compact
    (``check_entries``) if they are all plain entries."""
    entries = plain_entries(items)
    if entries is None:
        return run_batch(work, items, None, threads)
    return list(checked_rows(items, check_entries(work, *entries, threads, matched)))


# --check of a manifest file, embedded, with the default output: the hashing processes
# read the manifest themselves, a piece of lines at a time (cut by ``pieces``), and send
# back, where every file of a piece matched, how many and their bytes, with the lines
# sha256sum prints for them (``NAME: OK``), all in one. The CLI's process then only reads
# the manifest and writes those lines: a row a file made, counted and printed there cost
# more than its process could do beside two hashing processes. A piece with anything
# else in it comes back as its rows, as the general path makes them.
PIECE_BYTES = 32 << 10

# A piece of a manifest: its lines (as ``dmp_cli.manifest.pieces`` cuts them), the number
# of the line before them, and the parser's form at their start (``LineParser``).
Piece = tuple[bytes, int, "bool | None"]
# What a hashing process makes of a piece: (files, bytes, lines) if every file matched,
# else the rows of its lines; None if a line names '-': stdin, which only the run's own
# process can read.
PieceResult = tuple[int, int, bytes] | list[Row] | None

_OK = b": OK\n"
# A name's bytes are then its path's, encoded back (``checked_name``): the lines printed for
# the files of a piece can be made of the manifest's own bytes.
_NAMES_AS_READ = codecs.lookup(FS_ENCODING).name == "utf-8" and FS_ERRORS == "surrogateescape"


def check_piece(
    work: Work,
    lines: bytes,
    number: int,
    reversed_bsd: bool | None,
    stdin_manifest: bool,
    threads: bool = True,
) -> PieceResult:
    """Check the files a piece of a manifest names (``Piece``); see ``PieceResult``."""
    sizes: list[int] = []  # of the files that matched, from the first on
    common = common_lines(lines) if reversed_bsd is not True else None
    if common is not None:
        for line in common:
            path = line[67:-1].decode(FS_ENCODING, FS_ERRORS)
            try:
                found = small_digest(path)
            except Exception:  # the check operation says why, in its row
                break
            if found is None or found[0].encode() != line[:64]:
                break
            sizes.append(found[1])
        else:
            if _NAMES_AS_READ:
                names = [line[67:-1] for line in common]
            else:
                names = [
                    checked_name(line[67:-1].decode(FS_ENCODING, FS_ERRORS)) for line in common
                ]
            return len(sizes), sum(sizes), _OK.join(names) + _OK
    parser = LineParser(reversed_bsd)
    items = [check_item(*entry, stdin_manifest) for entry in parse_block(lines, parser, number)]
    if any(item.get("path") == "-" for item in items):
        return None
    return check_batch(work, items, threads, sizes)


@runtime_checkable
class PieceChecker(Protocol):
    """An executor that checks a manifest file a piece at a time (``check_piece``)."""

    def check_pieces(
        self, work: Work, pieces: Iterable[Piece], stdin_manifest: bool
    ) -> Iterator[tuple[Piece, PieceResult]]:
        """Each piece with what ``check_piece`` makes of it, in the pieces' order."""
        ...


def pieces(stream: BinaryIO, size: int) -> Iterator[bytes]:
    """The lines of ``blocks``, in pieces of about ``size`` bytes (a longer line whole),
    each cut where a line ends, in the same form as a block."""
    for block in blocks(stream):
        start = 0
        while (cut := block.find(b"\n", start + size)) >= 0:
            yield block[start:cut]
            start = cut + 1
        yield block[start:] if start else block


def common_lines(block: bytes) -> list[bytes] | None:
    """The lines of a block (as ``blocks`` cuts them) if each is, as far as can be told
    without its checksum, dmp's common line: 64 characters, two spaces and a name in
    double quotes, without escapes (``HEX  "NAME"``), its name at ``line[67:-1]``; else
    None. Whoever takes them must still check that ``line[:64]`` is in lowercase hex
    (comparing it with a checksum computed so does). This takes a few calls a line
    where ``parse_block`` takes many."""
    if b"\\" in block or b"\0" in block:
        return None
    lines = block.split(b"\n")
    if block.count(b'"') != 2 * len(lines):  # then none but those around each name
        return None
    for line in lines:
        if len(line) < DIGEST_HEX + 5 or line[DIGEST_HEX : DIGEST_HEX + 3] != b'  "':
            return None
        if line[-1] != 0x22:  # '"'
            return None
    return lines
