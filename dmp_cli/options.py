"""A run's options, split in two: where the stores are (``StoreSpec``) and what the
operation does (``Options``). Both are validated once, where they are made, and are plain
enough to travel as JSON to the workers that make their stores from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Self

from dmp_cli.errors import UsageError
from dmp_cli.settings import conditional_put_mode, storage_class_name
from dmp_cli.urls import parse_url, same_kind

# The tiers of a restore from cold storage (S3's RestoreObject), fastest last.
RESTORE_TIERS = ("Bulk", "Standard", "Expedited")

# The modes of an archive's destination: the vault itself; a staging bucket keyed by
# checksum (DMP_ARCHIVE_DEFAULT); or --path, keyed by manifest path, copied into the vault.
DEST_MODES = (None, "default", "path")


class _Plain:
    """Dataclasses that go to JSON and back (unknown keys are refused, not dropped)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> Self:
        known = {field.name for field in fields(cls)}  # type: ignore[arg-type]
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {', '.join(sorted(unknown))}")
        return cls(**values)


@dataclass(frozen=True)
class StoreSpec(_Plain):
    """Where the stores are and how to reach them: a process makes its stores from this."""

    vault: str
    dest: str | None = None  # an archive's destination other than the vault
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    concurrency: int = 16  # connections: one per thread that transfers
    multipart_threshold: int | None = None
    multipart_chunksize: int | None = None
    conditional_put: str = "auto"  # DMP_CONDITIONAL_PUT: trust If-None-Match? auto, on, off

    def validated(self) -> StoreSpec:
        """The spec, if its URLs and settings are ones dmp can use; else a usage error."""
        for url in (self.vault, self.dest):
            if url:
                parse_url(url)
        conditional_put_mode(self.conditional_put)
        return self


@dataclass(frozen=True)
class Options(_Plain):
    """What a command does beyond its inputs; the defaults are the plain command's."""

    strict: bool = False  # --check, --vault: improperly formatted lines fail the run
    ignore_missing: bool = False  # --check
    dest_mode: str | None = None  # --archive: see DEST_MODES
    all: bool = False  # --archive --path: upload also what the vault has
    dry_run: bool = False  # --archive, --fetch
    overwrite: bool = False  # --fetch
    absolute_names: bool = False  # --fetch
    owner_names: bool = False  # --fetch with a companion, as root: owners by name
    meta: bool = False  # --create: each file's own metadata in its row (dmp_cli.meta)
    restore_days: int = 7  # --fetch from cold storage: how long a restored copy stays
    restore_tier: str = "Standard"  # --fetch: the restore's tier (RESTORE_TIERS)
    wait: bool = True  # --fetch: wait for the restores (--no-wait: request them, return)
    # --archive: the content objects' storage class (--storage-class, DMP_STORAGE_CLASS,
    # the vault config's); None, the store's default. Never that of what every run reads.
    storage_class: str | None = None

    def validated(self, spec: StoreSpec | None = None) -> Options:
        """The options, if they make sense together and with ``spec``; else a usage error."""
        if self.dest_mode not in DEST_MODES:
            raise UsageError(f"unknown archive destination mode {self.dest_mode!r}")
        if self.all and self.dest_mode != "path":
            raise UsageError("--all needs --path s3://bucket/prefix: say where to put everything")
        # Each value as the store spells it ("bulk" is Bulk, "glacier" GLACIER); a bad one
        # is a usage error.
        spelled = replace(
            self,
            restore_days=restore_days(self.restore_days),
            restore_tier=restore_tier(self.restore_tier),
            storage_class=None
            if self.storage_class is None
            else storage_class_name(self.storage_class),
        )
        if spelled != self:
            return spelled.validated(spec)
        if spec is None:
            return self
        if self.dest_mode and not spec.dest:
            raise UsageError("an archive destination mode needs a destination URL")
        if self.dest_mode == "path" and spec.dest and not same_kind(spec.dest, spec.vault):
            raise UsageError(
                f"--path {spec.dest}: the vault ({spec.vault}) is another "
                "kind of store, so it cannot get a server-side copy"
            )
        return self


def restore_days(value: object) -> int:
    """--restore-days: a positive whole number of days; anything else is a usage error."""
    try:
        days = int(str(value).strip())
    except ValueError:
        days = 0
    if days < 1 or isinstance(value, bool | float):
        raise UsageError(f"--restore-days must be a positive whole number of days, not {value!r}")
    return days


def restore_tier(value: str) -> str:
    """--restore-tier: Bulk, Standard or Expedited, in any case, as S3 spells it."""
    tiers = {tier.lower(): tier for tier in RESTORE_TIERS}
    tier = tiers.get(str(value).strip().lower())
    if tier is None:
        raise UsageError(f"--restore-tier must be Bulk, Standard or Expedited, not {value!r}")
    return tier


@dataclass(frozen=True)
class Work(_Plain):
    """Everything an operation needs besides its items, as it travels to a worker:
    relative paths are resolved against ``cwd`` (the submitter's working directory)."""

    op: str
    cwd: str | None = None
    stores: dict[str, Any] | None = None  # a StoreSpec, as JSON
    options: dict[str, Any] | None = None  # Options, as JSON

    @classmethod
    def of(cls, op: str, spec: StoreSpec | None, options: Options, cwd: str | None = None) -> Work:
        return cls(op, cwd, spec.to_json() if spec else None, options.to_json())

    def spec(self) -> StoreSpec | None:
        return StoreSpec.from_json(self.stores) if self.stores is not None else None

    def opts(self) -> Options:
        return Options.from_json(self.options or {})

    def at(self, cwd: str) -> Work:
        return replace(self, cwd=cwd)
