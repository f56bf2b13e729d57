"""DMP_* settings: read once, validated where read, carried to the workers in StoreSpec."""

from __future__ import annotations

import pytest

from dmp_cli.errors import UsageError
from dmp_cli.options import Options, StoreSpec, Work
from dmp_cli.rules import Command
from dmp_cli.runs.transfers import transfer_stores
from dmp_cli.settings import Settings, store_settings


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, {"conditional_put": "auto", "multipart_threshold": None}),
        ({"DMP_CONDITIONAL_PUT": "OFF"}, {"conditional_put": "off"}),
        ({"DMP_CONDITIONAL_PUT": "on"}, {"conditional_put": "on"}),
        ({"DMP_MULTIPART_THRESHOLD": str(5 << 20)}, {"multipart_threshold": 5 << 20}),
    ],
    ids=["defaults", "off", "on", "threshold"],
)
def test_store_settings(env: dict[str, str], expected: dict[str, object]) -> None:
    got = store_settings(env)
    assert {k: got[k] for k in expected} == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DMP_CONDITIONAL_PUT": "yes"}, "DMP_CONDITIONAL_PUT must be auto, on or off, not 'yes'"),
        ({"DMP_MULTIPART_CHUNKSIZE": "8M"}, "DMP_MULTIPART_CHUNKSIZE must be a number of bytes"),
        ({"DMP_MULTIPART_THRESHOLD": "1024"}, "DMP_MULTIPART_THRESHOLD must be at least"),
    ],
    ids=["conditional", "not-a-number", "too-small"],
)
def test_bad_store_settings_are_usage_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        store_settings(env)
    assert message in str(caught.value) and caught.value.exit_code == 2


def test_store_settings_travel_to_workers() -> None:
    settings = Settings(vault="s3://v/o", conditional_put="off", multipart_threshold=6 << 20)
    spec, _ = transfer_stores(Command.ARCHIVE, settings, Options())
    travelled = Work.of("upload", spec, Options()).spec()
    assert travelled is not None
    assert (travelled.conditional_put, travelled.multipart_threshold) == ("off", 6 << 20)


def test_a_spec_made_elsewhere_is_validated_too() -> None:
    with pytest.raises(UsageError, match="DMP_CONDITIONAL_PUT"):
        StoreSpec("s3://v/o", conditional_put="sometimes").validated()
