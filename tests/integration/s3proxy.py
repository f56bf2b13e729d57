"""A loopback HTTP proxy between dmp and an S3 server (moto's) that behaves worse than AWS.

Faults, each drawn for a request at random (seeded) with a given rate, or for every
request that names one key:

- ``slowdown``: 503 SlowDown, with S3's XML error body; the server never sees the request.
- ``internal``: 500 InternalError, likewise.
- ``reset-before``: the connection is reset before the request reaches the server.
- ``reset-after``: the server does the request, then the connection is reset: the client
  never sees the answer (an answer lost after the store acted).
- ``headers-cut``: the server does the request; the status line and the first half of the
  answer's headers are sent (Content-Length among the half left out), then the
  connection is closed: the HTTP client takes the headers as ended.
- ``cut``: a successful answer's full Content-Length is promised, half the body sent,
  then the connection closed (a network that drops mid-transfer). An answer with no body
  (a HEAD, a PUT) cannot be cut and goes through whole.
- ``latency``: the answer comes, whole, after a pause.

A fault may be aimed (``Aim``) instead of drawn at random: at the requests of one kind
(``request_kind``: ``head-bucket``, ``put``, ``create-multipart``, ``upload-part``,
``complete-multipart``, ``delete``, ``head``, ...), of one method, naming a key that
holds a substring, and only the first so many of them, so that a single fault is forced.
``arm`` aims anew (and counts from zero).

Apart from faults, ``conditional`` says what the store does with a conditional PUT
(``If-None-Match: *``): ``honour`` passes it on; ``overwrite`` strips the header before
forwarding (a store that accepts the header and overwrites); ``refuse`` answers 501
NotImplemented without forwarding (a store without conditional writes). With
``ignore_range``, a GET is forwarded without its Range header: the store answers 200 with
the whole object, as some S3-compatible stores do. With ``cold`` (a ``ColdStorage``), the
vault's objects (not its config, not its index) behave as in GLACIER: a HEAD says so, a GET
is refused (403 InvalidObjectState) until a restore (answered by the proxy, never seen by
the server) is released, and restores may be refused.

Threaded, with keep-alive connections from the client; one fresh connection to the
server a request (moto is slow, and a fresh connection is never a stale one).
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

FAULTS = ("slowdown", "internal", "reset-before", "reset-after", "cut", "latency")
# Beside FAULTS, not drawn unless asked for (the existing runs keep their mix).
MORE_FAULTS = ("headers-cut",)
CONDITIONAL_MODES = ("honour", "overwrite", "refuse")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
}
_ERRORS = {
    "slowdown": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
    "internal": (
        500,
        "Internal Server Error",
        "InternalError",
        "We encountered an internal error.",
    ),
    "cold": (
        403,
        "Forbidden",
        "InvalidObjectState",
        "The operation is not valid for the object's storage class",
    ),
    "restoring": (
        409,
        "Conflict",
        "RestoreAlreadyInProgress",
        "Object restore is already in progress",
    ),
    "denied": (403, "Forbidden", "AccessDenied", "Access Denied"),
    "refuse": (
        501,
        "Not Implemented",
        "NotImplemented",
        "A header you provided implies functionality that is not implemented.",
    ),
}


def request_kind(method: str, target: str) -> str:
    """What an S3 request (path-style) does: ``head-bucket``, ``list``, ``put``, ``get``,
    ``head``, ``delete``, ``create-multipart``, ``upload-part``, ``complete-multipart``,
    ``abort-multipart``, ``list-uploads``, ``copy``, or ``other``."""
    parts = urlsplit(target)
    query = parse_qs(parts.query, keep_blank_values=True)
    has_key = "/" in parts.path.strip("/")
    if not has_key:
        if method == "HEAD":
            return "head-bucket"
        if method == "GET":
            return "list-uploads" if "uploads" in query else "list"
        return "other"
    if method == "POST":
        if "restore" in query:
            return "restore"
        if "uploads" in query:
            return "create-multipart"
        return "complete-multipart" if "uploadId" in query else "other"
    if method == "PUT":
        return "upload-part" if "partNumber" in query else "put"
    if method == "DELETE":
        return "abort-multipart" if "uploadId" in query else "delete"
    return {"GET": "get", "HEAD": "head"}.get(method, "other")


@dataclass(frozen=True)
class Aim:
    """Which requests a fault is aimed at: every field given must match. ``first``: only
    the first so many matching requests meet it (0: all of them). ``fresh``: only requests
    on connections opened after it was armed, so that a killed client's requests still on
    their way through the proxy never meet an aim meant for the next one."""

    kind: str | None = None  # a request_kind
    method: str | None = None
    key: str | None = None  # a substring of the (unquoted) path
    first: int = 0
    fresh: bool = False

    def matches(self, method: str, target: str) -> bool:
        if self.method is not None and method != self.method:
            return False
        if self.kind is not None and request_kind(method, target) != self.kind:
            return False
        return self.key is None or self.key in unquote(urlsplit(target).path)


class ColdStorage:
    """The vault's objects in GLACIER, behind the proxy: each restore requested is held
    "ongoing" until ``release`` (or done at once with ``hold=False``); restores of keys
    holding a substring of ``refuse`` are refused (403 AccessDenied). ``log`` has every
    HEAD, GET and restore of a cold key, with when it came."""

    def __init__(self, hold: bool = True, refuse: tuple[str, ...] = ()) -> None:
        self.hold = hold
        self.refuse = refuse
        self.state: dict[str, str] = {}  # key (path) -> "ongoing" or "restored"
        self.restores: Counter[str] = Counter()  # restore requests by key
        self.log: list[tuple[float, str, str]] = []  # (time, request kind, key)
        self._lock = threading.Lock()

    @staticmethod
    def covers(path: str) -> bool:
        """A content object or a pack: not vault.json, not an index object."""
        parts = path.strip("/").split("/")
        return len(parts) > 2 and "index" not in parts and parts[-1] != "vault.json"

    def release(self, keys: tuple[str, ...] = ()) -> int:
        """The restores under way done (those of keys holding one of ``keys``, or all)."""
        with self._lock:
            done = [k for k, v in self.state.items() if v == "ongoing"]
            done = [k for k in done if not keys or any(part in k for part in keys)]
            for key in done:
                self.state[key] = "restored"
            return len(done)

    def expire(self) -> None:
        """Every restored copy gone: the objects are cold again, with no restore."""
        with self._lock:
            self.state.clear()

    def heads(self) -> list[tuple[float, str]]:
        with self._lock:
            return [(when, key) for when, kind, key in self.log if kind == "head"]

    def answer(self, method: str, path: str, kind: str) -> str | None:
        """What the proxy answers itself (an error kind, or "202"/"200" for a restore);
        None to forward the request."""
        with self._lock:
            self.log.append((time.monotonic(), kind, path))
            state = self.state.get(path)
            if kind == "restore":
                self.restores[path] += 1
                if any(part in path for part in self.refuse):
                    return "denied"
                if state == "ongoing":
                    return "restoring"
                if state == "restored":
                    return "200"
                self.state[path] = "ongoing" if self.hold else "restored"
                return "202"
            if kind == "get" and state != "restored":
                return "cold"
            return None

    def headers(self, path: str) -> list[tuple[str, str]]:
        """The headers a HEAD of the key gets: its class, and its restore."""
        with self._lock:
            state = self.state.get(path)
        said = [("x-amz-storage-class", "GLACIER")]
        if state == "ongoing":
            said.append(("x-amz-restore", 'ongoing-request="true"'))
        elif state == "restored":
            expiry = "Fri, 01 Jan 2100 00:00:00 GMT"
            said.append(("x-amz-restore", f'ongoing-request="false", expiry-date="{expiry}"'))
        return said


@dataclass
class Counts:
    """What the proxy saw: requests, faults by kind, and repeats of the same request
    (method and target): a repeat within a run is a retry by the client."""

    requests: int = 0
    faulted: Counter[str] = field(default_factory=Counter)
    seen: Counter[tuple[str, str]] = field(default_factory=Counter)
    conditional_puts: int = 0  # PUTs that carried If-None-Match: *
    puts: Counter[str] = field(default_factory=Counter)  # PUTs forwarded, by key
    log: list[tuple[str, str, str]] = field(default_factory=list)  # (method, target, fault)

    @property
    def retries(self) -> int:
        return sum(n - 1 for n in self.seen.values() if n > 1)

    def kinds(self) -> Counter[str]:
        """The requests seen, by kind (``request_kind``)."""
        counts: Counter[str] = Counter()
        for (method, target), n in self.seen.items():
            counts[request_kind(method, target)] += n
        return counts

    def figures(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "faulted": sum(self.faulted.values()),
            "by_kind": dict(sorted(self.faulted.items())),
            "retries": self.retries,
        }


class FaultProxy:
    """The proxy's settings and counts; ``fault_proxy`` runs it."""

    def __init__(
        self,
        upstream_url: str,
        *,
        rate: float = 0.0,
        kinds: tuple[str, ...] = FAULTS,
        seed: int = 0,
        key: str | None = None,
        conditional: str = "honour",
        latency: float = 0.2,
        only: tuple[str, ...] = (),
        aim: Aim | None = None,
        ignore_range: bool = False,
        cold: ColdStorage | None = None,
    ) -> None:
        unknown = set(kinds) - set(FAULTS + MORE_FAULTS)
        if unknown or conditional not in CONDITIONAL_MODES:
            raise ValueError(f"unknown fault kinds {unknown} or mode {conditional!r}")
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rate = rate
        self.kinds = kinds
        self.key = key
        self.conditional = conditional
        self.latency = latency
        self.only = only  # methods that may be faulted (all if empty)
        self.aim = aim
        self.ignore_range = ignore_range
        self.cold = cold
        self.aimed = 0  # requests the aim matched so far
        self.armed = 0  # how many times armed: the epoch a connection is opened in
        self.counts = Counts()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.url = ""

    def arm(self, aim: Aim | None, kinds: tuple[str, ...] | None = None, rate: float = 0.0) -> None:
        """Aim the faults anew (None: at random, at ``rate``), counting from zero."""
        with self._lock:
            self.aim, self.aimed, self.rate = aim, 0, rate
            self.armed += 1
            if kinds is not None:
                self.kinds = kinds

    def reset(self) -> Counts:
        """The counts so far, and a fresh start (between runs)."""
        with self._lock:
            counts, self.counts = self.counts, Counts()
        return counts

    def draw(self, method: str, target: str, opened: int = 0) -> str | None:
        """Count the request, and the fault it meets (None: none); ``opened``: the epoch
        its connection was opened in."""
        with self._lock:
            self.counts.requests += 1
            self.counts.seen[(method, target)] += 1
            if self.only and method not in self.only:
                return None
            if self.aim is not None:
                if not self.aim.matches(method, target):
                    return None
                if self.aim.fresh and opened < self.armed:
                    return None
                self.aimed += 1
                if self.aim.first and self.aimed > self.aim.first:
                    return None
            elif self.key is not None:
                if self.key not in unquote(target):
                    return None
            elif self._random.random() >= self.rate:
                return None
            return self._random.choice(self.kinds)

    def faulted(self, kind: str, method: str, target: str) -> None:
        with self._lock:
            self.counts.faulted[kind] += 1
            self.counts.log.append((method, target, kind))

    def note_put(self, target: str, conditional: bool) -> None:
        with self._lock:
            self.counts.puts[urlsplit(target).path] += 1
            self.counts.conditional_puts += conditional


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: FaultProxy
    opened: int
    timeout = 120  # an idle keep-alive connection ends in the end

    def _relay(self) -> None:
        proxy = self.proxy
        body = self._body()
        conditional = self.command == "PUT" and self.headers.get("If-None-Match") == "*"
        kind = proxy.draw(self.command, self.path, self.opened)
        if kind in ("slowdown", "internal"):
            proxy.faulted(kind, self.command, self.path)
            return self._error(kind)
        if kind == "reset-before":
            proxy.faulted(kind, self.command, self.path)
            return self._reset()
        if conditional and proxy.conditional == "refuse":
            return self._error("refuse")
        cold = proxy.cold
        key = unquote(urlsplit(self.path).path)
        if cold is not None and cold.covers(key):
            said = cold.answer(self.command, key, request_kind(self.command, self.path))
            if said in ("200", "202"):
                return self._empty(int(said))
            if said is not None:
                return self._error(said)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if conditional and proxy.conditional == "overwrite":
            headers = {k: v for k, v in headers.items() if k.lower() != "if-none-match"}
        if proxy.ignore_range and self.command == "GET":
            headers = {k: v for k, v in headers.items() if k.lower() != "range"}
        if body is not None:
            headers["Content-Length"] = str(len(body))
        if self.command == "PUT":
            proxy.note_put(self.path, conditional)
        status, reason, reply_headers, data = self._forward(headers, body)
        if kind == "reset-after":
            proxy.faulted(kind, self.command, self.path)
            return self._reset()
        if kind == "headers-cut":
            proxy.faulted(kind, self.command, self.path)
            return self._headers_cut(status, reason, reply_headers)
        if kind == "latency":
            proxy.faulted(kind, self.command, self.path)
            time.sleep(proxy.latency)
        cut = kind == "cut" and self.command == "GET" and len(data) > 1 and status < 300
        if cut:
            proxy.faulted("cut", self.command, self.path)
        self.send_response(status, reason)
        kept = HOP_BY_HOP if self.command == "HEAD" else HOP_BY_HOP | {"content-length"}
        for name, value in reply_headers:
            if name.lower() not in kept:
                self.send_header(name, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        if cold is not None and cold.covers(key) and self.command == "HEAD" and status == 200:
            for name, value in cold.headers(key):
                self.send_header(name, value)
        if cut:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if cut else data)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay

    def _body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def _forward(
        self, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        upstream = http.client.HTTPConnection(*self.proxy.upstream, timeout=120)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            reply = upstream.getresponse()
            data = reply.read()
            return reply.status, reply.reason, reply.getheaders(), data
        finally:
            upstream.close()

    def _error(self, kind: str) -> None:
        status, reason, code, message = _ERRORS[kind]
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
        ).encode()
        self.send_response(status, reason)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _empty(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _headers_cut(self, status: int, reason: str, headers: list[tuple[str, str]]) -> None:
        """The status line and the first half of the headers, Content-Length last (so
        left out), then the connection closed without the blank line that ends them."""
        kept = [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP | {"content-length"}]
        lines = [f"HTTP/1.1 {status} {reason}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in kept[: len(kept) // 2]]
        self.close_connection = True
        self.wfile.write("".join(lines).encode("latin-1"))
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_WR)

    def _reset(self) -> None:
        """Close with a TCP reset (SO_LINGER 0), not a polite FIN."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def setup(self) -> None:
        super().setup()
        self.opened = self.proxy.armed  # the epoch this connection is opened in

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError, OSError):
            self.close_connection = True  # the client went away (or was reset by us)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # keep-alive connections do not hold up the shutdown
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that vanished is what this proxy is for


@contextmanager
def fault_proxy(upstream_url: str, **settings: Any) -> Iterator[FaultProxy]:
    """A FaultProxy on a free loopback port in front of ``upstream_url``, stopped after."""
    proxy = FaultProxy(upstream_url, **settings)
    handler = type("Handler", (_Handler,), {"proxy": proxy})
    server = _Server(("127.0.0.1", 0), handler)
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def spoiling_proxy(upstream_url: str, mode: str = "cut") -> Iterator[tuple[str, _Spoiled]]:
    """Every GET's body cut short: (the proxy's URL, an object whose ``spoiled`` counts
    the answers cut)."""
    with fault_proxy(upstream_url, rate=1.0, kinds=(mode,), only=("GET",)) as proxy:
        yield proxy.url, _Spoiled(proxy)


class _Spoiled:
    def __init__(self, proxy: FaultProxy) -> None:
        self._proxy = proxy

    @property
    def spoiled(self) -> int:
        return self._proxy.counts.faulted["cut"]
