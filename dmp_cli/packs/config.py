"""A packing vault's config object, and the names its packs and index objects live under.

Every name here starts with a letter that is not a hex digit (``v``, ``p``, ``i``), while a
checksum's key (``dmp_cli.layout``) starts with two hex digits and a ``/``: no checksum's
key can equal one of them, and no listing by a checksum key's prefix (``c``, ``ab/``) meets
them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from dmp_cli.errors import DmpError
from dmp_cli.layout import is_digest
from dmp_cli.settings import STORAGE_CLASS_NAME

CONFIG_KEY = "vault.json"
FORMAT = "dmp-vault"
VERSION = 1

MiB = 1 << 20
DEFAULT_PACK_BELOW = 1 * MiB
DEFAULT_PACK_TARGET = 64 * MiB
# Packs of at least this size where the files allow. A pack passes its target by less than
# a file (below pack_below, at most half the target) and half a target: a target of at most
# 2 GiB keeps it within one PUT (5 GiB), the largest object whose ChecksumSHA256 S3 checks.
MIN_PACK_TARGET = 32 * MiB
MAX_PACK_TARGET = 2 << 30
DEFAULT_INDEX_WIDTH = 1  # 16 shards: see the package's docstring for the count
INDEX_WIDTHS = (1, 2)

PACKS = "packs/"
INDEX = "index/"
_PACK_KEY = re.compile(r"packs/([0-9a-f]{64})\.tar\Z")
_INDEX_KEY = re.compile(r"index/([0-9a-f]{1,2})/(pack|merged)-([0-9a-f]{64})\.(idx|fence)\Z")

_FIELDS = ("format", "version", "pack_below", "pack_target", "index_width", "storage_class")


class VaultConfigError(DmpError):
    """A vault's config object cannot be read or is not one this dmp knows."""


@dataclass(frozen=True)
class VaultConfig:
    """How a packing vault stores: files strictly smaller than ``pack_below`` go into packs
    of about ``pack_target`` bytes; their index is sharded by the first ``index_width``
    hex digits of the checksum. ``storage_class``, if set, is the class --archive stores
    content objects (packs, and files stored plain) in when neither --storage-class nor
    DMP_STORAGE_CLASS says one; the config and index objects stay in the store's default."""

    pack_below: int = DEFAULT_PACK_BELOW
    pack_target: int = DEFAULT_PACK_TARGET
    index_width: int = DEFAULT_INDEX_WIDTH
    storage_class: str | None = None

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            raise ValueError(problem)

    def packs(self, size: int) -> bool:
        """Whether a file of this size goes into a pack (else it is a plain object)."""
        return size < self.pack_below

    def shard(self, digest: str) -> str:
        return digest[: self.index_width]

    def shards(self) -> list[str]:
        """Every shard's name, in order."""
        return [f"{n:0{self.index_width}x}" for n in range(16**self.index_width)]

    def encode(self) -> bytes:
        """The config object's bytes: one line of JSON, keys in a fixed order."""
        fields: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "pack_below": self.pack_below,
            "pack_target": self.pack_target,
            "index_width": self.index_width,
        }
        if self.storage_class is not None:  # written only when set: older dmps read the rest
            fields["storage_class"] = self.storage_class
        return (json.dumps(fields) + "\n").encode()


def parse_config(data: bytes, name: str) -> VaultConfig:
    """The config in ``data``, read from the object ``name`` (an address, for messages).
    Raise VaultConfigError with one line naming it if it is not a config this dmp reads."""
    try:
        fields = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise VaultConfigError(f"{name}: not a dmp vault config (unreadable JSON: {exc})") from exc
    if not isinstance(fields, dict) or fields.get("format") != FORMAT:
        raise VaultConfigError(f'{name}: not a dmp vault config (no "format": "{FORMAT}")')
    version = fields.get("version")
    if version != VERSION or isinstance(version, bool):
        raise VaultConfigError(
            f"{name}: vault config version {json.dumps(version)} is not one this dmp knows "
            f"(it reads version {VERSION}); use a newer dmp"
        )
    unknown = sorted(set(fields) - set(_FIELDS))
    if unknown:
        raise VaultConfigError(f"{name}: vault config has unknown fields: {', '.join(unknown)}")
    values: dict[str, Any] = {
        "pack_below": fields.get("pack_below", DEFAULT_PACK_BELOW),
        "pack_target": fields.get("pack_target", DEFAULT_PACK_TARGET),
        "index_width": fields.get("index_width", DEFAULT_INDEX_WIDTH),
    }
    problem = _problem_of(values)
    if problem is None and "storage_class" in fields:
        values["storage_class"] = fields["storage_class"]
        problem = _class_problem(values["storage_class"])
    if problem:
        raise VaultConfigError(f"{name}: bad vault config: {problem}")
    return VaultConfig(**values)


