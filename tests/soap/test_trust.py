"""What a signature is worth (soap/trust.py): trust stores (pinned certificates and CAs that
issued a certificate directly), certificate validity, the wsu:Timestamp window, and the
bounded, thread-safe replay cache."""

from __future__ import annotations

import datetime
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from dynasoar.errors import FailedAuthentication, InvalidSecurity, MessageExpired
from dynasoar.keys import make_keypair
from dynasoar.soap import trust
from dynasoar.soap.trust import ReplayCache, TrustStore, check_timestamp
from dynasoar.soap.wsse import WSU

NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
DAY = datetime.timedelta(days=1)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _certificate(
    cn: str,
    *,
    ca: bool = False,
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
    signing: bool = True,
    valid: tuple[datetime.datetime, datetime.datetime] = (NOW - DAY, NOW + DAY),
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer_name, issuer_key = (issuer[0].subject, issuer[1]) if issuer else (_name(cn), key)
    usage = dict.fromkeys(
        [
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ],
        False,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=signing, key_cert_sign=ca, **usage), critical=True
        )
    )
    return builder.sign(issuer_key, hashes.SHA256()), key


@pytest.fixture(scope="module")
def ca() -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    return _certificate("dynasoar CA", ca=True)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# -- trust store ------------------------------------------------------------------------------


def test_a_pinned_certificate_is_trusted_and_others_are_not(tmp_path: Path) -> None:
    _, trusted = make_keypair(tmp_path, "sp-1")
    _, other = make_keypair(tmp_path / "elsewhere", "rogue")
    store = TrustStore.from_paths([trusted])
    now = datetime.datetime.now(datetime.UTC)  # these certificates are made now, not at import
    store.check(x509.load_pem_x509_certificate(trusted.read_bytes()), now)
    with pytest.raises(FailedAuthentication, match=r"signed by CN=rogue \(certificate SHA-256"):
        store.check(x509.load_pem_x509_certificate(other.read_bytes()), now)


def test_a_directory_of_certificates_skips_keys(tmp_path: Path) -> None:
    for name in ("sp-1", "sp-2"):
        make_keypair(tmp_path, name)  # NAME.key beside NAME.crt: keys are not *.pem/*.crt
    (tmp_path / "bundle.pem").write_bytes(
        _pem(_certificate("a")[0]) + b"\n" + _pem(_certificate("b")[0])
    )
    assert len(TrustStore.from_paths([tmp_path])) == 4


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "holds no"),
        (b"not a certificate", "no PEM certificate"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "holds a private key"),
    ],
)
def test_a_trust_store_refuses_what_is_not_certificates(
    tmp_path: Path, content: bytes | None, expected: str
) -> None:
    if content is not None:
        (tmp_path / "trust.pem").write_bytes(content)
    with pytest.raises(ValueError, match=expected):
        TrustStore.from_paths([tmp_path])


def test_an_empty_trust_store_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one certificate"):
        TrustStore([])


def test_a_ca_in_the_store_vouches_for_what_it_issued(
    ca: tuple[x509.Certificate, rsa.RSAPrivateKey],
) -> None:
    store = TrustStore([ca[0]])
    store.check(_certificate("hp-7", issuer=ca)[0], NOW)
    other_ca = _certificate("dynasoar CA")  # same name, another key
    with pytest.raises(FailedAuthentication, match="CN=hp-7"):
        store.check(_certificate("hp-7", issuer=other_ca)[0], NOW)


def test_a_pinned_leaf_vouches_for_nothing(tmp_path: Path) -> None:
    """A certificate trusted as itself is not a CA: what its key 'issues' is not trusted."""
    leaf, key = _certificate("sp-1")
    with pytest.raises(FailedAuthentication, match="CN=child"):
        TrustStore([leaf]).check(_certificate("child", issuer=(leaf, key))[0], NOW)


