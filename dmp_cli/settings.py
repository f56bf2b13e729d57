"""The settings a run is made with: global options first, then DMP_* variables, then defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

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
            broker_url=env.get("DMP_BROKER_URL") or None,
        )
