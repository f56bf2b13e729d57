"""Whether to list the vault rather than ask about each checksum by HEAD, and how finely.

A vault's keys are ``ab/cd/...``, spread evenly by sha256. It can be listed whole (one
item of work, paged by continuation: a request per 1,000 keys), by its 16 first
characters (``a``: 16 items), or by its 256 first-level prefixes (``ab/``: 256 items);
only the prefixes that hold a checksum of the manifest are listed. Each prefix is an
item of executor work, listed in parallel (threads embedded, workers on the fleet), and
each costs a request at least, however few its keys. The finest split is chosen whose
requests stay within a tenth of the fewest: a big vault is listed in parallel at almost
no cost in requests, a small one in as few requests as it can be.

The vault's size is estimated before the choice: one page of the first-level prefix
``00/`` (a vault of fewer than about 256,000 objects shows its size there to a few per
cent), and past that one second-level prefix ``00/00/``, counted only until listing is
known to cost more requests than the HEADs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from dmp_cli.store import Vault

PAGE_KEYS = 1000  # keys a LIST request returns at most
LEVELS = (256, 16, 1)  # the prefixes a vault may be split into, finest first
SLACK = 1.1  # requests a finer split may cost over the fewest, for its parallelism
FIRST_SAMPLE, FIRST_PARTS = "00/", 256  # a page of it: the size of a small vault
SECOND_SAMPLE, SECOND_PARTS = "00/00/", 65536  # the size of a big one
# Listing costs a request at least, and the estimate another: fewer checksums than
# this are asked about by HEAD without an estimate.
LEAST_LIST = 2


def key_prefix(first: str, parts: int) -> str:
    """The key prefix listed for the checksums starting with ``first`` (two hex
    characters) when the vault is split into ``parts``: ``""``, ``a`` or ``ab/``."""
    if parts == 1:
        return ""
    if parts == 16:
        return first[0]
    return f"{first}/"


def covered(prefix: str, firsts: Iterable[str]) -> list[str]:
    """The first-level prefixes (``ab``) among ``firsts`` that a key prefix covers."""
    start = prefix.rstrip("/")
    return sorted(first for first in firsts if first.startswith(start))


def requests(parts: int, listed: int, objects: int) -> int:
    """The LIST requests of ``listed`` of a vault's ``parts`` prefixes, the vault of
    ``objects`` objects: a page of 1,000 keys each, at least one a prefix."""
    return listed * max(1, -(-objects // (parts * PAGE_KEYS)))


@dataclass(frozen=True)
class Split:
    """How finely a vault is listed: into ``parts``, of which ``prefixes`` are listed."""

    parts: int
    prefixes: tuple[str, ...]
    requests: int

    @property
    def what(self) -> str:
        if self.parts == 1:
            return "the whole vault"
        return f"{len(self.prefixes):,} prefix" + ("es" if len(self.prefixes) > 1 else "")


def split(counts: Mapping[str, int], objects: int, most: int | None = None) -> Split:
    """The finest split of a vault of ``objects`` objects for checksums counted by
    first-level prefix in ``counts``, whose requests are within SLACK of the fewest.
    ``most``: the checksums one item may carry (None: any); the finest always may."""
    splits: list[Split] = []
    for parts in LEVELS:
        carried: dict[str, int] = {}
        for first, count in counts.items():
            prefix = key_prefix(first, parts)
            carried[prefix] = carried.get(prefix, 0) + count
        if splits and most is not None and max(carried.values()) > most:
            continue
        splits.append(Split(parts, tuple(sorted(carried)), requests(parts, len(carried), objects)))
    fewest = min(s.requests for s in splits)
    return next(s for s in splits if s.requests <= fewest * SLACK)


@dataclass(frozen=True)
class Estimate:
    """A vault's size from a sample: ``objects``, after ``requests`` LIST requests;
    ``cut``: counted only until listing was known to cost more."""

    objects: int
    requests: int
    cut: bool = False

    def __str__(self) -> str:
        if not self.objects:
            return f"fewer than about {FIRST_PARTS:,}"
        return f"about {self.objects:,}" + (" or more" if self.cut else "")


def estimate(vault: Vault, enough: Callable[[], int] | None = None) -> Estimate:
    """The vault's size: from a page of ``00/`` if that holds fewer than 1,000 keys,
    else from ``00/00/``, counted up to ``enough()`` keys (None: all)."""
    first = _count(vault, FIRST_SAMPLE, PAGE_KEYS)
    if first < PAGE_KEYS:
        return Estimate(first * FIRST_PARTS, 1)
    most = enough() if enough is not None else None
    second = _count(vault, SECOND_SAMPLE, most)
    pages = max(1, -(-second // PAGE_KEYS))
    objects = max(second * SECOND_PARTS, PAGE_KEYS * FIRST_PARTS)
    return Estimate(objects, 1 + pages, cut=most is not None and second >= most)


def _count(vault: Vault, prefix: str, most: int | None) -> int:
    count = 0
    for _ in vault.listing(prefix):
        count += 1
        if most is not None and count >= most:
            break
    return count


def keys_enough(counts: Mapping[str, int], distinct: int, most: int | None = None) -> int:
    """How many keys of ``00/00/`` show that listing costs at least as many requests as
    ``distinct`` HEADs (the estimate's two requests counted): the estimate stops there."""

    def dear(keys: int) -> bool:
        objects = max(keys * SECOND_PARTS, PAGE_KEYS * FIRST_PARTS)
        return split(counts, objects, most).requests + 2 >= distinct

    low, high = 0, 1
    while not dear(high):
        low, high = high, high * 2
    while low < high:  # the fewest keys that are dear
        middle = (low + high) // 2
        if dear(middle):
            high = middle
        else:
            low = middle + 1
    return max(1, high)


@dataclass
class Choice:
    way: str  # "head" or "list"
    why: str  # what -v says
    split: Split | None = None  # how finely to list


def choose(
    distinct: int,
    counts: Mapping[str, int],
    size: Estimate | None,
    per_entry: str,
    most: int | None = None,
) -> Choice:
    """The way to ask about ``distinct`` checksums, counted by first-level prefix in
    ``counts``, of a vault of the estimated ``size`` (None: not estimated, as listing
    could not pay however small the vault). The LIST requests include the estimate's."""
    if size is None:
        return Choice(
            "head",
            f"planning by HEAD: {distinct:,} {per_entry} instead of at least {LEAST_LIST:,} "
            "LIST requests",
        )
    chosen = split(counts, size.objects, most)
    cost = chosen.requests + size.requests
    if cost >= distinct:
        return Choice(
            "head",
            f"planning by HEAD: {distinct:,} {per_entry} instead of {cost:,} LIST requests "
            f"(a vault of {size} objects)",
        )
    return Choice(
        "list",
        f"planning by listing {chosen.what}: {cost:,} LIST requests instead of "
        f"{distinct:,} {per_entry} (a vault of {size} objects)",
        chosen,
    )


def forced(
    distinct: int,
    counts: Mapping[str, int],
    size: Estimate | None,
    per_entry: str,
    most: int | None = None,
    unknown: str = "",
) -> Choice:
    """Listing, as DMP_VAULT_PLANNING=list asks, split as the estimated ``size`` says;
    without an estimate (``unknown`` says why), by first-level prefix."""
    if size is None:
        chosen = split(counts, PAGE_KEYS * FIRST_PARTS, 0)  # the finest: its items carry least
        return Choice(
            "list",
            f"planning by listing {chosen.what}: DMP_VAULT_PLANNING=list (instead of "
            f"{distinct:,} {per_entry}; the vault's size unknown: {unknown})",
            chosen,
        )
    chosen = split(counts, size.objects, most)
    return Choice(
        "list",
        f"planning by listing {chosen.what}: DMP_VAULT_PLANNING=list, "
        f"{chosen.requests + size.requests:,} LIST requests instead of {distinct:,} "
        f"{per_entry} (a vault of {size} objects)",
        chosen,
    )
