from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from tests.servers import Service, free_port, moto_server, redis_server, stop, wait_for_port

# Events of starting another program; os.fork (the embedded executor's pool) is not one.
_PROCESS_EVENTS = frozenset({"subprocess.Popen", "os.posix_spawn", "os.exec", "os.system"})
_unit_test: str | None = None  # the test without the integration mark that is running


def _no_process_in_a_unit_test(event: str, args: tuple[Any, ...]) -> None:
    if _unit_test is not None and event in _PROCESS_EVENTS:
        raise RuntimeError(
            f"{_unit_test} starts a process ({event}): mark it @pytest.mark.integration"
        )


sys.addaudithook(_no_process_in_a_unit_test)


def _default_signals() -> None:
    """The suite's processes start with SIGINT and SIGHUP at their defaults, as from a
    terminal, whatever started pytest: a job in the background of a shell script has
    SIGINT ignored, and one under nohup SIGHUP, and every child would inherit that,
    which the tests of interruption (and the runs that ignore SIGHUP on purpose) would
    misread."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)


_default_signals()


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


@pytest.fixture(scope="module")
def strict_s3() -> Iterator[tuple[str, dict[str, str]]]:
    """A moto server that checks IAM: after the setup requests, a user with no policy
    gets AccessDenied. Yields its URL and that user's credentials."""
    import boto3

    port = free_port()
    # The three setup requests below go unchecked; every later one is checked.
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(port, proc)
        url = f"http://127.0.0.1:{port}"
        session = boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        session.client("s3", endpoint_url=url).create_bucket(Bucket="locked")
        iam = session.client("iam", endpoint_url=url)
        iam.create_user(UserName="nobody")
        key = iam.create_access_key(UserName="nobody")["AccessKey"]
        yield (
            url,
            {
                "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            },
        )
    finally:
        stop(proc)
