"""The settings a run is made with: global options first, then DMP_* variables, then defaults.

A DMP_* variable with a value dmp cannot use is a usage error naming it, said once, before
anything is asked of a store.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dmp_cli.errors import UsageError

DEFAULT_VAULT = "s3://etx-dmp-vault/object"
# Whether a store's put-if-absent (If-None-Match: *) is trusted: learned from the store
# by a probe (auto), trusted without one (on), or never used, asking first (off).
CONDITIONAL_PUT_MODES = ("auto", "on", "off")
# How --vault and --archive learn which checksums the vault holds: whichever way needs
# fewer requests (auto), a HEAD per checksum (head), or listing the vault's keys (list).
VAULT_PLANNING_MODES = ("auto", "head", "list")
MIN_PART_SIZE = 5 << 20  # S3 refuses smaller parts (all but the last)
# --fetch from cold storage: the pauses between polls of the restores, in seconds, the
# last one repeated (DMP_RESTORE_POLL).
RESTORE_POLL = (60.0, 120.0, 300.0, 600.0)
# A storage class's name, as S3 spells them (STANDARD_IA, GLACIER_IR, DEEP_ARCHIVE) and as
# other stores may name their own: passed through as given, never checked against a list.
STORAGE_CLASS_NAME = re.compile(r"[A-Z0-9_]+")


@dataclass(frozen=True)
class Settings:
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    jobs: int | None = None
    vault: str = DEFAULT_VAULT
    archive_default: str | None = None
    broker_url: str | None = None
    conditional_put: str = "auto"
    multipart_threshold: int | None = None
    multipart_chunksize: int | None = None
    vault_planning: str = "auto"
    restore_poll: tuple[float, ...] = RESTORE_POLL
    storage_class: str | None = None  # DMP_STORAGE_CLASS: --archive's, if not the option

    @classmethod
    def from_env(cls, **options: Any) -> Settings:
        env = os.environ
        return cls(
            profile=options.get("profile"),
            region=options.get("region"),
            endpoint_url=options.get("endpoint_url"),
            jobs=options.get("jobs"),
            vault=env.get("DMP_VAULT") or DEFAULT_VAULT,
            archive_default=env.get("DMP_ARCHIVE_DEFAULT") or None,
            broker_url=broker_url(env.get("DMP_BROKER_URL") or None),
            vault_planning=vault_planning_mode(env.get("DMP_VAULT_PLANNING") or "auto"),
            restore_poll=restore_poll(env.get("DMP_RESTORE_POLL")),
            storage_class=storage_class_name(env.get("DMP_STORAGE_CLASS"), "DMP_STORAGE_CLASS"),
            **store_settings(env),
        )


def store_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """How uploads talk to S3: DMP_CONDITIONAL_PUT, DMP_MULTIPART_THRESHOLD and
    DMP_MULTIPART_CHUNKSIZE (bytes), validated."""
    return {
        "conditional_put": conditional_put_mode(env.get("DMP_CONDITIONAL_PUT") or "auto"),
        "multipart_threshold": _size(env, "DMP_MULTIPART_THRESHOLD"),
        "multipart_chunksize": _size(env, "DMP_MULTIPART_CHUNKSIZE"),
    }


def conditional_put_mode(value: str) -> str:
    mode = value.strip().lower()
    if mode not in CONDITIONAL_PUT_MODES:
        raise UsageError(f"DMP_CONDITIONAL_PUT must be auto, on or off, not {value!r}")
    return mode


def vault_planning_mode(value: str) -> str:
    """DMP_VAULT_PLANNING: auto, head or list; anything else is a usage error."""
    mode = value.strip().lower()
    if mode not in VAULT_PLANNING_MODES:
        raise UsageError(f"DMP_VAULT_PLANNING must be auto, head or list, not {value!r}")
    return mode


def storage_class_name(value: str | None, name: str = "--storage-class") -> str | None:
    """A storage class (``glacier`` or ``GLACIER``), upper-cased; None if unset or empty.
    Anything but letters, digits and underscores is a usage error naming ``name``."""
    if value is None or not value.strip():
        return None
    upper = value.strip().upper()
    if not STORAGE_CLASS_NAME.fullmatch(upper):
        raise UsageError(
            f"{name} must be a storage class name (letters, digits and _, such as "
            f"STANDARD_IA or GLACIER), not {value!r}"
        )
    return upper


def restore_poll(value: str | None) -> tuple[float, ...]:
    """DMP_RESTORE_POLL: seconds between polls of the restores, comma-separated, the last
    repeated ("60,120,300,600" by default); anything else is a usage error."""
    if not value or not value.strip():
        return RESTORE_POLL
    try:
        delays = tuple(float(part) for part in value.split(","))
    except ValueError:
        delays = ()
    if not delays or any(not 0 <= delay < float("inf") for delay in delays):
        raise UsageError(
            f"DMP_RESTORE_POLL must be seconds separated by commas (60,120,300), not {value!r}"
        )
    return delays


def _size(env: Mapping[str, str], name: str) -> int | None:
    return whole_number(env, name, MIN_PART_SIZE, "a number of bytes", "bytes (5 MiB)")


def whole_number(
    env: Mapping[str, str],
    name: str,
    minimum: int = 1,
    what: str = "a whole number",
    unit: str = "",
) -> int | None:
    """The setting ``name`` as a whole number of at least ``minimum``, None if unset; a
    bad value is a usage error that names the setting."""
    raw = env.get(name)
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"{name} must be {what}, not {raw!r}") from None
    if value < minimum:
        least = f"{minimum} {unit}".rstrip()
        raise UsageError(f"{name} must be at least {least}, not {value}")
    return value


BROKER_SCHEMES = ("redis", "rediss", "unix")
REDIS_URLS = "redis://host:6379/0, rediss:// or unix://"


def broker_url(url: str | None, name: str = "DMP_BROKER_URL") -> str | None:
    """The broker URL if dmp can use it: Redis (the job records live there too, so
    another Celery broker will not do); anything else is a usage error naming the setting
    (and not the URL, which may hold a password)."""
    if url is None:
        return None
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in BROKER_SCHEMES:  # as redis-py reads them: lower case
        given = f"not {scheme}://..." if scheme else "and this one has no scheme"
        raise UsageError(f"{name} must be a Redis URL ({REDIS_URLS}), {given}")
    from redis.connection import parse_url  # only with a broker, which needs redis anyway

    try:
        parse_url(url)
    except ValueError as exc:  # a port that is not a number, and such
        raise UsageError(f"{name} must be a Redis URL ({REDIS_URLS}): {exc}") from None
    return url
