"""The vault's listing operation: a prefix of the vault listed (the whole vault ``""``,
``a`` or ``ab/``), matched against the manifest's checksums under it, the present ones
returned.

Like every operation it takes an item and returns a row, so it runs in the embedded
executor's threads and as a task on the fleet's workers. The item names the prefix and
its checksums: inline (``want``, their hex, sorted), or, where the run and the
operation share a filesystem and the checksums are many, the directory they were
spilled to by first-level prefix (``spill``: a file ``ab`` of their 32 raw bytes each,
sorted), where the answers are written too. Inline, the checksums are searched in the
item's own text; spilled, one first-level prefix's file is read at a time, as the
listing reaches its keys (a store lists in key order, so a prefix of 10^7 checksums
costs 1.3 MB at a time, whether the item covers one first-level prefix or all 256).
Each key listed is looked up by bisection.

Asked for them (``states``: --vault), the listing tells each present object's storage
class and restore too, in the same requests (``dmp_cli.store.Store.list_states``): the
state most of a prefix's objects share is said once (``plain``), the others beside their
checksums (inline, ``states``, a list beside ``sizes``; spilled, a file of lines).

A listing that fails partway raises: the batch runner lists the prefix again, from its
start, after the pauses of a transient failure (``dmp_cli.ops.run_batch``), so what a row
says present was seen by one whole listing.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any, BinaryIO, Generic, TextIO, TypeVar, cast

from dmp_cli.ops import Context, Operation
from dmp_cli.rows import Item, Row, base_row
from dmp_cli.store import ObjectState

DIGEST_BYTES = 32
# An answer in a spilled file: a checksum's 32 bytes and its object's size.
ANSWER = struct.Struct(">32sQ")
OP_NAME = "vault-list"

Block = TypeVar("Block", bytes, str)


class Sorted(Generic[Block]):
    """Checksums as one sorted block of fixed-width records (32 raw bytes, or 64 hex
    characters), searched by bisection."""

    def __init__(self, block: Block, width: int = DIGEST_BYTES) -> None:
        if len(block) % width:
            raise ValueError(f"a block of checksums is a whole number of {width}-wide records")
        self.block: Block = block
        self.width = width
        self._n = len(block) // width

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int) -> Block:
        start = index * self.width
        return self.block[start : start + self.width]

    def __contains__(self, record: object) -> bool:
        i = bisect_left(self, record)  # type: ignore[call-overload]
        return i < self._n and self[i] == record


class Spilled:
    """Spilled checksums, read a first-level prefix's file at a time, as asked."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._first = ""
        self._block: Sorted[bytes] = Sorted(b"")

    def __contains__(self, digest: object) -> bool:
        assert isinstance(digest, str)
        if digest[:2] != self._first:
            self._first = digest[:2]
            try:
                with open(os.path.join(self.directory, self._first), "rb") as stream:
                    self._block = Sorted(stream.read())
            except FileNotFoundError:  # no checksum of the manifest there
                self._block = Sorted(b"")
        return bytes.fromhex(digest) in self._block


def listing_item(
    prefix: str, want: bytes | None = None, spill: str | None = None, states: bool = False
) -> Item:
    """The item of one key prefix (``""``, ``a`` or ``ab/``): its checksums inline, sorted
    raw, or the directory they are spilled to; ``states``: with the objects' states."""
    fields: dict[str, Any] = {"path": prefix}
    if spill is not None:
        fields["spill"] = spill
    else:
        fields["want"] = (want or b"").hex()
    if states:
        fields["states"] = True
    return cast(Item, fields)


def answers_path(spill: str, prefix: str) -> str:
    """Where the listing of ``prefix`` writes its answers beside the spilled checksums."""
    return os.path.join(spill, (prefix.rstrip("/") or "all") + ".found")


def states_path(spill: str, prefix: str) -> str:
    """Where it writes the states of the objects whose state is not the prefix's plain
    one: a line each, the checksum's hex and the state as JSON."""
    return answers_path(spill, prefix) + ".states"


class States:
    """The states of the objects a listing found, in the order found: the first one
    seen is the ``plain`` one, said once; each other one is kept (in ``kept``, in step
    with the answers, None for the plain; or as a line in ``stream``)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.plain: list[str | None] | None = None
        self.kept: list[list[str | None] | None] = []
        self.stream = stream

    def add(self, digest: str, state: ObjectState) -> None:
        fields = state.fields()
        if self.plain is None:
            self.plain = fields
        other = fields if fields != self.plain else None
        if self.stream is None:
            self.kept.append(other)
        elif other is not None:
            self.stream.write(f"{digest} {json.dumps(other)}\n")


def vault_list_op(item: Item, ctx: Context) -> Row:
    fields = cast(dict[str, Any], item)
    prefix = item["path"]
    row: dict[str, Any] = {**base_row(item), "status": "ok", "bytes": 0}
    asked = bool(fields.get("states"))
    if "spill" in fields:  # the answers beside the checksums, read by the run
        answers = answers_path(fields["spill"], prefix)
        with contextlib.ExitStack() as files:
            stream = files.enter_context(open(answers, "wb"))
            states = None
            if asked:
                text = files.enter_context(open(states_path(fields["spill"], prefix), "w"))
                states = States(text)
                row["states_file"] = text.name
            row["keys"] = _match(ctx, prefix, Spilled(fields["spill"]), stream, states=states)
        row["found_file"] = answers
    else:
        found: list[str] = []
        sizes: list[int] = []
        want = Sorted(fields.get("want") or "", 2 * DIGEST_BYTES)
        states = States() if asked else None
        row["keys"] = _match(ctx, prefix, want, None, found, sizes, states)
        row["found"] = "".join(found)
        row["sizes"] = sizes
        if states is not None:
            row["states"] = states.kept
    if asked:
        row["plain"] = states.plain if states is not None else None
    return cast(Row, row)


def _match(
    ctx: Context,
    prefix: str,
    want: Sorted[str] | Spilled,
    stream: BinaryIO | None,
    found: list[str] | None = None,
    sizes: list[int] | None = None,
    states: States | None = None,
) -> int:
    """The keys under ``prefix`` listed, those ``want`` holds written to ``stream`` or
    put in ``found`` and ``sizes`` (and their states to ``states``, if given): the count
    of keys listed."""
    keys = 0
    vault = ctx.vault()
    listed: Iterator[tuple[str, int, ObjectState | None]] = (
        vault.listing_states(prefix)
        if states is not None
        else ((digest, size, None) for digest, size in vault.listing(prefix))
    )
    for digest, size, state in listed:
        keys += 1
        if digest in want:
            if stream is not None:
                stream.write(ANSWER.pack(bytes.fromhex(digest), size))
            else:
                assert found is not None and sizes is not None
                found.append(digest)
                sizes.append(size)
            if states is not None and state is not None:
                states.add(digest, state)
    return keys


def _prefix_url(item: Item, ctx: Context) -> str:
    return ctx.vault().store.key_url(item["path"])


LIST = Operation(OP_NAME, vault_list_op, "io", where=_prefix_url, per_thread=1)

__all__ = [
    "ANSWER",
    "LIST",
    "OP_NAME",
    "Sorted",
    "Spilled",
    "States",
    "answers_path",
    "listing_item",
    "states_path",
    "vault_list_op",
]
