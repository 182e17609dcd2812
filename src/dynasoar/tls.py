"""TLS for every actor: a server context from a certificate and key (``--tls-cert/--tls-key``),
and a client context verifying peers against a CA file (``--ca`` / ``DYNASOAR_CA``)."""

from __future__ import annotations

import os
import ssl
from pathlib import Path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def client_context(ca: Path | None) -> ssl.SSLContext:
    """Verifies https:// peers against ``ca`` (a PEM file or directory), else the system's."""
    ca = ca or default_ca()
    if ca is None:
        return ssl.create_default_context()
    if ca.is_dir():
        return ssl.create_default_context(capath=str(ca))
    return ssl.create_default_context(cafile=str(ca))


def default_ca() -> Path | None:
    value = os.environ.get("DYNASOAR_CA")
    return Path(value) if value else None
