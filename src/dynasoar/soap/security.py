"""WS-Security X.509 signatures on SOAP envelopes: sign one, verify one. The one xmlsec user.

OASIS WS-Security 1.0/1.1 with the X.509 Token Profile, SOAP 1.1 and 1.2. :func:`sign` adds a
``wsse:Security`` header block (``mustUnderstand="1"``) holding, in this order:

- ``wsu:Timestamp`` (Created, Expires);
- ``wsse:BinarySecurityToken``: the signer's X.509v3 certificate, Base64Binary;
- ``ds:Signature``: exclusive c14n, RSA-SHA256, one SHA-256 Reference (exclusive c14n
  transform) per signed element, found by ``wsu:Id``: the ``soap:Body``, the ``wsu:Timestamp``
  and every WS-Addressing header block (both WS-A namespaces, and blocks marked
  ``wsa:IsReferenceParameter``). KeyInfo is a SecurityTokenReference to the token.

:func:`sign` digests the references itself (lxml exclusive c14n, hashlib) and signs the
SignedInfo with the key (``engine="xmlsec"`` has xmlsec do it, for the same bytes, slower);
:func:`verify` leaves the digests and the signature value to xmlsec. It requires that
coverage, refuses signature wrapping (:mod:`dynasoar.soap.wsse_read`), checks the token is trusted
(:mod:`dynasoar.soap.trust`), has xmlsec verify the signature with the token's key, then checks
the Timestamp window and that the message is not a replay. It remembers a message only once all
of that has passed, so forgeries cannot fill the cache.

Attachments (MTOM): the signature covers the Body's ``xop:Include`` elements, not the MIME
parts. Our Deploy/Publish bodies carry each attachment's SHA-256, which the receiver checks
against the bytes it spooled, so attachments are bound to the signature through the signed
Body; no SwA attachment transform is needed.

Exclusive c14n signs the namespace declarations that element and attribute names use, not those
that QName-valued *text* relies on: a signed element whose content holds QNames (``xsi:type``
values, fault codes) must declare those prefixes inside itself to be protected.

Sign last: :func:`sign` works on the tree, and ``serialize()`` of that tree is what the digests
describe; any change afterwards (``cleanup_namespaces`` included) is a tampering.
"""

from __future__ import annotations

import datetime
import functools
import os
from dataclasses import dataclass, field
from typing import Any, Literal

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from dynasoar.errors import WSSE, FailedAuthentication, ReceiverError
from dynasoar.soap import addressing, wsse, wsse_read
from dynasoar.soap.envelope import ensure_header, parse_envelope, serialize
from dynasoar.soap.trust import ReplayCache, Signer, TrustStore, check_timestamp, describe

_C = xmlsec.constants
#: What xmlsec may run while verifying (enforced by xmlsec too, after wsse vetted the XML).
_REFERENCE_TRANSFORMS = (
    _C.TransformExclC14N,
    _C.TransformSha256,
    _C.TransformSha384,
    _C.TransformSha512,
)
_SIGNATURE_TRANSFORMS = (
    _C.TransformExclC14N,
    _C.TransformRsaSha256,
    _C.TransformRsaSha384,
    _C.TransformRsaSha512,
)

PemSource = bytes | str | os.PathLike[str]

__all__ = ["Credentials", "Policy", "ReplayCache", "TrustStore", "Verified", "sign", "verify"]


@dataclass(frozen=True)
class Credentials:
    """A signing key and its certificate, loaded and checked once, shared by every signing."""

    certificate_der: bytes = field(repr=False)
    subject: str
    _private: rsa.RSAPrivateKey = field(repr=False)
    _key: Any = field(repr=False)  # xmlsec.Key; a context copies it, so sharing it is safe

    @classmethod
    def load(cls, key: PemSource, cert: PemSource, password: bytes | None = None) -> Credentials:
        """From PEM bytes or PEM file paths; the key must be RSA (2048 bits or more)."""
        key_pem, cert_pem = _pem(key), _pem(cert)
        try:
            private = serialization.load_pem_private_key(key_pem, password)
            certificate = x509.load_pem_x509_certificate(cert_pem)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"cannot load the signing key or certificate: {exc}") from exc
        if not isinstance(private, rsa.RSAPrivateKey) or private.key_size < 2048:
            raise ValueError("the signing key must be an RSA key of at least 2048 bits")
        public = certificate.public_key()
        if not isinstance(public, rsa.RSAPublicKey) or (
            public.public_numbers() != private.public_key().public_numbers()
        ):
            raise ValueError(
                f"the key does not belong to the certificate of {describe(certificate)}"
            )
        # xmlsec gets the key unencrypted and in memory only: no password callback needed.
        plain = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        xmlsec_key = xmlsec.Key.from_memory(plain, _C.KeyDataFormatPem, None)
        der = certificate.public_bytes(serialization.Encoding.DER)
        return cls(der, describe(certificate), private, xmlsec_key)


