"""Clients made from dmp's settings and the standard AWS_* variables."""

from __future__ import annotations

import pytest

from dmp_cli.aws import TRANSFER_CONCURRENCY, s3_client
from dmp_cli.errors import StoreError
from dmp_cli.options import StoreSpec


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_PROFILE",
        "AWS_RETRY_MODE",
        "AWS_MAX_ATTEMPTS",
        "AWS_REQUEST_CHECKSUM_CALCULATION",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def test_standard_retries_and_pool_sized_to_concurrency() -> None:
    client = s3_client(StoreSpec("s3://v", concurrency=24))
    assert client.meta.config.retries["mode"] == "standard"
    assert client.meta.config.max_pool_connections == 24 + TRANSFER_CONCURRENCY


def test_user_retry_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "7")
    retries = s3_client(StoreSpec("s3://v")).meta.config.retries
    assert retries["mode"] == "adaptive"
    assert retries["total_max_attempts"] == 7


def test_endpoint_option_and_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert s3_client(StoreSpec("s3://v")).meta.endpoint_url == "http://127.0.0.1:9"
    client = s3_client(StoreSpec("s3://v", endpoint_url="http://127.0.0.1:10"))
    assert client.meta.endpoint_url == "http://127.0.0.1:10"


@pytest.mark.parametrize("value", ["when_required", "when_supported"])
def test_checksum_calculation_follows_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", value)
    assert s3_client(StoreSpec("s3://v")).meta.config.request_checksum_calculation == value


def test_unknown_profile_is_one_line() -> None:
    with pytest.raises(StoreError, match=r"AWS configuration: .*nosuch"):
        s3_client(StoreSpec("s3://v", profile="nosuch"))
