"""What a verified WS-Security signature is worth: whose it is (trust store), when it holds
(the wsu:Timestamp window) and that it is heard once (replay cache). Pure: no xmlsec here.

Trust is by certificate: a certificate in the store is trusted as itself (pinned; that is how
the self-signed certificates of ``dynasoar keys`` are used), and a CA certificate in the store
(basicConstraints CA:TRUE) also vouches for the certificates it issued directly. No chains, no
revocation lists: remove a certificate from the store to revoke it. A store remembers the
certificates it accepted (:meth:`TrustStore.signer`), so each signer is parsed and vetted once;
its validity is compared with the time of every message.
"""

from __future__ import annotations

import datetime
import hashlib
import heapq
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from lxml import etree

from dynasoar.errors import FailedAuthentication, InvalidSecurity, MessageExpired
from dynasoar.soap.wsse import WSU

_CERT_SUFFIXES = {".pem", ".crt", ".cer"}

log = logging.getLogger(__name__)


def describe(certificate: x509.Certificate) -> str:
    """The certificate's subject as people read it: ``CN=sp-1,O=example``."""
    return certificate.subject.rfc4514_string() or "(a certificate with an empty subject)"


def fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex(":").upper()


#: Trusted certificates a store remembers its verdict on (each entry ~1 KB).
MAX_SIGNERS = 1024


@dataclass(frozen=True)
class Signer:
    """A trusted certificate, with what verifying its signatures needs, worked out once."""

    certificate: x509.Certificate
    der: bytes = field(repr=False)
    subject: str
    fingerprint: str
    #: When the verdict holds: the certificate's and its issuer's validity, intersected.
    not_before: datetime.datetime
    not_after: datetime.datetime


class TrustStore:
    """The certificates whose signatures an endpoint accepts (immutable once built)."""

    def __init__(self, certificates: Iterable[x509.Certificate]) -> None:
        self._pinned = {fingerprint(c): c for c in certificates}
        if not self._pinned:
            raise ValueError("a trust store needs at least one certificate")
        self._authorities = [c for c in self._pinned.values() if _is_ca(c)]
        # Token bytes -> verdict. Only what passed is kept: a certificate is trusted or not
        # for good (the store is immutable), and only its validity depends on the time.
        self._signers: dict[bytes, Signer] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_paths(cls, paths: Iterable[str | os.PathLike[str]]) -> TrustStore:
        """From PEM files (one or more certificates each) and directories of them
        (``*.pem``, ``*.crt``, ``*.cer``)."""
        certificates: list[x509.Certificate] = []
        for path in map(Path, paths):
            files = (
                sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _CERT_SUFFIXES)
                if path.is_dir()
                else [path]
            )
            if not files:
                raise ValueError(f"{path} holds no *.pem, *.crt or *.cer certificate file")
            certificates += [c for f in files for c in _read_certificates(f)]
        return cls(certificates)

    def __len__(self) -> int:
        return len(self._pinned)

    @property
    def remembered(self) -> int:
        """How many signers' verdicts are kept (at most MAX_SIGNERS)."""
        return len(self._signers)

    def signer(self, token: bytes, now: datetime.datetime) -> Signer:
        """The signer whose DER certificate a BinarySecurityToken holds, if :meth:`check`
        passes; raise InvalidSecurity if it is no certificate. A certificate seen before is
        not parsed, looked up or described again: only its validity is compared with ``now``.
        """
        known = self._signers.get(token)
        if known is not None and known.not_before <= now <= known.not_after:
            return known
        try:
            certificate = x509.load_der_x509_certificate(token)
        except ValueError as exc:
            raise InvalidSecurity(
                f"the BinarySecurityToken is not an X.509 certificate: {exc}"
            ) from exc
        issuer = self._vet(certificate, now)
        bounds = [c for c in (certificate, issuer) if c is not None]
        signer = Signer(
            certificate,
            certificate.public_bytes(serialization.Encoding.DER),
            describe(certificate),
            fingerprint(certificate),
            max(c.not_valid_before_utc for c in bounds),
            min(c.not_valid_after_utc for c in bounds),
        )
        with self._lock:
            if len(self._signers) >= MAX_SIGNERS:
                del self._signers[next(iter(self._signers))]  # the oldest
            self._signers[token] = signer
        return signer

    def check(self, certificate: x509.Certificate, now: datetime.datetime) -> None:
        """Raise FailedAuthentication unless the certificate is trusted and valid ``now``."""
        self._vet(certificate, now)

    def _vet(
        self, certificate: x509.Certificate, now: datetime.datetime
    ) -> x509.Certificate | None:
        """:meth:`check`, returning the CA that vouched for the certificate (None if pinned)."""
        issuer = None
        if fingerprint(certificate) not in self._pinned:
            issuer = self._issuer_of(certificate)
            if issuer is None:
                raise FailedAuthentication(
                    f"the message is signed by {describe(certificate)} (certificate SHA-256 "
                    f"{fingerprint(certificate)}), which is not in this host's trust store; "
                    "add that certificate to the trust store to accept its messages"
                )
        for cert in (certificate, issuer):
            if cert is not None:
                _check_validity(cert, now)
        usage = _key_usage(certificate)
        if usage is not None and not usage.digital_signature:
            raise FailedAuthentication(
                f"the certificate of {describe(certificate)} is not for signing (its keyUsage "
                "lacks digitalSignature)"
            )
        return issuer

    def _issuer_of(self, certificate: x509.Certificate) -> x509.Certificate | None:
        for authority in self._authorities:
            if certificate.issuer != authority.subject:
                continue
            try:
                certificate.verify_directly_issued_by(authority)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return authority
        return None


