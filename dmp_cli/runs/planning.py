"""How --vault and --archive learn what the vault holds: a HEAD per distinct checksum, or
a listing of the vault's keys, whichever needs fewer requests.

The manifest is read once ahead of the run for its distinct checksums (``Checksums``:
in memory while they are few, else spilled to disk by first-level prefix). The vault's
size is estimated from a sample, and the way chosen with how finely to list: the whole
vault, its 16 or its 256 prefixes (``dmp_cli.runs.listing_choice``). Each prefix that
holds a checksum of the manifest is listed as one item of executor work
(``dmp_cli.listing``); the checksums seen go to ``Answers`` (a dict, or sqlite).

Planning --vault by listing, the listings tell each present object's storage class and
restore too (``Answers.states``), which --vault's rows carry as a HEAD's would.

The answers are used in one direction only: a checksum a listing saw is present; one it
did not see is reported missing by --vault, and offered by --archive to a put-if-absent
upload, never overwritten on the listing's word. A prefix that cannot be listed is asked
about by HEAD.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast

from dmp_cli.errors import RunStopped, StoreError
from dmp_cli.executor import Executor, LocalExecutor
from dmp_cli.listing import ANSWER, DIGEST_BYTES, OP_NAME, listing_item
from dmp_cli.manifest import open_manifest, parse_lines
from dmp_cli.options import Options, StoreSpec, Work
from dmp_cli.retry import with_retries
from dmp_cli.rows import Item, Row
from dmp_cli.rules import Command
from dmp_cli.runs.listing_choice import (
    LEAST_LIST,
    Choice,
    choose,
    covered,
    estimate,
    forced,
    keys_enough,
)

# Beyond this many distinct checksums, they and the answers go to disk (about 100 bytes
# of memory each otherwise): 10^7 checksums take a few MB of memory, not gigabytes. An
# item of work sent to the fleet carries at most this many checksums too.
SPILL_DISTINCT = 250_000


class Checksums:
    """The distinct checksums of a manifest, by first byte: a set in memory until there
    are more than ``spill_at``, then files on disk, one per prefix, sorted at the end."""

    def __init__(self, spill_at: int = SPILL_DISTINCT) -> None:
        self.spill_at = spill_at
        self._memory: set[bytes] | None = set()
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._files: dict[int, BinaryIO] = {}
        self._blocks: dict[str, bytes] = {}  # in memory, once finished
        self.counts: dict[str, int] = {}  # by prefix, once finished
        self.distinct = 0

    @property
    def spilled(self) -> str | None:
        return self._dir.name if self._dir is not None else None

    def add(self, digest: str) -> None:
        raw = bytes.fromhex(digest)
        if self._memory is not None:
            self._memory.add(raw)
            if len(self._memory) > self.spill_at:
                self._spill()
        else:
            self._file(raw[0]).write(raw)

    def _spill(self) -> None:
        assert self._memory is not None
        self._dir = tempfile.TemporaryDirectory(prefix="dmp-plan-")
        memory, self._memory = self._memory, None
        for raw in memory:
            self._file(raw[0]).write(raw)

    def _file(self, first: int) -> BinaryIO:
        stream = self._files.get(first)
        if stream is None:
            stream = self._files[first] = open(self.path(f"{first:02x}"), "ab")  # noqa: SIM115
        return stream

    def path(self, prefix: str) -> str:
        assert self._dir is not None
        return os.path.join(self._dir.name, prefix)

    def finish(self) -> None:
        """Count the distinct checksums by prefix, each prefix's sorted: in memory, as
        one block each; on disk, each file rewritten sorted, duplicates gone."""
        if self._memory is not None:
            groups: dict[str, list[bytes]] = {}
            for raw in self._memory:
                groups.setdefault(f"{raw[0]:02x}", []).append(raw)
            self._memory = set()
            for prefix, records in groups.items():
                self._blocks[prefix] = b"".join(sorted(records))
                self.counts[prefix] = len(records)
        else:
            for first, stream in self._files.items():
                stream.close()
                path = self.path(f"{first:02x}")
                with open(path, "rb") as source:
                    block = source.read()
                size = DIGEST_BYTES
                records = sorted({block[i : i + size] for i in range(0, len(block), size)})
                with open(path, "wb") as out:
                    out.write(b"".join(records))
                self.counts[f"{first:02x}"] = len(records)
            self._files.clear()
        self.distinct = sum(self.counts.values())

    def block(self, prefix: str) -> bytes:
        """A prefix's checksums, sorted, 32 bytes each."""
        if self._dir is None:
            return self._blocks.get(prefix, b"")
        with open(self.path(prefix), "rb") as stream:
            return stream.read()

    def close(self) -> None:
        for stream in self._files.values():
            stream.close()
        self._files.clear()
        self._memory = None
        self._blocks.clear()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


