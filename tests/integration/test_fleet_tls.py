"""The fleet over TLS (`rediss://`) with a password, on loopback with a throwaway CA."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.fleet import run, worker
from tests.servers import free_port, redis_server

pytestmark = pytest.mark.integration


def make_certificates(directory: Path) -> None:
    """A CA and a server certificate for 127.0.0.1, valid for a day."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "1", "-subj", "/CN=dmp test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
            "server.csr", "-subj", "/CN=127.0.0.1")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "san.ext")


def test_tls_with_password(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    make_certificates(certs)
    data = tmp_path / "work" / "data"
    data.mkdir(parents=True)
    for i in range(30):
        (data / f"f{i}").write_bytes(b"tls %d\n" % i)
    port = free_port()
    secret = "tls-pa55word"
    # redis_server() also opens a plain port, which the test leaves alone.
    tls = ["--tls-port", str(port), "--tls-cert-file", str(certs / "server.pem"),
           "--tls-key-file", str(certs / "server.key"), "--tls-ca-cert-file",
           str(certs / "ca.pem"), "--tls-auth-clients", "no", "--requirepass", secret]
    with redis_server(*tls):
        url = (f"rediss://:{secret}@127.0.0.1:{port}/0?ssl_cert_reqs=required"
               f"&ssl_ca_certs={certs / 'ca.pem'}")
        work = data.parent
        args = ["manifest", "--create", "--dir", "data"]
        with worker(url, "tls", tmp_path):
            distributed = run(*args, cwd=work, broker_url=url)
        embedded = run(*args, cwd=work, broker_url=None)
        plain = run(*args, cwd=work, broker_url=f"redis://:{secret}@127.0.0.1:{port}/0")
    assert distributed.returncode == 0, distributed.stderr
    assert (distributed.stdout, distributed.stderr) == (embedded.stdout, embedded.stderr)
    assert plain.returncode == 1
    assert plain.stderr.startswith(b"dmp: cannot reach the broker at redis://:**@127.0.0.1:")
    assert secret.encode() not in plain.stderr + (tmp_path / "tls.log").read_bytes()
