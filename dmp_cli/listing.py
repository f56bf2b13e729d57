"""The vault's listing operation: one first-level prefix of the vault (``ab/``) listed,
matched against the manifest's checksums under it, the present ones returned.

Like every operation it takes an item and returns a row, so it runs in the embedded
executor's threads and as a task on the fleet's workers. The item names the prefix and
its checksums: inline (``want``, their hex, sorted), or, where the run and the
operation share a filesystem and the checksums are many, the file they were spilled to
(``spill``: their 32 raw bytes each, sorted), beside which the answers are written too.
Either way the prefix's checksums are held as one sorted block, 32 bytes a checksum,
and each key listed is looked up in it by bisection: a prefix of 40,000 checksums costs
1.3 MB, not a set of Python objects ten times that.

A listing that fails partway raises: the batch runner lists the prefix again, from its
start, after the pauses of a transient failure (``dmp_cli.ops.run_batch``), so what a row
says present was seen by one whole listing.
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from typing import Any, cast

from dmp_cli.ops import Context, Operation
from dmp_cli.rows import Item, Row, base_row

DIGEST_BYTES = 32
# An answer in a spilled file: a checksum's 32 bytes and its object's size.
ANSWER = struct.Struct(">32sQ")
OP_NAME = "vault-list"


class Sorted:
    """Checksums as one sorted block of 32-byte records, searched by bisection."""

    def __init__(self, block: bytes) -> None:
        if len(block) % DIGEST_BYTES:
            raise ValueError("a block of checksums is a whole number of 32-byte records")
        self.block = block
        self._n = len(block) // DIGEST_BYTES

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int) -> bytes:
        start = index * DIGEST_BYTES
        return self.block[start : start + DIGEST_BYTES]

    def __contains__(self, raw: object) -> bool:
        i = bisect_left(self, raw)  # type: ignore[call-overload]
        return i < self._n and self[i] == raw


def listing_item(prefix: str, want: bytes | None = None, spill: str | None = None) -> Item:
    """The item of one prefix (``ab``): its checksums inline, or the file they are in."""
    fields: dict[str, Any] = {"path": f"{prefix}/"}
    if spill is not None:
        fields["spill"] = spill
    else:
        fields["want"] = (want or b"").hex()
    return cast(Item, fields)


def _wanted(item: dict[str, Any]) -> Sorted:
    if "spill" in item:
        with open(item["spill"], "rb") as stream:
            return Sorted(stream.read())
    return Sorted(bytes.fromhex(item.get("want") or ""))


def vault_list_op(item: Item, ctx: Context) -> Row:
    fields = cast(dict[str, Any], item)
    prefix = item["path"]
    want = _wanted(fields)
    found: dict[bytes, int] = {}
    keys = 0
    for digest, size in ctx.vault().listing(prefix):
        keys += 1
        raw = bytes.fromhex(digest)
        if raw in want:
            found[raw] = size
    row: dict[str, Any] = {**base_row(item), "status": "ok", "bytes": 0, "keys": keys}
    if "spill" in fields:  # the answers beside the checksums, read by the run
        answers = fields["spill"] + ".found"
        with open(answers, "wb") as stream:
            stream.write(b"".join(ANSWER.pack(raw, size) for raw, size in found.items()))
        row["found_file"] = answers
    else:
        row["found"] = b"".join(found).hex()
        row["sizes"] = list(found.values())
    return cast(Row, row)


def _prefix_url(item: Item, ctx: Context) -> str:
    return ctx.vault().store.key_url(item["path"])


LIST = Operation(OP_NAME, vault_list_op, "io", where=_prefix_url)

__all__ = ["ANSWER", "LIST", "OP_NAME", "Sorted", "listing_item", "vault_list_op"]