class Answers:
    """The checksums a listing saw, with their objects' sizes: a dict, or an sqlite table
    in ``directory`` (many answers). With their states, if the listings told them: the
    first one heard is the ``plain`` state, and only the objects in another are kept."""

    def __init__(self, directory: str | None = None) -> None:
        self._dict: dict[bytes, int] | None = None if directory else {}
        self._states: dict[bytes, str] = {}
        self._db: sqlite3.Connection | None = None
        if directory:
            self._db = sqlite3.connect(os.path.join(directory, "answers.sqlite"))
            self._db.execute("PRAGMA journal_mode=OFF")
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.execute(
                "CREATE TABLE seen (digest BLOB PRIMARY KEY, size INTEGER) WITHOUT ROWID"
            )
            self._db.execute(
                "CREATE TABLE states (digest BLOB PRIMARY KEY, state TEXT) WITHOUT ROWID"
            )
        self.count = 0
        self.plain: str | None = None  # as JSON: [storage class, restore, expiry]

    def add_states(self, states: Iterable[tuple[bytes, str]], plain: str | None) -> None:
        """States heard from a listing: ``plain`` (as JSON) for its objects not in
        ``states``, which gives the others' (each checksum's raw bytes, its state)."""
        if plain is not None and self.plain is None:
            self.plain = plain
        kept = ((raw, state) for raw, state in states if state != self.plain)
        if self._db is not None:
            self._db.executemany("INSERT OR IGNORE INTO states VALUES (?, ?)", kept)
        else:
            self._states.update(kept)

    def state(self, raw: bytes) -> list[Any] | None:
        """The state of a checksum's object the listings saw; None if they told none."""
        if self.plain is None:
            return None
        if self._db is not None:
            found = self._db.execute("SELECT state FROM states WHERE digest = ?", (raw,))
            row = found.fetchone()
            text = self.plain if row is None else str(row[0])
        else:
            text = self._states.get(raw, self.plain)
        state: list[Any] = json.loads(text)
        return state

    def add(self, pairs: Iterable[tuple[bytes, int]]) -> None:
        if self._dict is not None:
            before = len(self._dict)
            self._dict.update(pairs)
            self.count += len(self._dict) - before
        else:
            assert self._db is not None
            cursor = self._db.executemany("INSERT OR IGNORE INTO seen VALUES (?, ?)", pairs)
            self.count += max(0, cursor.rowcount)

    def get(self, raw: bytes) -> int | None:
        if self._dict is not None:
            return self._dict.get(raw)
        assert self._db is not None
        found = self._db.execute("SELECT size FROM seen WHERE digest = ?", (raw,)).fetchone()
        return None if found is None else int(found[0])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


