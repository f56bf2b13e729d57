"""A loopback HTTP proxy between dmp and an S3 server that spoils its answers.

Mode ``cut``: every GET of an object answers with its full Content-Length but only half of
the body, then closes the connection (a network that drops mid-transfer). Everything else
goes through untouched.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: tuple[str, int] = ("127.0.0.1", 0)
    mode = "cut"
    spoiled = 0

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            reply = upstream.getresponse()
            data = reply.read()
        finally:
            upstream.close()
        cut = self.mode == "cut" and self.command == "GET" and len(data) > 1 and reply.status < 300
        self.send_response(reply.status, reply.reason)
        kept = HOP_BY_HOP if self.command == "HEAD" else HOP_BY_HOP | {"content-length"}
        for key, value in reply.getheaders():
            if key.lower() not in kept:
                self.send_header(key, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        if cut:
            self.send_header("Connection", "close")
        self.end_headers()
        if cut:
            type(self).spoiled += 1
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@contextmanager
def spoiling_proxy(upstream_url: str, mode: str = "cut") -> Iterator[tuple[str, type[_Handler]]]:
    """A proxy on a free loopback port in front of ``upstream_url``: (its URL, its counts)."""
    parts = urlsplit(upstream_url)
    handler = type(
        "Handler",
        (_Handler,),
        {"upstream": (parts.hostname, parts.port), "mode": mode, "spoiled": 0},
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
