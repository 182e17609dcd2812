"""HTTPS: the server serves TLS given a certificate; the pool verifies peers against a CA."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from dynasoar.errors import TransportError
from dynasoar.http import ConnectionPool, HttpServer, Request, Response

Run = Any  # the arun fixture (tests/http/conftest.py): runs a coroutine to its end


def self_signed(directory: Path, name: str = "localhost") -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


async def echo(request: Request) -> Response:
    return Response(200, [("Content-Type", "text/plain")], await request.body.read_all(1 << 20))


def server_context(key: Path, cert: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def test_https_round_trip_with_keep_alive(arun: Run, tmp_path: Path) -> None:
    key, cert = self_signed(tmp_path)

    async def main() -> None:
        server = HttpServer(echo)
        _, port = await server.start("127.0.0.1", 0, ssl=server_context(key, cert))
        pool = ConnectionPool(ssl_context=ssl.create_default_context(cafile=str(cert)))
        try:
            for i in range(3):
                response = await pool.request(
                    f"https://127.0.0.1:{port}/x", body=b"hi %d" % i, timeout=10
                )
                assert await response.read_all(100) == b"hi %d" % i
            assert pool.connections_opened == 1
        finally:
            await pool.close()
            await server.close()

    arun(main())


def test_an_unknown_certificate_is_refused(arun: Run, tmp_path: Path) -> None:
    key, cert = self_signed(tmp_path)
    _, other = self_signed(tmp_path, "other")

    async def main() -> None:
        server = HttpServer(echo)
        _, port = await server.start("127.0.0.1", 0, ssl=server_context(key, cert))
        pool = ConnectionPool(ssl_context=ssl.create_default_context(cafile=str(other)))
        try:
            with pytest.raises(TransportError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
                await pool.request(f"https://127.0.0.1:{port}/", timeout=10)
            plain = ConnectionPool()
            with pytest.raises(TransportError):  # plain HTTP to a TLS port
                response = await plain.request(f"http://127.0.0.1:{port}/", timeout=3)
                await response.read_all(100)
            await plain.close()
        finally:
            await pool.close()
            await server.close()

    arun(main())
