from __future__ import annotations

import sys
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from tests.servers import Service, moto_server, redis_server

# Events of starting another program; os.fork (the embedded executor's pool) is not one.
_PROCESS_EVENTS = frozenset({"subprocess.Popen", "os.posix_spawn", "os.exec", "os.system"})
_unit_test: str | None = None  # the test without the integration mark that is running


def _no_process_in_a_unit_test(event: str, args: tuple[Any, ...]) -> None:
    if _unit_test is not None and event in _PROCESS_EVENTS:
        raise RuntimeError(
            f"{_unit_test} starts a process ({event}): mark it @pytest.mark.integration"
        )


sys.addaudithook(_no_process_in_a_unit_test)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
    """A test without the integration mark may start no process, in its fixtures either."""
    global _unit_test
    _unit_test = None if item.get_closest_marker("integration") else item.nodeid
    try:
        return (yield)
    finally:
        _unit_test = None


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