@dataclass
class Plan:
    """A run's plan: the way chosen, and for a listing its answers and the prefixes whose
    listing failed (their checksums asked about one by one)."""

    way: str
    why: str
    command: Command = Command.VAULT
    answers: Answers | None = None
    failed: set[str] = field(default_factory=set)
    checksums: Checksums | None = None

    def annotate(self, items: Iterable[Item]) -> Iterator[Item]:
        """The items, each one whose checksum a listing answered marked ``listed``."""
        answers = self.answers
        if answers is None:
            yield from items
            return
        absent = -1 if self.command is Command.VAULT else None
        for item in items:
            digest = item.get("digest")
            if digest and not item.get("same") and digest[:2] not in self.failed:
                raw = bytes.fromhex(digest)
                size = answers.get(raw)
                if size is not None:
                    item["listed"] = size
                    state = answers.state(raw) if absent is not None else None
                    if state is not None:  # as a HEAD would have told it
                        cast(dict[str, Any], item)["listed_state"] = state
                elif absent is not None:
                    item["listed"] = absent
            yield item

    def close(self) -> None:
        if self.answers is not None:
            self.answers.close()
        if self.checksums is not None:
            self.checksums.close()


def per_entry_words(command: Command, options: Options) -> str:
    """What a run asks of the vault per distinct checksum without a plan."""
    if command is Command.ARCHIVE and options.dest_mode is None and not options.dry_run:
        return "conditional PUT requests"
    return "HEAD requests"


def plan(
    command: Command,
    manifest: str,
    executor: Executor,
    spec: StoreSpec,
    options: Options,
    mode: str,
    on_note: Callable[[str], None],
    shown: str | None = None,
) -> Plan:
    """Choose the way for this run (``mode``: auto, head or list), and list if listing;
    ``on_note`` hears which way and why; ``shown`` names the manifest in errors."""
    per_entry = per_entry_words(command, options)
    if mode == "head":
        return _head(
            "planning by HEAD: a request per distinct checksum (DMP_VAULT_PLANNING=head)", on_note
        )
    if manifest == "-":
        return _head("planning by HEAD: a manifest on standard input is read once", on_note)
    if options.all:
        return _head("planning by HEAD: --all uploads what the vault holds too", on_note)
    checksums = Checksums(SPILL_DISTINCT)
    try:
        with open_manifest(manifest, shown) as stream:
            for line in parse_lines(stream):
                if line.entry is not None:
                    checksums.add(line.entry.digest)
        checksums.finish()
        distinct, counts = checksums.distinct, checksums.counts
        if distinct == 0:
            checksums.close()
            return Plan("head", "")
        vault = executor.stores.vault(spec)
        # A fleet's item carries its checksums; one of this process may read them on disk.
        most = None if isinstance(executor, LocalExecutor) else SPILL_DISTINCT
        if mode == "list":
            try:
                size = with_retries(lambda: estimate(vault))
            except StoreError as exc:
                if exc.fatal:
                    raise
                choice = forced(distinct, counts, None, per_entry, unknown=str(exc))
            else:
                choice = forced(distinct, counts, size, per_entry, most)
        elif distinct <= LEAST_LIST:
            choice = choose(distinct, counts, None, per_entry)
        else:
            try:
                size = with_retries(
                    lambda: estimate(vault, lambda: keys_enough(counts, distinct, most))
                )
            except StoreError as exc:
                if exc.fatal:
                    raise
                checksums.close()
                return _head(f"planning by HEAD: the vault could not be listed ({exc})", on_note)
            choice = choose(distinct, counts, size, per_entry, most)
        on_note(choice.why)
        if choice.way == "head" or choice.split is None:
            checksums.close()
            return Plan("head", choice.why)
        return _listed(command, checksums, executor, spec, options, choice, on_note)
    except BaseException:
        checksums.close()
        raise


def _head(why: str, on_note: Callable[[str], None]) -> Plan:
    on_note(why)
    return Plan("head", why)


def _listed(
    command: Command,
    checksums: Checksums,
    executor: Executor,
    spec: StoreSpec,
    options: Options,
    choice: Choice,
    on_note: Callable[[str], None],
) -> Plan:
    assert choice.split is not None
    prefixes, spilled = choice.split.prefixes, checksums.spilled
    answers = Answers(spilled)
    result = Plan("list", choice.why, command, answers, checksums=checksums)
    # Files beside the run are read by an operation in this process only (a block at a
    # time); the fleet's workers are given the checksums themselves.
    local = spilled is not None and isinstance(executor, LocalExecutor)

    # --vault says each object's storage class and restore: the listing tells them.
    states = command is Command.VAULT

    def items() -> Iterator[Item]:
        for prefix in prefixes:
            if local:
                yield listing_item(prefix, spill=spilled, states=states)
            else:
                blocks = covered(prefix, checksums.counts)
                want = b"".join(map(checksums.block, blocks))
                yield listing_item(prefix, want=want, states=states)

    try:
        _gather(result, executor.map(Work.of(OP_NAME, spec, options), items()), on_note)
    except BaseException:
        answers.close()
        raise
    return result


