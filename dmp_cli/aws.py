"""Sessions and clients: the one place that turns dmp's settings into boto3 objects.

The global options (``--profile``, ``--region``, ``--endpoint-url``) win; otherwise boto3
reads the standard ``AWS_*`` variables and the shared config files itself, exactly as the
AWS CLI does (``AWS_ENDPOINT_URL``, ``AWS_MAX_ATTEMPTS``,
``AWS_REQUEST_CHECKSUM_CALCULATION=when_required`` for stores that reject the default CRC
checksums). So only what the user set is passed on: anything more would override them.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError

from dmp_cli.errors import StoreError
from dmp_cli.options import StoreSpec

# Connections a process needs besides the per-file threads: s3transfer's own workers.
TRANSFER_CONCURRENCY = 10
DEFAULT_CONCURRENCY = 16


def make_session(profile: str | None = None, region: str | None = None) -> boto3.Session:
    try:
        return boto3.Session(profile_name=profile, region_name=region)
    except BotoCoreError as exc:  # ProfileNotFound and friends: a bad setting, said once
        raise StoreError(f"AWS configuration: {exc}") from exc


def retry_mode(session: boto3.Session) -> str:
    """``standard`` unless the user chose a mode (the variable or the profile's retry_mode):
    the ``legacy`` default does not back off on SlowDown as well."""
    chosen = os.environ.get("AWS_RETRY_MODE")
    if not chosen:
        chosen = session._session.get_scoped_config().get("retry_mode")
    return str(chosen or "standard")


def client_config(session: boto3.Session, concurrency: int) -> BotoConfig:
    # request_checksum_calculation is deliberately not set: botocore reads it from
    # AWS_REQUEST_CHECKSUM_CALCULATION or the profile, and setting it would override them.
    retries: Any = {"mode": retry_mode(session)}
    return BotoConfig(
        retries=retries,
        max_pool_connections=concurrency + TRANSFER_CONCURRENCY,
    )


def s3_client(spec: StoreSpec) -> Any:
    """An S3 client for a run's stores (made again in each process that uses them)."""
    session = make_session(spec.profile, spec.region)
    concurrency = spec.concurrency or DEFAULT_CONCURRENCY
    kwargs: dict[str, Any] = {"config": client_config(session, concurrency)}
    if spec.endpoint_url:
        kwargs["endpoint_url"] = spec.endpoint_url
    try:
        return session.client("s3", **kwargs)
    except (BotoCoreError, ValueError) as exc:
        raise StoreError(f"cannot make an S3 client: {exc}") from exc