@dataclass(frozen=True)
class Verified:
    """Who signed a verified message, and its MessageID (signed, and not seen before)."""

    subject: str
    certificate_der: bytes = field(repr=False)
    message_id: str | None = None


@dataclass
class Policy:
    """One actor's stance: who it signs as (``credentials``), whom it believes (``trust``:
    when set, what it receives must be signed by one of them), and its replay memory."""

    credentials: Credentials | None = None
    trust: TrustStore | None = None
    max_skew: float = 300
    replay: ReplayCache = field(default_factory=ReplayCache)
    #: Signatures are checked when a message carries one, not required: a port open to anyone
    #: where a signed message says who it is from (hosts' heartbeats at the SP's port).
    optional: bool = False

    @property
    def signs(self) -> bool:
        return self.credentials is not None

    @property
    def verifies(self) -> bool:
        return self.trust is not None

    def sign_envelope(self, data: bytes) -> bytes:
        """``data`` signed (last step before sending), or as it is without credentials."""
        if self.credentials is None:
            return data
        root = parse_envelope(data).root
        sign(root, self.credentials)
        return serialize(root)

    def check(self, envelope_root: etree._Element) -> Verified | None:
        """Verify what came in when this actor requires signatures; None when it does not."""
        if self.trust is None:
            return None
        if self.optional and next(envelope_root.iter(wsse.SECURITY), None) is None:
            return None
        return verify(envelope_root, self.trust, replay=self.replay, max_skew=self.max_skew)


def sign(
    envelope_root: etree._Element,
    credentials: Credentials,
    *,
    timestamp_ttl: float = 300,
    now: datetime.datetime | None = None,
    engine: Literal["dynasoar", "xmlsec"] = "dynasoar",
) -> None:
    """Sign the envelope in place; call it last (see the module docstring).

    The ``engine`` fills the signature in; both write the same bytes. ``dynasoar`` digests
    each target with lxml's exclusive c14n and hashlib, and signs the SignedInfo's c14n with the
    key: xmlsec would find each ``#id`` by walking the whole document, once per Reference.
    ``xmlsec`` has xmlsec do it all, the reference the tests and ``dynasoar bench`` hold the
    other against.
    """
    version = wsse.version_of(envelope_root)
    header = ensure_header(envelope_root, version)
    if header.find(wsse.SECURITY) is not None:
        raise ValueError("the envelope already has a wsse:Security header")
    body = envelope_root.find(f"{{{version.envelope_ns}}}Body")
    if body is None:
        raise ValueError("the envelope has no Body")
    security = etree.Element(wsse.SECURITY, nsmap={"wsse": WSSE, "wsu": wsse.WSU})
    header.insert(0, security)
    # Set once inserted, so the attribute takes the envelope's own prefix.
    security.set(f"{{{version.envelope_ns}}}mustUnderstand", "1")
    timestamp = wsse.add_timestamp(security, now or _utcnow(), timestamp_ttl)
    token_id = wsse.add_token(security, credentials.certificate_der)
    targets = [body, timestamp, *wsse.addressing_blocks(header)]
    ids = [wsse.ensure_id(target) for target in targets]
    signature = wsse.add_signature_template(security, ids, token_id)
    fill_signature(signature, targets, credentials, engine)