def _read_certificates(path: Path) -> list[x509.Certificate]:
    data = path.read_bytes()
    if b"PRIVATE KEY-----" in data:
        raise ValueError(
            f"{path} holds a private key: a trust store takes certificates only (give peers "
            "the .crt file, never the .key)"
        )
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ValueError(f"{path}: no PEM certificate could be read ({exc})") from exc


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    usage = _key_usage(certificate)
    return constraints.value.ca and (usage is None or usage.key_cert_sign)


def _key_usage(certificate: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def _check_validity(certificate: x509.Certificate, now: datetime.datetime) -> None:
    if now < certificate.not_valid_before_utc:
        raise FailedAuthentication(
            f"the certificate of {describe(certificate)} is not valid before "
            f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC"
        )
    if now > certificate.not_valid_after_utc:
        raise FailedAuthentication(
            f"the certificate of {describe(certificate)} expired on "
            f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC; make a new key pair"
        )


# -- freshness ----------------------------------------------------------------------------


def check_timestamp(
    timestamp: etree._Element, now: datetime.datetime, *, max_skew: float, max_ttl: float
) -> float:
    """Check a wsu:Timestamp against ``now``; return its Expires as POSIX seconds."""
    created = _instant(timestamp, "Created")
    expires = _instant(timestamp, "Expires")
    lifetime = (expires - created).total_seconds()
    if lifetime <= 0:
        raise InvalidSecurity("the wsu:Timestamp expires before it is created")
    if lifetime > max_ttl:
        raise InvalidSecurity(
            f"the wsu:Timestamp is valid for {lifetime:.0f} s; this endpoint accepts at most "
            f"{max_ttl:.0f} s"
        )
    skew = datetime.timedelta(seconds=max_skew)
    if now < created - skew:
        raise MessageExpired(
            f"the message was created at {_show(created)}, {(created - now).total_seconds():.0f}"
            f" s in this host's future (allowed clock skew {max_skew:.0f} s): check the "
            "sender's clock"
        )
    if now > expires + skew:
        raise MessageExpired(
            f"the message expired at {_show(expires)}, {(now - expires).total_seconds():.0f} s "
            f"ago (allowed clock skew {max_skew:.0f} s): send it again, freshly signed"
        )
    return expires.timestamp()


def _instant(timestamp: etree._Element, name: str) -> datetime.datetime:
    found = timestamp.findall(f"{{{WSU}}}{name}")
    if len(found) != 1:
        raise InvalidSecurity(f"the wsu:Timestamp needs exactly one wsu:{name}")
    text = (found[0].text or "").strip()
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidSecurity(f"wsu:{name} {text!r} is not an xsd:dateTime") from exc
    if moment.tzinfo is None:
        raise InvalidSecurity(f"wsu:{name} {text!r} has no time zone; use UTC ('Z')")
    return moment


def _show(moment: datetime.datetime) -> str:
    return f"{moment.astimezone(datetime.UTC):%Y-%m-%d %H:%M:%S} UTC"


# -- replay -------------------------------------------------------------------------------


class ReplayCache:
    """Messages seen lately, each remembered until it would be refused as expired anyway.

    Bounded: at most ``max_entries``; when full, the entry closest to expiry (with equal
    lifetimes, the oldest) makes room, and a warning says the window is now open to replays of
    it. Thread-safe: verification may run on executor threads.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("a replay cache needs room for at least one entry")
        self.max_entries = max_entries
        self.evictions = 0
        self._until: dict[bytes, float] = {}
        self._heap: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._until)

    def add(self, key: str, until: float, now: datetime.datetime | float) -> bool:
        """Remember ``key`` until ``until`` (POSIX seconds); False if it is there already."""
        moment = now.timestamp() if isinstance(now, datetime.datetime) else now
        # Hashed: keys are sender-chosen strings; a digest bounds what each entry costs.
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        with self._lock:
            self._drop_expired(moment)
            if digest in self._until:
                return False
            if len(self._until) >= self.max_entries:
                self._evict_one()
            self._until[digest] = until
            heapq.heappush(self._heap, (until, digest))
            return True

    def _drop_expired(self, now: float) -> None:
        while self._heap and self._heap[0][0] < now:
            _, digest = heapq.heappop(self._heap)
            del self._until[digest]

    def _evict_one(self) -> None:
        _, digest = heapq.heappop(self._heap)
        del self._until[digest]
        self.evictions += 1
        if self.evictions == 1 or self.evictions % 10_000 == 0:
            log.warning(
                "replay cache full (%d entries): evicted a live entry (%d so far); raise "
                "max_entries or shorten the Timestamp lifetime",
                self.max_entries,
                self.evictions,
            )
