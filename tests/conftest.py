from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import Service, moto_server, redis_server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Service]:
    """moto's S3 server as a real HTTP endpoint, shared by the session's tests."""
    with moto_server() as server:
        yield server


@pytest.fixture(scope="session")
def redis() -> Iterator[Service]:
    """A real redis-server on a free loopback port, shared by the session's tests."""
    with redis_server() as server:
        yield server
