"""moto's S3 server with a vault already full: ``python -m tests.bulkmoto PORT BUCKET COUNT``.

Putting 100,000 objects into moto over HTTP takes minutes (about 400 requests a second);
put into its backend in the server's own process, before the first request, they take
about 90 µs each. The objects are the vault's for ``bulk_content(i)``, i < COUNT, under
the prefix ``object``; the server prints ``ready`` on stdout once they are all in.
A real server all the same: every request the tests count goes over HTTP.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from bisect import bisect_left
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dmp_cli.layout import digest_key
from tests.servers import REPO, Service, free_port, stop

ACCOUNT = "123456789012"  # moto's default account, the one its test credentials reach
PREFIX = "object"


def bulk_content(i: int) -> bytes:
    return b"bulk %d\n" % i


def bulk_digest(i: int) -> str:
    return hashlib.sha256(bulk_content(i)).hexdigest()


def serve(port: int, bucket: str, count: int, indexed: bool = False) -> None:
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    backend = s3_backends[ACCOUNT]["aws"]
    backend.create_bucket(bucket, "us-east-1")
    for i in range(count):
        key = f"{PREFIX}/{digest_key(bulk_digest(i))}"
        backend.put_object(bucket, key, bulk_content(i))
    if indexed:
        _index(backend, bucket)
    print("ready", flush=True)
    while True:  # until stopped
        time.sleep(3600)


def _index(backend: Any, bucket: str) -> None:
    """moto lists a prefix by reading every key of the bucket, for each request (S3 does
    not): for the bench, the keys of ``bucket`` (which stay as they are) are listed from
    a sorted index instead, the answer otherwise moto's own."""
    from moto.s3.models import S3Backend

    keys = backend.get_bucket(bucket).keys
    names = sorted(keys.keys())
    original = S3Backend.list_objects

    def list_objects(
        self: Any, found: Any, prefix: Any, delimiter: Any, marker: Any = None, max_keys: Any = None
    ) -> Any:
        if found.name != bucket or not prefix or delimiter or marker or max_keys is not None:
            return original(self, found, prefix, delimiter, marker, max_keys)
        start = bisect_left(names, prefix)
        end = bisect_left(names, prefix + "\U0010ffff")
        return [keys[name] for name in names[start:end]], [], False, None

    S3Backend.list_objects = list_objects  # type: ignore[method-assign]


@contextmanager
def bulk_moto(
    bucket: str, count: int, timeout: float = 120.0, indexed: bool = False
) -> Iterator[Service]:
    """The server, in a process of its own, once its ``count`` objects are in; stopped
    after. ``indexed``: LIST requests answered from a sorted index (``_index``)."""
    port = free_port()
    args = [str(port), bucket, str(count), *(["indexed"] if indexed else [])]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.bulkmoto", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while line.strip() != b"ready":  # moto says a line of its own first
            line = proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                raise RuntimeError(f"the bulk moto server did not start ({line!r})")
        yield Service(f"http://127.0.0.1:{port}", port, proc)
    finally:
        stop(proc)
        if proc.stdout is not None:
            proc.stdout.close()


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), indexed="indexed" in sys.argv[4:])
