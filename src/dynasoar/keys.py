"""Key pairs for signing: an RSA key and a self-signed X.509 certificate, both PEM.

Backs ``dynasoar keys``. The certificate is a leaf (not a CA), so a peer trusts exactly this
certificate (pinning) when it lists it in its trust store; see :mod:`dynasoar.soap.security`.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import re
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

KEY_BITS = 2048
#: Back-date certificates a little so a peer whose clock runs behind accepts them at once.
_BACKDATE = datetime.timedelta(minutes=5)


def make_keypair(
    directory: str | os.PathLike[str],
    common_name: str,
    days: int = 365,
    *,
    overwrite: bool = False,
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
) -> tuple[Path, Path]:
    """Write ``NAME.key`` (mode 0600) and ``NAME.crt`` into ``directory``; return their paths.

    NAME is ``common_name`` reduced to a safe file name. Existing files are kept unless
    ``overwrite``: silently replacing a key would lock its peers out.
    """
    if not common_name.strip():
        raise ValueError("a certificate needs a non-empty common name")
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", common_name.strip()).strip("._") or "key"
    key_path, cert_path = target / f"{stem}.key", target / f"{stem}.crt"
    if not overwrite:
        for path in (key_path, cert_path):
            if path.exists():
                raise FileExistsError(f"{path} exists already; pass overwrite to replace it")
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(self_signed_certificate(key, common_name.strip(), days, hosts))
    return key_path, cert_path


def self_signed_certificate(
    key: rsa.RSAPrivateKey, common_name: str, days: int, hosts: Sequence[str] = ()
) -> bytes:
    """A PEM leaf certificate for ``key``, valid for digital signatures: SOAP message
    signatures and, for the ``hosts`` it names (DNS names or IP addresses), TLS servers."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_signing_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(h) for h in hosts]), critical=False
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _signing_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    """Create the file 0600 from the start: a key must never be readable, not even briefly."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)  # the umask may only take bits away; be explicit
        handle.write(data)


def fingerprint(cert_pem: bytes) -> str:
    """The SHA-256 fingerprint of a PEM certificate, as colon-separated hex."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def main(argv: Sequence[str] | None = None) -> int:
    """``dynasoar keys DIRECTORY --name CN [--days N] [--force]``."""
    parser = argparse.ArgumentParser(
        prog="dynasoar keys",
        description="Make an RSA key and a self-signed certificate for signing SOAP messages.",
    )
    parser.add_argument("directory", type=Path, help="where to write NAME.key and NAME.crt")
    parser.add_argument("--name", required=True, help="the certificate's common name (CN)")
    parser.add_argument("--days", type=int, default=365, help="validity (default 365)")
    parser.add_argument("--force", action="store_true", help="replace existing files")
    parser.add_argument(
        "--host",
        action="append",
        default=None,
        metavar="NAME",
        help="a host name or address the certificate serves TLS for (repeatable; "
        "default localhost and 127.0.0.1)",
    )
    args = parser.parse_args(argv)
    try:
        key_path, cert_path = make_keypair(
            args.directory,
            args.name,
            args.days,
            overwrite=args.force,
            hosts=args.host or ("localhost", "127.0.0.1"),
        )
    except (OSError, ValueError) as exc:
        parser.exit(1, f"dynasoar keys: {exc}\n")
    print(f"key         {key_path}")
    print(f"certificate {cert_path}")
    print(f"sha256      {fingerprint(cert_path.read_bytes())}")
    print("Give the certificate (never the key) to the peers that must trust this one.")
    return 0
