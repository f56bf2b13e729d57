"""--vault --json says each present object's storage class and restore, whichever way the
run planned (a HEAD per checksum, or a listing of the vault), embedded and on a fleet
worker, on moto's S3 server; a file:// vault has no classes. The requests are counted at
the fault proxy: a listing asks nothing more of the objects it saw.

moto lists every object's StorageClass but not its restore (it ignores ListObjectsV2's
OptionalObjectAttributes), and these tests restore nothing on it: a small proxy between
the fault proxy and moto (``Restores``) plays AWS's part, saying the restores it is told
of in a HEAD's x-amz-restore and, when asked, in a listing's RestoreStatus; or refusing
the listing's question, as a store without it does.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from dmp_cli.layout import digest_key
from dmp_cli.manifest import Entry, format_line
from dmp_cli.packs.config import CONFIG_KEY, VaultConfig
from tests.integration.fleet import run, worker
from tests.integration.s3proxy import FaultProxy, fault_proxy, request_kind
from tests.integration.vaultkit import dmp, make_tree, sha
from tests.servers import Service, dmp_env, moto_client

pytestmark = pytest.mark.integration

KiB, MiB = 1 << 10, 1 << 20
EXPIRY = "2100-01-01T00:00:00Z"  # the restored copies' expiry, as --json says it
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


# ------------------------------------------------------------------ AWS's restores


@dataclass
class Restores:
    """What the proxy says of restores: ``restored`` and ``ongoing`` keys (the bucket's
    keys); ``listing``: "honour" says them in a listing asked for them, "refuse" answers
    such a listing 400 InvalidArgument, "ignore" passes it on (moto's own answer)."""

    restored: set[str] = field(default_factory=set)
    ongoing: set[str] = field(default_factory=set)
    listing: str = "honour"
    refused: int = 0  # listings refused

    def header(self, key: str) -> str | None:
        if key in self.ongoing:
            return 'ongoing-request="true"'
        if key in self.restored:
            return 'ongoing-request="false", expiry-date="Fri, 01 Jan 2100 00:00:00 GMT"'
        return None

    def status(self, key: str) -> str:
        if key in self.ongoing:
            return "<RestoreStatus><IsRestoreInProgress>true</IsRestoreInProgress></RestoreStatus>"
        if key in self.restored:
            return (
                "<RestoreStatus><IsRestoreInProgress>false</IsRestoreInProgress>"
                "<RestoreExpiryDate>2100-01-01T00:00:00.000Z</RestoreExpiryDate></RestoreStatus>"
            )
        return ""


_CONTENTS = re.compile(rb"<Contents>(.*?)</Contents>", re.S)
_KEY = re.compile(rb"<Key>(.*?)</Key>", re.S)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: str
    restores: Restores

    def _relay(self) -> None:
        restores = self.restores
        kind = request_kind(self.command, self.path)
        asked = "x-amz-optional-object-attributes" in {k.lower() for k in self.headers}
        if kind == "list" and asked and restores.listing == "refuse":
            restores.refused += 1
            body = (
                b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>InvalidArgument</Code>"
                b"<Message>Invalid attribute name specified.</Message></Error>"
            )
            self.send_response(400, "Bad Request")
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        length = int(self.headers.get("Content-Length") or 0)
        sent = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        where = urlsplit(self.upstream)
        connection = http.client.HTTPConnection(where.netloc, timeout=60)
        try:
            connection.request(self.command, self.path, body=sent, headers=headers)
            reply = connection.getresponse()
            data = reply.read()
            status, reason, reply_headers = reply.status, reply.reason, reply.getheaders()
        finally:
            connection.close()
        key = unquote(urlsplit(self.path).path).strip("/").partition("/")[2]
        if kind == "list" and asked and restores.listing == "honour" and status == 200:
            data = _CONTENTS.sub(lambda m: self._with_status(m[0], m[1]), data)
        self.send_response(status, reason)
        head = self.command == "HEAD"  # its Content-Length is the object's: kept
        for name, value in reply_headers:
            if name.lower() not in HOP_BY_HOP | (set() if head else {"content-length"}):
                self.send_header(name, value)
        said = restores.header(key) if head and status == 200 else None
        if said is not None:
            self.send_header("x-amz-restore", said)
        if not head:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _with_status(self, whole: bytes, inside: bytes) -> bytes:
        found = _KEY.search(inside)
        status = self.restores.status(found[1].decode()) if found else ""
        return whole.replace(b"</Contents>", status.encode() + b"</Contents>")

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _relay

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@contextmanager
def restores_proxy(upstream: str, restores: Restores) -> Iterator[str]:
    """A proxy to ``upstream`` that says ``restores``; its URL."""
    handler = type("Handler", (_Handler,), {"upstream": upstream, "restores": restores})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# ------------------------------------------------------------------ the site


@dataclass
class Site:
    work: Path
    bucket: str
    s3: Any
    direct: dict[str, str]  # reaches moto itself: for archiving
    proxy: FaultProxy  # counts what --vault asks (dmp -> fault proxy -> Restores -> moto)
    restores: Restores
    files: dict[str, bytes]
    classes: dict[str, str]  # each file's class, as archived (by name)

    def key(self, name: str) -> str:
        return f"vault/{digest_key(sha(self.files[name]))}"

    def vault(self, planning: str, *args: str, json_mode: bool = True, **env: str) -> Any:
        """`dmp [--json] manifest --vault` through the proxies, planned as asked: its
        rows by path (with --json), the run, and the requests it sent."""
        self.proxy.reset()
        run_env = {
            **self.direct,
            "AWS_ENDPOINT_URL": self.proxy.url,
            "DMP_VAULT_PLANNING": planning,
            **env,
        }
        flags = ("--json",) if json_mode else ()
        result = dmp(
            *flags, "-v", "manifest", "--vault", "-m", "manifest.sha256", *args,
            cwd=self.work, env=run_env,
        )  # fmt: skip
        counts = self.proxy.reset()
        return rows_of(result) if json_mode else None, result, counts


def rows_of(result: CompletedProcess[bytes]) -> dict[str, dict[str, Any]]:
    records = [json.loads(line) for line in result.stdout.splitlines()]
    return {r["path"]: r for r in records if r.get("type") == "file"}


def storage(row: dict[str, Any]) -> tuple[Any, ...]:
    """What a row says of its object's class and restore (absent keys as "-")."""
    return tuple(row.get(k, "-") for k in ("storage_class", "restore", "restore_expiry"))


def tree() -> tuple[dict[str, bytes], dict[str, str]]:
    """Files and the class each is archived in: standard, GLACIER (one to be restored,
    one being restored), DEEP_ARCHIVE, STANDARD_IA; and a copy of a GLACIER file."""
    classes = {
        "std/a": "STANDARD",
        "std/b": "STANDARD",
        "cold/g1": "GLACIER",
        "cold/g-restored": "GLACIER",
        "cold/g-ongoing": "GLACIER",
        "cold/deep": "DEEP_ARCHIVE",
        "warm/ia": "STANDARD_IA",
    }
    files = {name: os.urandom(100 + i * 37) for i, name in enumerate(classes)}
    files["copy/of-g1"] = files["cold/g1"]
    classes["copy/of-g1"] = "GLACIER"
    return files, classes


def expected(site: Site) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    for name, cls in site.classes.items():
        if name.startswith("copy/"):  # answered from the first entry of its content
            out[name] = ("-", "-", "-")
        elif name == "cold/g-restored":
            out[name] = (cls, "restored", EXPIRY)
        elif name == "cold/g-ongoing":
            out[name] = (cls, "ongoing", "-")
        else:
            out[name] = (cls, None, "-")
    return out


def archive(work: Path, env: dict[str, str], files: dict[str, bytes], *args: str) -> None:
    """`dmp manifest --archive` of ``files`` alone (a manifest of them), in a class."""
    listed = work / "part.sha256"
    listed.write_bytes(b"".join(format_line(Entry(sha(d), name)) for name, d in files.items()))
    done = dmp("manifest", "--archive", "-m", str(listed), *args, cwd=work, env=env)
    assert done.returncode == 0, done.stderr
    listed.unlink()


@pytest.fixture
def site(s3_server: Service, tmp_path: Path) -> Iterator[Site]:
    s3 = moto_client(s3_server.url)
    bucket = f"dmp-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=bucket)
    work = tmp_path / "work"
    work.mkdir()
    files, classes = tree()
    make_tree(work, files)
    direct = dmp_env(AWS_ENDPOINT_URL=s3_server.url, DMP_VAULT=f"s3://{bucket}/vault")
    by_class: dict[str, dict[str, bytes]] = {}
    for name, cls in classes.items():
        by_class.setdefault(cls, {})[name] = files[name]
    for cls, some in by_class.items():
        archive(work, direct, some, *(() if cls == "STANDARD" else ("--storage-class", cls)))
    restores = Restores()
    with restores_proxy(s3_server.url, restores) as url, fault_proxy(url) as proxy:
        site = Site(work, bucket, s3, direct, proxy, restores, files, classes)
        restores.restored.add(site.key("cold/g-restored"))
        restores.ongoing.add(site.key("cold/g-ongoing"))
        yield site
    s3.close()


# ------------------------------------------------------------------ embedded


def test_by_head_each_row_says_what_the_head_said(site: Site) -> None:
    rows, result, counts = site.vault("head")
    assert result.returncode == 0, result.stderr
    assert {path: storage(row) for path, row in rows.items()} == expected(site)
    assert all(row["stored"] == "plain" for path, row in rows.items() if "copy" not in path)
    kinds = counts.kinds()
    assert kinds["head"] == len(set(map(sha, site.files.values()))), kinds
    assert kinds["list"] == 0, kinds


def test_by_listing_the_rows_are_the_heads_and_no_object_is_asked_about(site: Site) -> None:
    by_head, _, _ = site.vault("head")
    rows, result, counts = site.vault("list")
    assert result.returncode == 0, result.stderr
    assert b"planning by listing" in result.stderr
    assert rows == by_head
    kinds = counts.kinds()
    assert kinds["head"] == 0, kinds  # none for a standard object, none for a cold one
    # The estimate's page and a listing a prefix that holds a checksum, no more.
    prefixes = {digest_key(sha(data))[:2] for data in site.files.values()}
    assert kinds["list"] <= 1 + len(prefixes), kinds
    assert sum(kinds.values()) == kinds["list"] + kinds["get"] + kinds["head-bucket"], kinds


def test_a_store_that_will_not_list_restores_is_asked_once_and_says_them_unknown(
    site: Site,
) -> None:
    site.restores.listing = "refuse"
    rows, result, counts = site.vault("list")
    assert result.returncode == 0, result.stderr
    want = expected(site)
    for name in ("cold/g1", "cold/g-restored", "cold/g-ongoing", "cold/deep"):
        want[name] = (site.classes[name], "unknown", "-")
    assert {path: storage(row) for path, row in rows.items()} == want
    kinds = counts.kinds()
    assert kinds["head"] == 0, kinds
    # Refused once, by the first listing of the process: then asked no more.
    assert site.restores.refused == 1
    prefixes = {digest_key(sha(data))[:2] for data in site.files.values()}
    assert kinds["list"] <= 2 + len(prefixes), kinds


def test_plain_output_is_as_it_was(site: Site) -> None:
    for planning in ("head", "list"):
        _, result, _ = site.vault(planning, json_mode=False)
        assert result.returncode == 0, result.stderr
        lines = sorted(result.stdout.decode().splitlines())
        assert lines == sorted(f"{name}: in the vault" for name in site.files), planning


def test_a_directory_vault_has_no_classes(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    vault.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    files = {"a": b"alpha\n", "b": os.urandom(5000)}
    make_tree(work, files)
    env = dmp_env(DMP_VAULT=f"file://{vault}")
    assert dmp("manifest", "--archive", "-m", "manifest.sha256", cwd=work, env=env).returncode == 0
    for planning in ("head", "list"):
        result = dmp(
            "--json", "manifest", "--vault", "-m", "manifest.sha256",
            cwd=work, env={**env, "DMP_VAULT_PLANNING": planning},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        rows = rows_of(result)
        assert {p: storage(r) for p, r in rows.items()} == {
            "a": (None, None, "-"),
            "b": (None, None, "-"),
        }, planning


def test_a_packed_file_says_its_packs_class_at_a_head_a_pack(
    s3_server: Service, tmp_path: Path
) -> None:
    s3 = moto_client(s3_server.url)
    bucket = f"dmp-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=bucket)
    config = VaultConfig(pack_below=64 * KiB, pack_target=32 * MiB).encode()
    s3.put_object(Bucket=bucket, Key=f"vault/{CONFIG_KEY}", Body=config)
    work = tmp_path / "work"
    work.mkdir()
    files = {f"small/s{i:02}": os.urandom(100 + i) for i in range(20)}
    files["big"] = os.urandom(100 * KiB)  # a plain object
    make_tree(work, files)
    env = dmp_env(AWS_ENDPOINT_URL=s3_server.url, DMP_VAULT=f"s3://{bucket}/vault")
    archived = dmp(
        "manifest", "--archive", "-m", "manifest.sha256", "--storage-class", "DEEP_ARCHIVE",
        cwd=work, env=env,
    )  # fmt: skip
    assert archived.returncode == 0, archived.stderr
    with fault_proxy(s3_server.url) as proxy:
        for planning in ("head", "list"):
            proxy.reset()
            run_env = {**env, "AWS_ENDPOINT_URL": proxy.url, "DMP_VAULT_PLANNING": planning}
            result = dmp(  # a process each, as each command is: none knows the pack yet
                "--json", "manifest", "--vault", "-m", "manifest.sha256",
                cwd=work, env=run_env, subprocess=True,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            rows = rows_of(result)
            assert all(storage(r) == ("DEEP_ARCHIVE", None, "-") for r in rows.values()), rows
            assert {r["stored"] for p, r in rows.items() if p != "big"} == {"packed"}
            heads = [t for (m, t), n in proxy.reset().seen.items() for _ in range(n) if m == "HEAD"]
            pack_heads = [t for t in heads if "/packs/" in t]
            assert len(pack_heads) == 1, heads  # one pack, asked about once
    s3.close()


# ------------------------------------------------------------------ on the fleet


@pytest.mark.parametrize(
    ("planning", "listing"),
    [("head", "honour"), ("list", "honour"), ("list", "refuse")],
    ids=["head", "list", "list-restores-refused"],
)
def test_a_fleet_worker_gives_the_same_rows(
    site: Site, redis: Service, tmp_path: Path, planning: str, listing: str
) -> None:
    site.restores.listing = listing
    embedded, _, _ = site.vault(planning)
    if listing == "refuse":
        assert {row.get("restore") for row in embedded.values()} >= {"unknown"}
    logdir = tmp_path / "logs"
    logdir.mkdir()
    env: dict[str, Any] = {
        **site.direct,
        "AWS_ENDPOINT_URL": site.proxy.url,
        "DMP_VAULT_PLANNING": planning,
    }
    name = f"w-{uuid.uuid4().hex[:8]}"
    with worker(redis.url, name, logdir, **env):
        site.proxy.reset()
        result = run(
            "--json", "-v", "manifest", "--vault", "-m", "manifest.sha256",
            cwd=site.work, broker_url=redis.url, **env,
        )  # fmt: skip
        counts = site.proxy.reset()
    assert result.returncode == 0, result.stderr
    assert b"Traceback" not in result.stderr
    assert rows_of(result) == embedded
    log = (logdir / f"{name}.log").read_text()
    assert "dmp.head_batch" in log  # the rows were the worker's
    if planning == "list":
        assert "dmp.list_batch" in log  # and so was the listing
    kinds = counts.kinds()
    if planning == "list":
        assert kinds["head"] == 0, kinds
        if listing == "refuse":  # once by the embedded run, once by the worker
            assert site.restores.refused == 2
    else:
        assert kinds["head"] == len(set(map(sha, site.files.values()))), kinds
