"""Key pairs (keys.py): an RSA key only its owner can read and a self-signed leaf certificate."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dynasoar.keys import fingerprint, main, make_keypair


def test_make_keypair_writes_a_private_key_and_a_self_signed_certificate(tmp_path: Path) -> None:
    key_path, cert_path = make_keypair(tmp_path / "keys", "SP one/../x", days=30)
    assert (key_path.name, cert_path.name) == ("SP_one_.._x.key", "SP_one_.._x.crt")
    assert key_path.parent == cert_path.parent == tmp_path / "keys"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert cert.subject.rfc4514_string() == "CN=SP one/../x"
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.public_numbers() == key.public_key().public_numbers()
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert not constraints.ca
    lifetime = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(days=29) < lifetime <= datetime.timedelta(days=30)


def test_make_keypair_keeps_existing_keys_unless_told(tmp_path: Path) -> None:
    key_path, _ = make_keypair(tmp_path, "hp")
    before = key_path.read_bytes()
    with pytest.raises(FileExistsError, match=r"hp\.key exists already"):
        make_keypair(tmp_path, "hp")
    assert key_path.read_bytes() == before
    make_keypair(tmp_path, "hp", overwrite=True)
    assert key_path.read_bytes() != before
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


@pytest.mark.parametrize(("name", "days"), [("", 365), ("  ", 365), ("sp", 0)])
def test_make_keypair_refuses_bad_arguments(tmp_path: Path, name: str, days: int) -> None:
    with pytest.raises(ValueError):
        make_keypair(tmp_path, name, days)


def test_main_prints_the_paths_and_the_fingerprint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path), "--name", "sp-1", "--days", "10"]) == 0
    out = capsys.readouterr().out
    cert = tmp_path / "sp-1.crt"
    assert str(tmp_path / "sp-1.key") in out and str(cert) in out
    assert fingerprint(cert.read_bytes()) in out
    with pytest.raises(SystemExit) as exited:
        main([str(tmp_path), "--name", "sp-1"])
    assert exited.value.code == 1
    assert "exists already" in capsys.readouterr().err