def _problem(config: VaultConfig) -> str | None:
    problem = _problem_of(
        {
            "pack_below": config.pack_below,
            "pack_target": config.pack_target,
            "index_width": config.index_width,
        }
    )
    if problem is None and config.storage_class is not None:
        return _class_problem(config.storage_class)
    return problem


def _class_problem(value: Any) -> str | None:
    if isinstance(value, str) and STORAGE_CLASS_NAME.fullmatch(value):
        return None
    return f"storage_class is {json.dumps(value)}, not a storage class name (A-Z, 0-9, _)"


def _problem_of(values: dict[str, Any]) -> str | None:
    for field, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{field} is {json.dumps(value)}, not a whole number"
    below, target, width = values["pack_below"], values["pack_target"], values["index_width"]
    if not MIN_PACK_TARGET <= target <= MAX_PACK_TARGET:
        return f"pack_target {target} is outside {MIN_PACK_TARGET}..{MAX_PACK_TARGET} bytes"
    if not 1 <= below <= target // 2:
        return f"pack_below {below} is outside 1..{target // 2} bytes (half of pack_target)"
    if width not in INDEX_WIDTHS:
        return f"index_width {width} is not one of {', '.join(map(str, INDEX_WIDTHS))}"
    return None


def pack_key(pack: str) -> str:
    """Where the pack whose bytes hash to ``pack`` lives."""
    if not is_digest(pack):
        raise ValueError(f"not a lowercase sha256 hex digest: {pack!r}")
    return f"{PACKS}{pack}.tar"


def index_key(shard: str, pack: str) -> str:
    """Where a pack's index of its members in ``shard`` lives: its name says its pack, so
    that a listing of ``index/`` tells which packs have an index without reading any."""
    return f"{INDEX}{_checked_shard(shard)}/pack-{_checked(pack)}.idx"


def merged_index_key(shard: str, digest: str) -> str:
    """Where an index merged from several of one shard lives, named by its own sha256."""
    return f"{INDEX}{_checked_shard(shard)}/merged-{_checked(digest)}.idx"


def fence_key(shard: str, digest: str) -> str:
    """Where the fence of the merged index ``digest`` lives (``dmp_cli.packs.fence``)."""
    return f"{INDEX}{_checked_shard(shard)}/merged-{_checked(digest)}.fence"


def index_prefix(shard: str) -> str:
    return f"{INDEX}{_checked_shard(shard)}/"


@dataclass(frozen=True)
class IndexName:
    shard: str
    merged: bool
    digest: str  # the pack's sha256 (merged: False), or the merged index's own
    fence: bool = False  # the fence of the merged index ``digest``, not the index


def parse_pack_key(key: str) -> str | None:
    """The pack's sha256 if ``key`` is a pack's name, else None."""
    match = _PACK_KEY.match(key)
    return match.group(1) if match else None


def parse_index_key(key: str) -> IndexName | None:
    match = _INDEX_KEY.match(key)
    if not match:
        return None
    merged, fence = match.group(2) == "merged", match.group(4) == "fence"
    if fence and not merged:
        return None
    return IndexName(match.group(1), merged, match.group(3), fence)


def _checked(digest: str) -> str:
    if not is_digest(digest):
        raise ValueError(f"not a lowercase sha256 hex digest: {digest!r}")
    return digest


def _checked_shard(shard: str) -> str:
    if not (len(shard) in INDEX_WIDTHS and all(c in "0123456789abcdef" for c in shard)):
        raise ValueError(f"not a shard (1 or 2 lowercase hex digits): {shard!r}")
    return shard