@pytest.mark.parametrize(
    ("valid", "expected"),
    [
        ((NOW - 2 * DAY, NOW - DAY), "expired on"),
        ((NOW + DAY, NOW + 2 * DAY), "is not valid before"),
    ],
)
def test_a_certificate_outside_its_validity_fails(
    valid: tuple[datetime.datetime, datetime.datetime], expected: str
) -> None:
    cert, _ = _certificate("sp-1", valid=valid)
    with pytest.raises(FailedAuthentication, match=expected):
        TrustStore([cert]).check(cert, NOW)


def test_a_certificate_not_for_signing_fails(
    ca: tuple[x509.Certificate, rsa.RSAPrivateKey],
) -> None:
    cert = _certificate("tls-only", issuer=ca, signing=False)[0]
    with pytest.raises(FailedAuthentication, match="lacks digitalSignature"):
        TrustStore([ca[0]]).check(cert, NOW)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def test_a_signer_is_worked_out_once_and_its_validity_checked_every_time(
    ca: tuple[x509.Certificate, rsa.RSAPrivateKey],
) -> None:
    """The verdict on a token is kept, but only while the certificate and the CA that vouched
    for it are both valid: here the CA expires first, and the remembered leaf goes with it."""
    leaf = _certificate("hp-7", issuer=ca, valid=(NOW - DAY, NOW + 10 * DAY))[0]
    store = TrustStore([ca[0]])
    signer = store.signer(_der(leaf), NOW)
    assert (signer.subject, signer.der, signer.certificate) == ("CN=hp-7", _der(leaf), leaf)
    assert signer.fingerprint == leaf.fingerprint(hashes.SHA256()).hex(":").upper()
    assert (signer.not_before, signer.not_after) == (
        leaf.not_valid_before_utc,
        ca[0].not_valid_after_utc,
    )
    assert store.signer(_der(leaf), NOW + DAY / 2) is signer
    with pytest.raises(FailedAuthentication, match="certificate of CN=dynasoar CA expired on"):
        store.signer(_der(leaf), NOW + 2 * DAY)
    with pytest.raises(FailedAuthentication, match="CN=hp-7 is not valid before"):
        store.signer(_der(leaf), NOW - 2 * DAY)


def test_refusals_are_not_remembered() -> None:
    """A certificate refused before it is valid is accepted once it is; an untrusted one is
    refused every time, with the full reason."""
    cert = _certificate("sp-1", valid=(NOW + DAY, NOW + 2 * DAY))[0]
    store = TrustStore([cert])
    with pytest.raises(FailedAuthentication, match="is not valid before"):
        store.signer(_der(cert), NOW)
    assert store.signer(_der(cert), NOW + DAY * 1.5).subject == "CN=sp-1"
    stranger = _certificate("rogue")[0]
    for _ in range(2):
        with pytest.raises(FailedAuthentication, match="not in this host's trust store"):
            store.signer(_der(stranger), NOW)
    assert store.remembered == 1


@pytest.mark.parametrize(
    "token",
    [b"", b"0\x82\x01\x00 not DER", b"-----BEGIN CERTIFICATE-----"],
    ids=["empty", "not-der", "pem"],
)
def test_a_token_that_is_no_certificate_is_invalid_security(
    ca: tuple[x509.Certificate, rsa.RSAPrivateKey], token: bytes
) -> None:
    with pytest.raises(InvalidSecurity, match=r"is not an X\.509 certificate"):
        TrustStore([ca[0]]).signer(token, NOW)


