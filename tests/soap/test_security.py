"""WS-Security signatures (soap/security.py, soap/wsse.py, soap/wsse_read.py), with real keys
and real xmlsec: sign → serialize → parse → verify on SOAP 1.1 and 1.2; what is refused
(untrusted signer, tampering, no signature, partial coverage, stale or future timestamps,
replays) and the faults it becomes. Signature wrapping: test_security_attacks.py; zeep:
test_security_interop.py; signing as xmlsec signs: test_security_engines.py."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree
from wss_support import (
    BODY,
    HEADER,
    HP,
    IMAGE,
    MESSAGE_ID,
    NOW,
    SECURITY,
    TIMESTAMP,
    TO,
    Keys,
    check,
    envelope,
    part,
    received,
    remove,
    set_name,
    signed,
    tampered,
)

from dynasoar import ns
from dynasoar.errors import (
    WSSE,
    FailedAuthentication,
    InvalidSecurity,
    MessageExpired,
    ReceiverError,
    SecurityFault,
)
from dynasoar.soap import addressing
from dynasoar.soap.envelope import SoapVersion, parse_envelope, serialize
from dynasoar.soap.faults import fault_reply, read_fault
from dynasoar.soap.mtom_feed import read_mtom_sync
from dynasoar.soap.mtom_writer import MtomWriter, OutgoingAttachment
from dynasoar.soap.security import Credentials, ReplayCache, TrustStore, sign
from dynasoar.soap.wsse import DS, ID, WSU, X509V3, xsd_time

VERSIONS = pytest.mark.parametrize("version", list(SoapVersion), ids=["soap11", "soap12"])


# -- round trips ------------------------------------------------------------------------------


@VERSIONS
@pytest.mark.parametrize("wsa", [True, False], ids=["wsa", "no-wsa"])
@pytest.mark.parametrize("mtom", [False, True], ids=["plain", "xop"])
def test_sign_verify_round_trip(
    version: SoapVersion, wsa: bool, mtom: bool, sp: Keys, trust: TrustStore
) -> None:
    data = signed(version, sp, wsa=wsa, mtom=mtom)
    verified = check(received(data), trust, replay=ReplayCache())
    assert verified.subject == "CN=sp-1"
    assert verified.certificate_der == sp.credentials.certificate_der
    assert verified.message_id == (MESSAGE_ID if wsa else None)


@VERSIONS
def test_the_security_header_holds_what_the_docstring_says(version: SoapVersion, sp: Keys) -> None:
    root = received(signed(version, sp))
    header = part(root, HEADER)
    security = header[0]
    assert security.tag == f"{{{WSSE}}}Security", "the Security header comes first"
    assert security.get(f"{{{version.envelope_ns}}}mustUnderstand") == "1"
    assert [etree.QName(c).localname for c in security] == [
        "Timestamp",
        "BinarySecurityToken",
        "Signature",
    ]
    timestamp, token, signature = security
    assert [c.text for c in timestamp] == [
        xsd_time(NOW),
        xsd_time(NOW + datetime.timedelta(seconds=300)),
    ]
    assert token.get("ValueType") == X509V3
    info = signature.find(f"{{{DS}}}SignedInfo")
    assert info is not None
    algorithms = [el.get("Algorithm") for el in info.iter() if el.get("Algorithm")]
    assert set(algorithms) == {
        "http://www.w3.org/2001/10/xml-exc-c14n#",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmlenc#sha256",
    }
    uris = {ref.get("URI") for ref in info.iter(f"{{{DS}}}Reference")}
    wsa_blocks = [b for b in header if etree.QName(b).namespace == ns.WSA]
    assert len(wsa_blocks) == 4  # To, Action, MessageID, ReplyTo
    covered = [part(root, BODY), timestamp, *wsa_blocks]
    assert uris == {"#" + str(el.get(ID)) for el in covered}


TRICKY_BODY = (
    '<m:Deploy xmlns:m="urn:dynasoar:2006:host" xmlns="urn:default">\n'
    '  <name attr="a&#9;b&#10;c &quot;q&quot;">'
    "Grüße 日本 &amp; &lt;x&gt; ]]&gt; one&#13;\ntwo</name>\n"
    '  <plain xmlns=""><x y="1"/></plain>\n'
    "  <!-- a comment -->\n"
    "  <![CDATA[cdata <here> & there]]>\n"
    "  <m:empty></m:empty>\n"
    "</m:Deploy>"
)


@VERSIONS
def test_what_is_signed_is_what_goes_on_the_wire(
    version: SoapVersion, sp: Keys, trust: TrustStore
) -> None:
    """Escaped CRs, tabs and newlines in attributes, default-namespace undeclarations,
    comments and CDATA: the in-memory tree and its serialization verify alike, and so do the
    message re-serialized by a relay and re-laid-out outside the signed elements."""
    root = envelope(version, body=etree.fromstring(TRICKY_BODY))
    sign(root, sp.credentials, now=NOW)
    check(root, trust)  # the tree as signed
    wire = serialize(root)
    check(received(wire), trust)  # what the peer parses
    check(received(serialize(received(wire))), trust)  # after a relay parsed and re-wrote it
    prefix = b"soap"
    relaid = wire.replace(
        b"<%s:Envelope " % prefix, b'<%s:Envelope xmlns:extra="urn:unused" ' % prefix, 1
    ).replace(b"</%s:Header>" % prefix, b"\n  </%s:Header>\n  " % prefix, 1)
    assert relaid != wire
    check(received(relaid), trust)


@VERSIONS
def test_mtom_message_verifies_after_the_mime_round_trip(
    version: SoapVersion, sp: Keys, trust: TrustStore, tmp_path: Path
) -> None:
    data = signed(version, sp, mtom=True)
    attachment = OutgoingAttachment("image@dynasoar", "application/octet-stream", IMAGE)
    writer = MtomWriter(data, [attachment], version.value, action="urn:dynasoar:2006:host/Deploy")
    with read_mtom_sync(writer.iter_chunks(4096), writer.content_type, tmp_path) as message:
        root = received(message.root)
        check(root, trust)
        # The attachment is bound to the signature through its digest in the signed Body.
        digest = part(root, f"{BODY}/{{{HP}}}Deploy/{{{HP}}}sha256").text
        assert digest == message.attachments["image@dynasoar"].sha256


def test_credentials_load_from_pem_bytes_too(sp: Keys, trust: TrustStore) -> None:
    credentials = Credentials.load(sp.key.read_bytes(), sp.cert.read_bytes())
    root = envelope(SoapVersion.SOAP12)
    sign(root, credentials, now=NOW)
    assert check(received(serialize(root)), trust).subject == "CN=sp-1"


def test_credentials_refuse_a_key_of_another_certificate(sp: Keys, rogue: Keys) -> None:
    with pytest.raises(ValueError, match="does not belong to the certificate of CN=rogue"):
        Credentials.load(sp.key, rogue.cert)


def test_what_canonical_xml_refuses_cannot_be_signed(sp: Keys) -> None:
    root = envelope(SoapVersion.SOAP11, body=etree.fromstring('<a xmlns="relative/ns"/>'))
    with pytest.raises(ReceiverError, match="relative namespace URI"):
        sign(root, sp.credentials)


def test_an_envelope_is_signed_once(sp: Keys) -> None:
    root = envelope(SoapVersion.SOAP11)
    sign(root, sp.credentials)
    with pytest.raises(ValueError, match="already has a wsse:Security header"):
        sign(root, sp.credentials)


# -- refusals ---------------------------------------------------------------------------------


@VERSIONS
def test_an_untrusted_signer_fails_authentication(
    version: SoapVersion, rogue: Keys, trust: TrustStore
) -> None:
    with pytest.raises(FailedAuthentication, match="signed by CN=rogue") as caught:
        check(received(signed(version, rogue)), trust)
    assert "not in this host's trust store" in caught.value.reason


def _set_text(path: str, text: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        part(root, path).text = text

    return change


def _swap_token(keys_cert: Path) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        pem = keys_cert.read_text().splitlines()
        part(root, f"{SECURITY}/{{{WSSE}}}BinarySecurityToken").text = "".join(pem[1:-1])

    return change


def _flip_signature_value(root: etree._Element) -> None:
    value = part(root, f"{SECURITY}/{{{DS}}}Signature/{{{DS}}}SignatureValue")
    text = "".join((value.text or "").split())
    value.text = ("B" if text[0] == "A" else "A") + text[1:]


@VERSIONS
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("body", "soap:Body changed after it was signed"),
        ("wsa-to", "wsa:To changed after it was signed"),
        ("timestamp", "wsu:Timestamp changed after it was signed"),
        ("signature-value", "signature value does not verify with the certificate of CN=sp-1"),
        ("token-swapped", "signature value does not verify with the certificate of CN=sp-2"),
    ],
)
def test_tampering_fails_authentication(
    version: SoapVersion, name: str, expected: str, sp: Keys, sp2: Keys, trust: TrustStore
) -> None:
    change = {
        "body": set_name,
        "wsa-to": _set_text(TO, "http://evil.example/"),
        "timestamp": _set_text(f"{TIMESTAMP}/{{{WSU}}}Expires", "2999-01-01T00:00:00Z"),
        "signature-value": _flip_signature_value,
        "token-swapped": _swap_token(sp2.cert),  # a trusted token, but not the signing key
    }[name]
    with pytest.raises(FailedAuthentication) as caught:
        check(tampered(signed(version, sp), change), trust)
    assert expected in caught.value.reason


def test_a_body_made_uncanonicalizable_fails_authentication(sp: Keys, trust: TrustStore) -> None:
    declaration = b'xmlns:hp="%s"' % HP.encode()
    data = signed(SoapVersion.SOAP12, sp).replace(declaration, b'xmlns:hp="relative/hp"')
    with pytest.raises(FailedAuthentication, match=r"soap:Body \(which cannot be canonicalized\)"):
        check(received(data), trust)


def _drop_reference_to(path: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        uri = "#" + str(part(root, path).get(ID))
        for ref in list(root.iter(f"{{{DS}}}Reference")):
            if ref.get("URI") == uri:
                parent = ref.getparent()
                assert parent is not None
                parent.remove(ref)

    return change


def _add_reply_to(root: etree._Element) -> None:
    epr = addressing.EndpointReference("http://evil.example/steal")
    part(root, HEADER).append(addressing.write_epr(f"{{{ns.WSA}}}ReplyTo", epr))


UNSIGNED_OR_UNCOVERED = {
    "no-header": (remove(HEADER), "it has no wsse:Security header"),
    "no-security": (remove(SECURITY), "it has no wsse:Security header"),
    "no-timestamp": (remove(TIMESTAMP), "has no wsu:Timestamp"),
    "no-signature": (remove(f"{SECURITY}/{{{DS}}}Signature"), "has no ds:Signature"),
    "body-not-covered": (_drop_reference_to(BODY), "does not cover the soap:Body"),
    "to-not-covered": (_drop_reference_to(TO), "does not cover the wsa:To header"),
    "timestamp-not-covered": (_drop_reference_to(TIMESTAMP), "does not cover the wsu:Timestamp"),
    "unsigned-reply-to-added": (_add_reply_to, "does not cover the wsa:ReplyTo header"),
}


@VERSIONS
@pytest.mark.parametrize("name", UNSIGNED_OR_UNCOVERED)
def test_unsigned_or_partly_signed_is_invalid_security(
    version: SoapVersion, name: str, sp: Keys, trust: TrustStore
) -> None:
    change, expected = UNSIGNED_OR_UNCOVERED[name]
    with pytest.raises(InvalidSecurity) as caught:
        check(tampered(signed(version, sp), change), trust)
    assert expected in caught.value.reason


# -- time and replay --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (-300, None),  # created "in the future" by exactly the allowed skew
        (0, None),
        (600, None),  # Expires (NOW + 300) plus the allowed skew, to the second
        (-301, "in this host's future"),
        (601, "expired at"),
        (86400, "expired at"),
    ],
)
def test_the_timestamp_window_allows_clock_skew(
    offset: int, expected: str | None, sp: Keys, trust: TrustStore
) -> None:
    root = received(signed(SoapVersion.SOAP12, sp))
    now = NOW + datetime.timedelta(seconds=offset)
    if expected is None:
        check(root, trust, now=now)
    else:
        with pytest.raises(MessageExpired, match=expected):
            check(root, trust, now=now)


def test_a_timestamp_living_too_long_is_refused(sp: Keys, trust: TrustStore) -> None:
    with pytest.raises(InvalidSecurity, match="at most 3600 s"):
        check(received(signed(SoapVersion.SOAP11, sp, ttl=7200)), trust)


@pytest.mark.parametrize("wsa", [True, False], ids=["by-message-id", "by-signature"])
def test_a_replayed_message_fails_authentication(wsa: bool, sp: Keys, trust: TrustStore) -> None:
    data = signed(SoapVersion.SOAP12, sp, wsa=wsa)
    cache = ReplayCache()
    check(received(data), trust, replay=cache)
    with pytest.raises(FailedAuthentication, match="was received before"):
        check(received(data), trust, replay=cache, now=NOW + datetime.timedelta(seconds=5))
    check(received(data), trust, replay=None)  # the caller chose not to check


def test_a_refused_message_is_not_remembered(sp: Keys, trust: TrustStore) -> None:
    """A forgery carrying a MessageID must not make the genuine message look replayed."""
    data = signed(SoapVersion.SOAP11, sp)
    cache = ReplayCache()
    with pytest.raises(FailedAuthentication):
        check(tampered(data, set_name), trust, replay=cache)
    assert len(cache) == 0
    assert check(received(data), trust, replay=cache).message_id == MESSAGE_ID


# -- faults -----------------------------------------------------------------------------------


@VERSIONS
@pytest.mark.parametrize("error", [FailedAuthentication, InvalidSecurity, MessageExpired])
def test_security_faults_carry_wsse_codes(version: SoapVersion, error: type[SecurityFault]) -> None:
    reason = "signed by CN=rogue, which is not in this host's trust store"
    status, content_type, body = fault_reply(error(reason), version, None)
    reply = parse_envelope(body)
    assert reply.body is not None
    fault = read_fault(reply.body, version)
    assert fault is not None
    code = (WSSE, error.__name__)
    if version is SoapVersion.SOAP12:
        assert (fault.code, fault.subcodes, status) == ((ns.SOAP12_ENV, "Sender"), [code], 400)
    else:
        assert (fault.code, fault.subcodes, status) == (code, [], 500)
    assert fault.reason == reason
    assert b'xmlns:wsse="' + WSSE.encode() + b'"' in body
    assert content_type.startswith(version.media_type)
