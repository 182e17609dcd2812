"""Signing our way (soap/security.py's ``dynasoar`` engine: lxml exclusive c14n + hashlib for
the DigestValues, RSA-SHA256 over the SignedInfo's c14n) writes the very bytes xmlsec's own
``ctx.sign`` writes into the same template, and xmlsec verifies them: SOAP 1.1 and 1.2, with
and without WS-Addressing and MTOM, and envelopes laid out as other stacks write them (default
namespaces, their prefixes, declarations hoisted to the Envelope, ``xmlns=""``, xml:* attributes,
ids already present), by hand and generated."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from lxml import etree
from wss_support import NOW, Keys, check, envelope, received

from dynasoar import ns
from dynasoar.errors import WSSE
from dynasoar.soap.envelope import SoapVersion, parse_envelope, serialize
from dynasoar.soap.security import ReplayCache, TrustStore, fill_signature, sign
from dynasoar.soap.wsse import DS, WSU
from dynasoar.soap.wsse_read import SignedParts

VERSIONS = pytest.mark.parametrize("version", list(SoapVersion), ids=["soap11", "soap12"])
ENVS = {SoapVersion.SOAP11: ns.SOAP11_ENV, SoapVersion.SOAP12: ns.SOAP12_ENV}


def xmlsec_refilled(root: etree._Element, keys: Keys) -> bytes:
    """The signed message with its DigestValues and SignatureValue emptied and filled in
    again by xmlsec (its id lookup, its c14n, its digests, its RSA), serialized."""
    other = copy.deepcopy(root)
    parts = SignedParts.read(other)
    for value in other.iter(f"{{{DS}}}DigestValue", f"{{{DS}}}SignatureValue"):
        value.text = None
    targets = [parts.targets[ref.uri_id] for ref in parts.references]
    fill_signature(parts.signature, targets, keys.credentials, "xmlsec")
    return serialize(other)


def assert_signs_as_xmlsec(root: etree._Element, keys: Keys, trust: TrustStore) -> bytes:
    sign(root, keys.credentials, now=NOW)
    ours = serialize(root)
    assert ours == xmlsec_refilled(root, keys)
    assert b"<ds:DigestValue/>" not in ours
    check(received(ours), trust, replay=ReplayCache())  # xmlsec's ctx.verify, on the wire bytes
    return ours


@VERSIONS
@pytest.mark.parametrize("wsa", [True, False], ids=["wsa", "no-wsa"])
@pytest.mark.parametrize("mtom", [False, True], ids=["plain", "xop"])
def test_our_signature_is_xmlsecs_byte_for_byte(
    version: SoapVersion, wsa: bool, mtom: bool, sp: Keys, trust: TrustStore
) -> None:
    assert_signs_as_xmlsec(envelope(version, wsa=wsa, mtom=mtom), sp, trust)


@VERSIONS
def test_the_xmlsec_engine_signs_the_same_shape_and_verifies(
    version: SoapVersion, sp: Keys, trust: TrustStore
) -> None:
    root = envelope(version)
    sign(root, sp.credentials, now=NOW, engine="xmlsec")
    assert check(received(serialize(root)), trust).subject == "CN=sp-1"
    assert serialize(root) == xmlsec_refilled(root, sp)


# Envelopes as other stacks lay them out; {env} is the SOAP namespace.
FOREIGN = {
    "default-namespaces": (
        '<Envelope xmlns="{env}"><Header>'
        '<To xmlns="http://www.w3.org/2005/08/addressing">http://127.0.0.1:9/x</To>'
        '<Action xmlns="http://www.w3.org/2005/08/addressing">urn:a</Action></Header>'
        '<Body><Op xmlns="urn:op"><arg xmlns="">1</arg><more>2</more></Op></Body></Envelope>'
    ),
    "spyne-like": (
        '<soap11env:Envelope xmlns:soap11env="{env}" xmlns:tns="urn:dynasoar:samples:echo" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:wsa="http://www.w3.org/2005/08/addressing"><soap11env:Header>'
        "<wsa:RelatesTo>urn:uuid:1</wsa:RelatesTo><wsa:Action>urn:r</wsa:Action>"
        "</soap11env:Header><soap11env:Body><tns:EchoResponse><tns:EchoResult "
        'xsi:type="xs:string" xmlns:xs="http://www.w3.org/2001/XMLSchema">hi</tns:EchoResult>'
        "</tns:EchoResponse></soap11env:Body></soap11env:Envelope>"
    ),
    "zeep-like": (
        '<soap-env:Envelope xmlns:soap-env="{env}"><soap-env:Header '
        'xmlns:wsa="http://www.w3.org/2005/08/addressing">'
        "<wsa:Action>urn:a</wsa:Action><wsa:MessageID>urn:uuid:2</wsa:MessageID>"
        "<wsa:To>http://127.0.0.1:9/x</wsa:To></soap-env:Header><soap-env:Body>"
        '<ns0:Op xmlns:ns0="urn:op"><ns0:x>1</ns0:x></ns0:Op></soap-env:Body></soap-env:Envelope>'
    ),
    "pretty-printed, xml:lang, comments, unused declarations": (
        '<s:Envelope xmlns:s="{env}" xmlns:unused="urn:unused" xml:lang="en">\n'
        "  <!-- before the header -->\n"
        '  <s:Header xmlns:a="http://www.w3.org/2005/08/addressing">\n'
        '    <a:To s:mustUnderstand="1">http://127.0.0.1:9/x</a:To>\n'
        "    <a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous</a:Address>"
        "</a:ReplyTo>\n"
        '    <p:Ticket xmlns:p="urn:p" a:IsReferenceParameter="true">t-1</p:Ticket>\n'
        "  </s:Header>\n"
        '  <s:Body xml:space="preserve">\n'
        '    <m:Op xmlns:m="urn:op" xmlns:unused="urn:unused"><!-- c --><m:x m:a="1"/></m:Op>\n'
        "  </s:Body>\n"
        "</s:Envelope>"
    ),
    "ids already there, under other prefixes": (
        '<e:Envelope xmlns:e="{env}" xmlns:u="' + WSU + '" '
        'xmlns:w="http://schemas.xmlsoap.org/ws/2004/08/addressing">'
        '<e:Header><w:To u:Id="to-1">http://127.0.0.1:9/x</w:To></e:Header>'
        '<e:Body u:Id="body-1"><o:Op xmlns:o="urn:op" xmlns="urn:default"><x/></o:Op></e:Body>'
        "</e:Envelope>"
    ),
    "a header holding a Security of someone else's namespace": (
        '<S:Envelope xmlns:S="{env}"><S:Header><x:Security xmlns:x="urn:not-wsse"/>'
        '<wsa:To xmlns:wsa="http://www.w3.org/2005/08/addressing">http://127.0.0.1:9/x</wsa:To>'
        '</S:Header><S:Body><Op xmlns="urn:op"/></S:Body></S:Envelope>'
    ),
}


@VERSIONS
@pytest.mark.parametrize("name", FOREIGN)
def test_foreign_layouts_sign_as_xmlsec_signs_them(
    version: SoapVersion, name: str, sp: Keys, trust: TrustStore
) -> None:
    text = FOREIGN[name].replace("{env}", ENVS[version])
    root = parse_envelope(text.encode()).root
    wire = assert_signs_as_xmlsec(root, sp, trust)
    assert wire.count(b"<ds:Reference ") == len(SignedParts.read(received(wire)).targets)


def test_a_wsse_security_header_already_there_is_refused(sp: Keys) -> None:
    root = envelope(SoapVersion.SOAP11)
    root[0].insert(0, etree.Element(f"{{{WSSE}}}Security"))
    with pytest.raises(ValueError, match="already has a wsse:Security header"):
        sign(root, sp.credentials)


# -- generated layouts --------------------------------------------------------------------

PREFIXES = st.sampled_from(["", "a", "ns0", "s", "wsa", "xs", "tns"])
URIS = st.sampled_from(["urn:one", "urn:two", "http://example.com/3", ns.WSA])


@st.composite
def payloads(draw: st.DrawFn, depth: int = 0) -> etree._Element:
    """An element of generated name, namespace, prefix and attributes, and children."""
    uri = draw(st.one_of(st.none(), URIS))
    prefix = draw(PREFIXES) if uri else None
    nsmap: dict[str | None, str] = {}
    if uri:
        nsmap[prefix or None] = uri
    if draw(st.booleans()):  # an extra, maybe unused, maybe clashing declaration
        nsmap[draw(PREFIXES) or None] = draw(URIS)
    tag = f"{{{uri}}}e{depth}" if uri else f"e{depth}"
    if uri is None and None in nsmap:
        del nsmap[None]  # an unqualified element cannot sit under its own default namespace
    element = etree.Element(tag, nsmap=nsmap)  # type: ignore[arg-type]
    for name in draw(st.lists(st.sampled_from(["a", "b", "{urn:two}c", "{urn:one}d"]), max_size=3)):
        element.set(name, draw(st.text("ab\t\n\r<&\"' é", max_size=5)))
    if draw(st.booleans()):
        element.set(f"{{{ns.XML}}}lang", "fr")
    element.text = draw(st.text("xy \n&<>\r", max_size=6)) or None
    if depth < 3:
        for child in draw(st.lists(payloads(depth + 1), max_size=3)):
            element.append(child)
            if draw(st.booleans()):
                element.append(etree.Comment(" note "))
    return element


def names(root: etree._Element) -> list[tuple[str, list[str]]]:
    return [(str(e.tag), sorted(e.attrib)) for e in root.iter() if isinstance(e.tag, str)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    version=st.sampled_from(list(SoapVersion)),
    wsa=st.booleans(),
    body=payloads(),
    extra_header=st.one_of(st.none(), payloads()),
    reparse=st.booleans(),
)
def test_generated_layouts_sign_as_xmlsec_signs_them(
    sp: Keys,
    trust: TrustStore,
    version: SoapVersion,
    wsa: bool,
    body: etree._Element,
    extra_header: etree._Element | None,
    reparse: bool,
) -> None:
    root = envelope(version, wsa=wsa, body=body)
    if extra_header is not None:
        extra_header.set(f"{{{ns.WSA}}}IsReferenceParameter", "true")
        root[0].append(extra_header)
    wire = parse_envelope(serialize(root)).root
    # lxml can build a tree its own serialization does not describe (appending an element
    # whose attribute's namespace the new parent declares under a prefix the element
    # redeclares): what any signer digests is then not what the receiver reads, and the two
    # engines' in-memory c14n of it may differ; left out (on the wire both fail alike).
    assume(names(root) == names(wire))
    if reparse:  # as a relay hands it over: parsed from bytes, declarations where they were
        root = wire
    note(serialize(root).decode())
    assert_signs_as_xmlsec(root, sp, trust)
