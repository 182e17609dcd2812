"""Interop with zeep's WS-Security (zeep.wsse.signature.BinarySignature): its signatures verify
here, and ours verify there; what zeep leaves unsigned (WS-Addressing) or signs weakly (its
RSA-SHA1 default) is refused."""

from __future__ import annotations

import datetime

import pytest
import xmlsec  # only to name zeep's algorithms
from wss_support import NOW, Keys, check, envelope, received, set_name, signed, tampered
from zeep.exceptions import SignatureVerificationFailed
from zeep.wsse.signature import BinarySignature, verify_envelope
from zeep.wsse.utils import WSU as ZEEP_WSU
from zeep.wsse.utils import get_security_header

from dynasoar.errors import InvalidSecurity
from dynasoar.soap.envelope import SoapVersion, serialize
from dynasoar.soap.security import ReplayCache, TrustStore
from dynasoar.soap.wsse import xsd_time

VERSIONS = pytest.mark.parametrize("version", list(SoapVersion), ids=["soap11", "soap12"])


def zeep_signed(
    version: SoapVersion, keys: Keys, *, wsa: bool = False, sha1: bool = False
) -> bytes:
    """Signed by zeep's BinarySignature, which covers the Body and a Timestamp if present."""
    root = envelope(version, wsa=wsa)
    created, expires = NOW, NOW + datetime.timedelta(minutes=5)
    get_security_header(root).append(
        ZEEP_WSU.Timestamp(ZEEP_WSU.Created(xsd_time(created)), ZEEP_WSU.Expires(xsd_time(expires)))
    )
    methods = {} if sha1 else {
        "signature_method": xmlsec.constants.TransformRsaSha256,
        "digest_method": xmlsec.constants.TransformSha256,
    }  # fmt: skip
    BinarySignature(str(keys.key), str(keys.cert), **methods).apply(root, {})
    return serialize(root)


@VERSIONS
def test_a_message_signed_by_zeep_verifies(
    version: SoapVersion, sp: Keys, trust: TrustStore
) -> None:
    verified = check(received(zeep_signed(version, sp)), trust, replay=ReplayCache())
    assert verified.subject == "CN=sp-1"


def test_zeep_leaves_addressing_unsigned_so_such_messages_are_refused(
    sp: Keys, trust: TrustStore
) -> None:
    with pytest.raises(InvalidSecurity, match="does not cover the wsa:To header"):
        check(received(zeep_signed(SoapVersion.SOAP11, sp, wsa=True)), trust)


def test_zeep_default_rsa_sha1_is_refused(sp: Keys, trust: TrustStore) -> None:
    with pytest.raises(InvalidSecurity, match="rsa-sha1 is refused"):
        check(received(zeep_signed(SoapVersion.SOAP11, sp, sha1=True)), trust)


@VERSIONS
def test_our_signature_verifies_with_zeep(version: SoapVersion, sp: Keys) -> None:
    data = signed(version, sp)
    verify_envelope(received(data), str(sp.cert))
    with pytest.raises(SignatureVerificationFailed):
        verify_envelope(tampered(data, set_name), str(sp.cert))
