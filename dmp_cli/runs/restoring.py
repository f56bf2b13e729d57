"""--fetch from cold storage: the objects a fetch finds in a class that is read only once
restored (S3 Glacier Flexible Retrieval, Deep Archive, INTELLIGENT_TIERING's archive
tiers; tape behind an S3 endpoint), each restore requested once, then waited for or left
to a later run.

A fetch runs as ever first, at no extra request: files whose objects are readable are
fetched at once. A file whose object the store will not read yet comes back marked
``cold`` (``dmp_cli.transfer.download_op``), and its item is kept here, by object (a
plain object per checksum, or a pack for all its members). Then, once per object, its
state: as the fetch's own HEAD found it (a plain object's), or a HEAD of its own (a
pack's, whose refused GET does not tell): a restore under way, done (the files are
fetched now), or not asked for (or expired). One is requested for each object without
one, never for one already being restored. A refused restore fails that object's files,
a line each.

Attached and waiting, the run polls, with the pauses of DMP_RESTORE_POLL: each round HEADs
at most 1 % of the objects still waiting (at least one), in turn; once one is readable,
the waiting files are fetched, object by object in the order their restores were
requested (those just seen readable first, those just seen not readable left out), in
lots that double, until a read meets an object still cold: it waits again, and the round
ends once its lot is done. ``--no-wait``
requests the restores, fetches what is readable and ends; a later run fetches what has
been restored meanwhile and requests nothing already in progress.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from dmp_cli.errors import RunStopped, StoreError
from dmp_cli.layout import digest_key
from dmp_cli.manifest import open_manifest, parse_lines
from dmp_cli.packs.config import pack_key
from dmp_cli.retry import with_retries
from dmp_cli.rows import Item, Row
from dmp_cli.runs.packing import Packed, manifest_checksums, read_catalog
from dmp_cli.runs.report import shown_manifest
from dmp_cli.store import ObjectState, Store
from dmp_cli.store.config import read_config
from dmp_cli.words import plural

# --fetch --no-wait that leaves files to fetch once their restores are done (0 and 1 keep
# their meaning: a failed file fails the run).
RESTORE_PENDING_EXIT = 3
# How long a restore typically takes, by storage class and tier (AWS S3 documentation, as
# of December 2026); Expedited is not offered for DEEP_ARCHIVE (nor INTELLIGENT_TIERING's
# Deep Archive Access tier).
TYPICAL = {
    ("GLACIER", "Expedited"): "1-5 minutes",
    ("GLACIER", "Standard"): "3-5 hours",
    ("GLACIER", "Bulk"): "5-12 hours",
    ("DEEP_ARCHIVE", "Standard"): "within 12 hours",
    ("DEEP_ARCHIVE", "Bulk"): "within 48 hours",
    ("INTELLIGENT_TIERING", "Expedited"): "1-5 minutes (Archive Access; none from Deep)",
    ("INTELLIGENT_TIERING", "Standard"): "3-5 hours (Archive Access), within 12 hours (Deep)",
    ("INTELLIGENT_TIERING", "Bulk"): "5-12 hours (Archive Access), within 48 hours (Deep)",
}
# The longest a restore typically takes, in seconds, for the progress line's estimate.
LONGEST = {
    ("GLACIER", "Expedited"): 5 * 60,
    ("GLACIER", "Standard"): 5 * 3600,
    ("GLACIER", "Bulk"): 12 * 3600,
    ("DEEP_ARCHIVE", "Standard"): 12 * 3600,
    ("DEEP_ARCHIVE", "Bulk"): 48 * 3600,
}
SAMPLE_SHARE = 100  # a polling round HEADs one object in this many of those waiting
STATE_THREADS = 16  # HEADs and restore requests at once


@dataclass
class Cold:
    """An object met in cold storage: the items of the files that want it."""

    key: str
    items: list[Item] = field(default_factory=list)
    storage_class: str | None = None
    order: int = -1  # when its restore was requested (or found in progress)
    state: ObjectState | None = None  # as the fetch's own HEAD found it, if it made one


@dataclass
class RestoreCounts:
    """What became of the objects a run found cold."""

    requested: int = 0  # restores this run asked for
    ongoing: int = 0  # already being restored when this run asked
    readable: int = 0  # restored already (or no longer cold)
    refused: int = 0  # restores refused (and objects gone): their files failed
    waiting: int = 0  # still being restored when the run ended (--no-wait)
    waiting_files: int = 0
    rounds: int = 0  # polling rounds
    polls: int = 0  # HEADs made by them
    tier: str = "Standard"
    refusals: list[str] = field(default_factory=list)  # dmp vault restore: why, a line each


def typical_time(classes: Iterable[str | None], tier: str) -> str:
    """How long the tier's restores typically take from these classes, in words."""
    times = sorted({TYPICAL.get((cls or "", tier), "") for cls in classes} - {""})
    return "; ".join(times) if times else "unknown"