def test_the_signers_remembered_are_bounded(
    ca: tuple[x509.Certificate, rsa.RSAPrivateKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trust, "MAX_SIGNERS", 2)
    store = TrustStore([ca[0]])
    leaves = [_certificate(f"hp-{i}", issuer=ca)[0] for i in range(3)]
    first = [store.signer(_der(leaf), NOW) for leaf in leaves]
    assert store.remembered == 2
    assert store.signer(_der(leaves[2]), NOW) is first[2]
    again = store.signer(_der(leaves[0]), NOW)  # forgotten, so worked out anew
    assert again is not first[0] and again == first[0]


# -- timestamps -------------------------------------------------------------------------------


def _timestamp(created: str | None, expires: str | None) -> etree._Element:
    timestamp = etree.Element(f"{{{WSU}}}Timestamp")
    for name, value in (("Created", created), ("Expires", expires)):
        if value is not None:
            etree.SubElement(timestamp, f"{{{WSU}}}{name}").text = value

    return timestamp


@pytest.mark.parametrize(
    ("created", "expires", "error", "expected"),
    [
        ("2030-01-01T00:00:00Z", "2030-01-01T00:05:00Z", None, None),
        ("2030-01-01T01:00:00.123456789+01:00", "2030-01-01T00:05:00.5Z", None, None),
        (None, "2030-01-01T00:05:00Z", InvalidSecurity, "exactly one wsu:Created"),
        ("2030-01-01T00:00:00Z", None, InvalidSecurity, "exactly one wsu:Expires"),
        ("2030-01-01T00:00:00", "2030-01-01T00:05:00Z", InvalidSecurity, "no time zone"),
        ("yesterday", "2030-01-01T00:05:00Z", InvalidSecurity, "not an xsd:dateTime"),
        ("2030-01-01T00:05:00Z", "2030-01-01T00:00:00Z", InvalidSecurity, "before it is"),
        ("2030-01-01T00:00:00Z", "2030-01-01T02:00:01Z", InvalidSecurity, "at most 7200 s"),
        ("2030-01-01T00:10:01Z", "2030-01-01T00:15:00Z", MessageExpired, "601 s in this"),
        ("2029-12-31T23:40:00Z", "2029-12-31T23:49:59Z", MessageExpired, "601 s ago"),
    ],
)
def test_check_timestamp(
    created: str | None,
    expires: str | None,
    error: type[Exception] | None,
    expected: str | None,
) -> None:
    now = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    timestamp = _timestamp(created, expires)
    if error is None:
        until = check_timestamp(timestamp, now, max_skew=300, max_ttl=7200)
        assert until == datetime.datetime.fromisoformat(str(expires)).timestamp()
    else:
        with pytest.raises(error, match=expected):
            check_timestamp(timestamp, now, max_skew=300, max_ttl=7200)


# -- replay cache -----------------------------------------------------------------------------


def test_the_replay_cache_remembers_each_key_once() -> None:
    cache = ReplayCache()
    assert cache.add("urn:uuid:1", until=100.0, now=0.0)
    assert not cache.add("urn:uuid:1", until=100.0, now=50.0)
    assert cache.add("urn:uuid:2", until=100.0, now=50.0)


def test_the_replay_cache_drops_expired_entries() -> None:
    cache = ReplayCache()
    cache.add("old", until=10.0, now=0.0)
    cache.add("young", until=30.0, now=0.0)
    assert cache.add("new", until=40.0, now=20.0)
    assert len(cache) == 2  # "old" went when it could no longer be replayed anyway
    assert cache.add("old", until=40.0, now=20.0)


def test_the_replay_cache_is_bounded_and_evicts_the_oldest() -> None:
    cache = ReplayCache(max_entries=3)
    for i in range(5):
        assert cache.add(f"m{i}", until=100.0 + i, now=float(i))
    assert len(cache) == 3
    assert cache.evictions == 2
    assert cache.add("m0", until=200.0, now=10.0), "the oldest were evicted"
    assert not cache.add("m4", until=200.0, now=10.0), "the newest are kept"


def test_the_replay_cache_admits_a_key_once_under_a_race() -> None:
    cache = ReplayCache()
    start = threading.Barrier(8)
    results: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        start.wait()
        for i in range(200):
            admitted = cache.add(f"urn:uuid:{i}", until=1e12, now=NOW)
            with lock:
                results.append(admitted)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(results) == 200 and len(results) == 1600