def _gather(result: Plan, rows: Iterable[Row], on_note: Callable[[str], None]) -> None:
    """The listings' rows into the plan: the answers, and the prefixes that failed."""
    answers, checksums = result.answers, result.checksums
    assert answers is not None and checksums is not None
    for row in rows:
        got: dict[str, Any] = dict(row)
        if got.get("fatal"):
            raise RunStopped(str(got.get("error")))
        if got["status"] != "ok":
            prefix = str(got.get("path", ""))
            blocks = covered(prefix, checksums.counts)
            result.failed.update(blocks)
            on_note(
                f"listing {prefix or 'the vault'} failed ({got.get('error')}): its "
                f"{sum(checksums.counts[b] for b in blocks):,} checksums are asked about "
                "one by one"
            )
        elif "found_file" in got:
            others = _read_states(got["states_file"]) if "states_file" in got else None
            plain = _json(got.get("plain"))
            for chunk in _read_answers(got["found_file"]):
                answers.add(chunk)
                if others is not None and plain is not None:
                    answers.add_states(_merged((raw for raw, _ in chunk), others, plain), plain)
        else:
            raw = bytes.fromhex(got.get("found") or "")
            sizes = got.get("sizes") or []
            answers.add(
                (raw[i * DIGEST_BYTES : (i + 1) * DIGEST_BYTES], size)
                for i, size in enumerate(sizes)
            )
            plain = _json(got.get("plain"))
            if plain is not None:  # a listing asked for its objects' states, and found some
                states = got.get("states") or []
                answers.add_states(
                    (
                        (raw[i * DIGEST_BYTES : (i + 1) * DIGEST_BYTES], _json(state) or plain)
                        for i, state in enumerate(states)
                    ),
                    plain,
                )


def _json(state: Any) -> str | None:
    return None if state is None else json.dumps(state)


def _merged(
    found: Iterable[bytes], others: PeekIterator, plain: str
) -> Iterator[tuple[bytes, str]]:
    """Each checksum found with its state: the one ``others`` gives it (a listing's
    objects not in its plain state, in the order found), else ``plain``."""
    for raw in found:
        other = others.peek()
        if other is not None and other[0] == raw:
            yield next(others)
        else:
            yield raw, plain


class PeekIterator(Iterator[tuple[bytes, str]]):
    """An iterator whose next value can be looked at first (None at its end)."""

    def __init__(self, values: Iterator[tuple[bytes, str]]) -> None:
        self._values = values
        self._next: tuple[bytes, str] | None = next(values, None)

    def peek(self) -> tuple[bytes, str] | None:
        return self._next

    def __next__(self) -> tuple[bytes, str]:
        if self._next is None:
            raise StopIteration
        value, self._next = self._next, next(self._values, None)
        return value


def _read_states(path: str) -> PeekIterator:
    """The states ``dmp_cli.listing`` wrote beside a prefix's answers, in the order
    found; the file removed once read."""

    def lines() -> Iterator[tuple[bytes, str]]:
        with open(path, encoding="utf-8") as stream:
            for line in stream:
                digest, _, state = line.rstrip("\n").partition(" ")
                yield bytes.fromhex(digest), state
        os.unlink(path)

    return PeekIterator(lines())


def _read_answers(path: str) -> Iterator[list[tuple[bytes, int]]]:
    """The answers a listing wrote, a chunk at a time; the file removed once read."""
    with open(path, "rb") as stream:
        while chunk := stream.read(ANSWER.size * 4096):
            yield list(ANSWER.iter_unpack(chunk))
    os.unlink(path)