def time_left(classes: Iterable[str | None], tier: str, elapsed: float) -> str:
    """What is left of the typical time, ``elapsed`` seconds after the first request."""
    longest = [LONGEST[(cls or "", tier)] for cls in classes if (cls or "", tier) in LONGEST]
    if not longest:
        return f"{_duration(elapsed)} so far"
    left = max(longest) - elapsed
    if left <= 0:
        return f"{_duration(elapsed)} so far, longer than typical"
    return f"{_duration(elapsed)} so far, typically done within {_duration(left)}"


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes / 60:.1f} h"


class Restoring:
    """The cold objects of one --fetch: gathered from the rows of its first pass
    (``took_back``), then restored and fetched (``settle``)."""

    def __init__(
        self,
        store: Store,
        days: int,
        tier: str,
        wait: bool,
        delays: tuple[float, ...],
        on_note: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.days = days
        self.tier = tier
        self.wait = wait
        self.delays = delays or (60.0,)
        self.note = on_note or (lambda text: None)
        self.sleep = sleep
        self.clock = clock
        self.counts = RestoreCounts(tier=tier)
        self._objects: dict[str, Cold] = {}  # cold, met and not fetched yet
        self._waiting: dict[str, Cold] = {}  # their restores requested, or in progress
        self._queued: dict[str, Cold] = {}  # every object ever waiting, by key
        self._gone: list[Item] = []  # the items of objects gone while waiting, to fail
        self._orders = itertools.count()
        self._stop = False  # a read met a cold object: the round ends
        self._total = 0  # objects restored or being restored, for the progress line
        self._started = 0.0

    # ------------------------------------------------------------ the rows

    def took_back(self, row: Row) -> bool:
        """A row marked ``cold``: its item kept, to be fetched once its object is read;
        True, as the row is not the file's outcome."""
        key = row.get("cold")
        item = row.get("item")
        if not key or item is None:
            return False
        cold = self._queued.get(key)
        if cold is not None:  # read too soon: it waits again, and the round ends
            self._waiting[key] = cold
            self._stop = True
        else:
            cold = self._objects.setdefault(key, Cold(key))
            said = row.get("cold_state")
            if said is not None:
                cold.state = ObjectState(said[0], said[1])
        cold.items.append(item)  # type: ignore[arg-type]
        return True

    @property
    def pending(self) -> bool:
        """Whether files are left unfetched, waiting for their objects' restores."""
        return bool(self._waiting)

    # ------------------------------------------------------------ restoring

    def settle(self, run: Callable[[Iterable[Item]], object]) -> RestoreCounts:
        """Restore the cold objects met, and fetch their files with ``run`` (which hands
        their rows back to ``took_back``): as soon as readable if waiting, else those
        readable now."""
        if not self._objects:
            return self.counts
        self._started = self.clock()
        for _ in range(2):  # again for those read cold after a HEAD said readable
            ready, failed = self._ask()
            if ready or failed:
                run(itertools.chain(failed, ready))
        for cold in list(self._objects.values()):  # twice so: wait for them as well
            self._queue(cold)
        self._objects = {}
        if self.wait:
            self._poll(run)
        self.counts.waiting = len(self._waiting)
        self.counts.waiting_files = sum(len(cold.items) for cold in self._waiting.values())
        return self.counts

    # ------------------------------------------------------------ a detached job

    def resume(self, key: str, item: Item, order: int | None) -> None:
        """A file of a detached job still waiting, as its record in Redis holds it: under
        an object whose restore was asked for before (``order``), or one met cold since
        (None: its state is asked, and a restore requested if it has none)."""
        if order is None:
            self._objects.setdefault(key, Cold(key)).items.append(item)
            return
        cold = self._queued.get(key)
        if cold is None:
            cold = self._queued[key] = self._waiting[key] = Cold(key, order=order)
            self._orders = itertools.count(max(order + 1, next(self._orders)))
        cold.items.append(item)

    def ask(self, run: Callable[[Iterable[Item]], object]) -> None:
        """A detached job's first look at the cold objects met (those ``resume`` got
        without an order): a restore requested for each that has none, the files of
        those readable fetched with ``run``, the others left waiting. Nothing waits."""
        if not self._objects:
            return
        self._started = self.clock()
        for _ in range(2):  # as ``settle``
            ready, failed = self._ask()
            if ready or failed:
                run(itertools.chain(failed, ready))
        for cold in list(self._objects.values()):
            self._queue(cold)
        self._objects = {}

    def poll_once(self, run: Callable[[Iterable[Item]], object], turn: int) -> int:
        """One polling round of a detached job, with no pause (its job was parked
        instead): the sample from ``turn`` on, and the files of the objects found
        readable fetched; returns where the next round's sample starts."""
        if not self._waiting:
            return turn
        return self._round(run, turn)

    @property
    def to_ask(self) -> bool:
        """Whether cold objects met are still to be asked about (``ask``)."""
        return bool(self._objects)

    def waiting_objects(self) -> list[Cold]:
        """The objects still waiting for their restores, in the order they were asked."""
        return sorted(self._waiting.values(), key=lambda cold: cold.order)

    def _ask(self) -> tuple[list[Item], list[Item]]:
        """Each cold object's state (a HEAD), and a restore requested for those that
        have none under way: the items to fetch now, and those failed."""
        objects = list(self._objects.values())
        self._objects = {}
        ready: list[Item] = []
        failed: list[Item] = []
        with ThreadPoolExecutor(STATE_THREADS, "dmp-restore") as pool:
            states = list(pool.map(self._known_state, objects))
            for cold, state in zip(objects, states, strict=True):
                if isinstance(state, ObjectState):  # INTELLIGENT_TIERING's restores take no days
                    cold.storage_class = state.storage_class
            asks = [cold for cold, state in zip(objects, states, strict=True) if _to_ask(state)]
            asked = dict(zip((c.key for c in asks), pool.map(self._request, asks), strict=True))
        for cold, state in zip(objects, states, strict=True):
            outcome = asked.get(cold.key)
            if isinstance(state, StoreError):
                failed += _failed(cold, str(state))
                self.counts.refused += 1
            elif state is None:
                failed += _failed(cold, f"{self.store.key_url(cold.key)}: not in the vault")
                self.counts.refused += 1
            elif outcome is None and state.readable:
                ready += cold.items
                self.counts.readable += 1
            elif isinstance(outcome, StoreError):
                failed += _failed(cold, str(outcome))
                self.counts.refused += 1
            else:
                if outcome == "requested":
                    self.counts.requested += 1
                else:  # in progress: found by the HEAD, or by the store's 409
                    self.counts.ongoing += 1
                self._queue(cold)
        self._total = self.counts.requested + self.counts.ongoing
        if self._total and objects:
            self.note(
                f"restoring: {plural(self.counts.requested, 'restore', 'restores')} "
                f"requested, {self.counts.ongoing} already in progress "
                f"({self.tier} tier, {self.days} days; typically "
                f"{typical_time(self._classes(), self.tier)})"
            )
        return ready, failed

    def _known_state(self, cold: Cold) -> ObjectState | StoreError | None:
        """The state the fetch's own HEAD found (a plain object's), else a HEAD's."""
        state, cold.state = cold.state, None
        return state if state is not None else self._state(cold)

    def _state(self, cold: Cold) -> ObjectState | StoreError | None:
        try:
            return with_retries(lambda: self.store.object_state(cold.key))
        except StoreError as exc:
            if exc.fatal:
                raise RunStopped(str(exc)) from exc
            return exc

    def _request(self, cold: Cold) -> str | StoreError:
        days = None if cold.storage_class == "INTELLIGENT_TIERING" else self.days
        try:
            return with_retries(lambda: self.store.request_restore(cold.key, days, self.tier))
        except StoreError as exc:
            if exc.fatal:
                raise RunStopped(str(exc)) from exc
            return exc

    def _queue(self, cold: Cold) -> None:
        cold.order = next(self._orders)
        self._waiting[cold.key] = self._queued[cold.key] = cold

    def _classes(self) -> set[str | None]:
        return {cold.storage_class for cold in self._waiting.values()}

    # ------------------------------------------------------------ waiting

    def _poll(self, run: Callable[[Iterable[Item]], object]) -> None:
        delays = itertools.chain(self.delays, itertools.repeat(self.delays[-1]))
        turn = 0  # where the next round's sample starts, in request order
        while self._waiting:
            self._progress()
            self.sleep(next(delays))
            turn = self._round(run, turn)

    def _round(self, run: Callable[[Iterable[Item]], object], turn: int) -> int:
        """One polling round: HEADs of a sample (1 % of the objects waiting, from
        ``turn`` on, in request order), then the files of those readable fetched, and
        the others' in lots (``_release_later``); the next round's ``turn``."""
        waiting = self.waiting_objects()
        size = max(1, len(waiting) // SAMPLE_SHARE)
        turn %= len(waiting)
        sample = (waiting[turn:] + waiting[:turn])[:size]
        turn += size
        self.counts.rounds += 1
        self.counts.polls += len(sample)
        seen = self._sampled(sample)
        ready = [cold for cold in sample if seen.get(cold.key) is True]
        gone, self._gone = self._gone, []
        if not ready and not gone:
            return turn
        self._stop = False
        run(itertools.chain(gone, self._release(ready)))
        if ready:
            later = [c for c in waiting if c.key not in seen and c.key in self._waiting]
            self._release_later(later, size, run)
        return turn

    def _release_later(
        self, later: list[Cold], size: int, run: Callable[[Iterable[Item]], object]
    ) -> None:
        """The other waiting objects' files, in the order their restores were requested,
        a lot at a time, each lot twice the one before (the first as big as the round's
        sample): a lot is fetched whole before the next is begun, so that once a read
        meets an object still cold, the round ends with no more than that lot's reads
        spent on objects not restored yet."""
        start = 0
        while start < len(later) and not self._stop:
            run(self._release(later[start : start + size]))
            start += size
            size *= 2

    def _sampled(self, sample: list[Cold]) -> dict[str, bool]:
        """Which sampled objects are readable (a HEAD each); one gone fails its files."""
        seen: dict[str, bool] = {}
        with ThreadPoolExecutor(STATE_THREADS, "dmp-restore") as pool:
            states = list(pool.map(self._state, sample))
        for cold, state in zip(sample, states, strict=True):
            if isinstance(state, StoreError):
                seen[cold.key] = False  # asked again in a later round
            elif state is None:
                self._waiting.pop(cold.key, None)
                self.counts.refused += 1
                self._gone += _failed(cold, f"{self.store.key_url(cold.key)}: not in the vault")
                cold.items = []
            else:
                seen[cold.key] = state.readable
        return seen

    def _release(self, objects: list[Cold]) -> Iterator[Item]:
        """The items of ``objects`` in turn, each object's all together, until a read
        meets a cold object (``took_back`` puts it back and ends the round)."""
        for cold in objects:
            if self._stop:
                return
            if self._waiting.pop(cold.key, None) is None:
                continue
            items, cold.items = cold.items, []
            yield from items

    def _progress(self) -> None:
        ready = self._total - len(self._waiting)
        classes = self._classes()
        elapsed = self.clock() - self._started
        self.note(
            f"restoring: {ready:,} of {self._total:,} objects ready ({self.tier} tier: "
            f"typically {typical_time(classes, self.tier)}; "
            f"{time_left(classes, self.tier, elapsed)})"
        )


def stage_restores(manifest: str, store: Store, days: int, tier: str) -> RestoreCounts:
    """dmp vault restore: a restore requested for each object the manifest's entries need
    that is cold and has none under way (a HEAD each, then the request), so that a fetch
    a day later finds them readable. Nothing is fetched."""
    keys = manifest_objects(manifest, store)
    counts = RestoreCounts(tier=tier)
    with ThreadPoolExecutor(STATE_THREADS, "dmp-restore") as pool:
        outcomes = list(pool.map(lambda key: _stage(store, key, days, tier), keys))
    for outcome in outcomes:
        if outcome == "requested":
            counts.requested += 1
        elif outcome == "ongoing":
            counts.ongoing += 1
        elif outcome == "readable":
            counts.readable += 1
        else:
            counts.refused += 1
            counts.refusals.append(outcome)
    return counts


def _stage(store: Store, key: str, days: int, tier: str) -> str:
    """One object: "requested", "ongoing", "readable", or why not, in one line."""
    try:
        state = with_retries(lambda: store.object_state(key))
        if state is None:
            return f"{store.key_url(key)}: not in the vault"
        if state.restore is not None or not state.cold:
            return "readable" if state.readable else "ongoing"
        span = None if state.storage_class == "INTELLIGENT_TIERING" else days
        return with_retries(lambda: store.request_restore(key, span, tier))
    except StoreError as exc:
        if exc.fatal:
            raise
        return str(exc)


def manifest_objects(manifest: str, store: Store) -> list[str]:
    """The distinct objects the manifest's entries need, in the order first needed: a
    plain object per checksum, or in a packing vault a pack once for all its members."""
    shown = shown_manifest(manifest)
    digests: dict[str, None] = {}
    with open_manifest(manifest, shown) as stream:
        for line in parse_lines(stream):
            if line.entry is not None:
                digests.setdefault(line.entry.digest, None)
    config = with_retries(lambda: read_config(store))
    if config is None:
        return [digest_key(digest) for digest in digests]
    packed = Packed()
    try:
        checksums = manifest_checksums(manifest, shown)
        try:
            read_catalog(store, config, checksums, packed)
        finally:
            checksums.close()
        keys: dict[str, None] = {}
        for digest in digests:
            known = packed.get(bytes.fromhex(digest))
            if known is not None and known[0] == "packed":
                keys.setdefault(pack_key(known[1]), None)
            else:
                keys.setdefault(digest_key(digest), None)
        return list(keys)
    finally:
        packed.close()


def _to_ask(state: ObjectState | StoreError | None) -> bool:
    """Whether an object needs a restore requested: cold, and none under way or done."""
    return isinstance(state, ObjectState) and state.cold and state.restore is None


def _failed(cold: Cold, error: str) -> list[Item]:
    for item in cold.items:
        item["cold_error"] = error
    return cold.items


def stop_cold(row: Row) -> Any:
    """A detached job's fetch does not wait for restores: its first file in cold storage
    ends it, in one line, rather than every file failing alike."""
    if row.get("cold"):
        raise RunStopped(
            f"{row.get('error')}: a detached --fetch does not restore from cold storage; "
            "run `dmp vault restore --manifest M` first, or fetch attached"
        )
    return False


__all__ = [
    "RESTORE_PENDING_EXIT",
    "RestoreCounts",
    "Restoring",
    "manifest_objects",
    "stage_restores",
    "stop_cold",
    "time_left",
    "typical_time",
]