def fill_signature(
    signature: etree._Element,
    targets: list[etree._Element],
    credentials: Credentials,
    engine: Literal["dynasoar", "xmlsec"] = "dynasoar",
) -> None:
    """Fill in a template of :func:`wsse.add_signature_template` (its DigestValues and
    SignatureValue) for ``targets``, in the order of its References (see :func:`sign`)."""
    try:
        if engine == "xmlsec":
            ctx = xmlsec.SignatureContext()
            for target in targets:
                ctx.register_id(target, "Id", wsse.WSU)
            ctx.key = credentials._key
            ctx.sign(signature)
            return
        signed_info = wsse.fill_digests(signature, targets)
    except (xmlsec.Error, etree.C14NError) as exc:
        raise ReceiverError(
            f"the message could not be signed ({exc}): is there a relative namespace URI, "
            "which canonical XML refuses, in the Body or an addressing header?"
        ) from exc
    # RSASSA-PKCS1-v1_5 is deterministic: the value xmlsec would compute, at OpenSSL's cost.
    value = credentials._private.sign(signed_info, padding.PKCS1v15(), hashes.SHA256())
    wsse.set_signature_value(signature, value)


def verify(
    envelope_root: etree._Element,
    trust: TrustStore,
    *,
    replay: ReplayCache | None,
    max_skew: float = 300,
    max_ttl: float = 3600,
    now: datetime.datetime | None = None,
) -> Verified:
    """Check the envelope's signature and freshness; raise a SecurityFault if they fail.

    ``replay`` is required so that skipping the replay check (None) is a visible choice.
    A Timestamp valid for longer than ``max_ttl`` seconds is refused: the replay cache then
    never has to remember a message for longer than ``max_ttl + 2 * max_skew``.
    """
    now = now or _utcnow()
    parts = wsse_read.SignedParts.read(envelope_root)
    signer = trust.signer(parts.token(), now)
    subject = signer.subject
    _check_signature(parts, signer)
    expires = check_timestamp(parts.timestamp, now, max_skew=max_skew, max_ttl=max_ttl)
    message_id = addressing.read_headers(parts.header).message_id
    if replay is not None:
        # Without a MessageID the signature value names the message: a replay repeats it.
        value = parts.signature.findtext(f"{{{wsse.DS}}}SignatureValue") or ""
        key = message_id or "sig:" + "".join(value.split())
        if not replay.add(f"{signer.fingerprint} {key}", expires + max_skew, now):
            what = f"message {message_id}" if message_id else "this signed message"
            raise FailedAuthentication(
                f"{what} from {subject} was received before: a replayed message is refused"
            )
    return Verified(subject, signer.der, message_id)


def _check_signature(parts: wsse_read.SignedParts, signer: Signer) -> None:
    subject = signer.subject
    ctx = xmlsec.SignatureContext()
    ctx.key = _verification_key(signer.der)
    for transform in _REFERENCE_TRANSFORMS:
        ctx.enable_reference_transform(transform)
    for transform in _SIGNATURE_TRANSFORMS:
        ctx.enable_signature_transform(transform)
    try:
        # Only the elements wsse resolved get an id xmlsec can find (our parser collects none).
        for element in {id(e): e for e in parts.targets.values()}.values():
            ctx.register_id(element, "Id", wsse.WSU)
        ctx.verify(parts.signature)
    except xmlsec.Error as exc:
        changed = parts.changed()
        if changed:
            reason = (
                f"the signature by {subject} does not match the message: "
                f"{', '.join(changed)} changed after it was signed"
            )
        else:
            reason = (
                f"the signature value does not verify with the certificate of {subject}: the "
                "message was not signed with that certificate's key, or its SignedInfo changed"
            )
        raise FailedAuthentication(reason) from exc


@functools.lru_cache(maxsize=64)
def _verification_key(der: bytes) -> Any:
    """The certificate's public key for xmlsec, made once per signer (ctx.key copies it).

    The bare key, not the certificate (a key xmlsec holds with its certificate costs ~35 us to
    copy into every context); the certificate was vetted by the trust store, and xmlsec does
    not read it when it is given the key.
    """
    public = (
        x509.load_der_x509_certificate(der)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return xmlsec.Key.from_memory(public, _C.KeyDataFormatDer, None)


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem(source: PemSource) -> bytes:
    if isinstance(source, bytes):
        return source
    with open(source, "rb") as handle:
        return handle.read()
