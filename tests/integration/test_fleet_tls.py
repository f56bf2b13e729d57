"""The fleet over TLS (`rediss://`) with a password, on loopback with a throwaway CA."""

from __future__ import annotations

import ipaddress
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.fleet import run, worker
from tests.servers import free_port, redis_server

pytestmark = pytest.mark.integration


def make_certificates(directory: Path, proper: bool = True) -> None:
    """A CA and a server certificate for 127.0.0.1, valid for a day (with `cryptography`,
    which moto brings, so that no openssl command is needed): ``proper``, with the key
    identifiers and usages that strict checking (Python 3.13's default) requires; else
    with basic constraints and the address alone, as many a hand-made CA's are."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def certificate(
        subject: x509.Name,
        key: ec.EllipticCurvePrivateKey,
        issuer: x509.Name,
        signer: ec.EllipticCurvePrivateKey,
        ca: bool,
        authority: x509.SubjectKeyIdentifier | None = None,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                False,
            )
        if proper:
            identifier = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
            builder = (
                builder.add_extension(identifier, False)
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                        authority or identifier
                    ),
                    False,
                )
                .add_extension(usage(ca), True)
            )
            if not ca:
                builder = builder.add_extension(
                    x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False
                )
        return builder.sign(signer, hashes.SHA256())

    def usage(ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=not ca,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=ca,
            crl_sign=ca,
            encipher_only=False,
            decipher_only=False,
        )

    def save(name: str, data: bytes) -> None:
        (directory / name).write_bytes(data)

    ca_key, server_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca_name = name("dmp test CA")
    ca = certificate(ca_name, ca_key, ca_name, ca_key, ca=True)
    authority = (
        ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value if proper else None
    )
    server = certificate(name("127.0.0.1"), server_key, ca_name, ca_key, False, authority)
    save("ca.pem", ca.public_bytes(serialization.Encoding.PEM))
    save("server.pem", server.public_bytes(serialization.Encoding.PEM))
    save(
        "server.key",
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
    )


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
    tls = [
        "--tls-port",
        str(port),
        "--tls-cert-file",
        str(certs / "server.pem"),
        "--tls-key-file",
        str(certs / "server.key"),
        "--tls-ca-cert-file",
        str(certs / "ca.pem"),
        "--tls-auth-clients",
        "no",
        "--requirepass",
        secret,
    ]
    with redis_server(*tls):
        url = (
            f"rediss://:{secret}@127.0.0.1:{port}/0?ssl_cert_reqs=required"
            f"&ssl_ca_certs={certs / 'ca.pem'}"
        )
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


def test_a_certificate_that_strict_checking_refuses(tmp_path: Path) -> None:
    """A CA's certificate without key identifiers: Python 3.13 checks certificates
    strictly by default and refuses it, which dmp says in one line that names the broker
    and the reason; earlier Pythons accept it."""
    make_certificates(tmp_path, proper=False)
    port = free_port()
    tls = ["--tls-port", str(port), "--tls-auth-clients", "no"]
    tls += ["--tls-cert-file", str(tmp_path / "server.pem")]
    tls += ["--tls-key-file", str(tmp_path / "server.key")]
    tls += ["--tls-ca-cert-file", str(tmp_path / "ca.pem")]
    with redis_server(*tls):
        url = (
            f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={tmp_path / 'ca.pem'}"
        )
        listed = run("job", "list", cwd=tmp_path, broker_url=url)
    if sys.version_info < (3, 13):
        assert listed.returncode == 0, listed.stderr
        return
    assert listed.returncode == 1
    assert re.fullmatch(
        rb"dmp: cannot reach the broker at rediss://127\.0\.0\.1:\d+/0 \(connecting\): .*"
        rb"certificate verify failed: Missing Authority Key Identifier.*\n",
        listed.stderr,
    ), listed.stderr
