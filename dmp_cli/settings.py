"""The settings a run is made with: global options first, then DMP_* variables, then defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from dmp_cli.errors import UsageError

DEFAULT_VAULT = "s3://etx-dmp-vault/object"


@dataclass(frozen=True)
class Settings:
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    jobs: int | None = None
    vault: str = DEFAULT_VAULT
    archive_default: str | None = None
    broker_url: str | None = None

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
        )


BROKER_SCHEMES = ("redis", "rediss", "unix")


def broker_url(url: str | None, name: str = "DMP_BROKER_URL") -> str | None:
    """The broker URL if dmp can use it: Redis (the job records live there too, so
    another Celery broker will not do); anything else is a usage error naming the setting
    (and not the URL, which may hold a password)."""
    if url is None:
        return None
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in BROKER_SCHEMES:  # as redis-py reads them: lower case
        given = f"not {scheme}://..." if scheme else "and this one has no scheme"
        raise UsageError(
            f"{name} must be a Redis URL (redis://host:6379/0, rediss:// or unix://), {given}"
        )
    return url
