"""Errors → SOAP 1.1 / 1.2 faults and back: codes and subcodes, reason text, HTTP status, the
WS-Addressing headers of a fault reply, WS-A fault detail, env:VersionMismatch with Upgrade."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import pytest
from lxml import etree

from dynasoar import errors, ns
from dynasoar.errors import (
    ActionNotSupported,
    AddressingFault,
    Busy,
    CallTimeout,
    DeploymentFailed,
    DeploymentTimeout,
    DestinationUnreachable,
    DynasoarError,
    EndpointUnavailable,
    FailedAuthentication,
    FaultInfo,
    HostLost,
    ImageNotHeld,
    ImageUnavailable,
    Interrupted,
    InvalidAddressingHeader,
    InvalidPackage,
    InvalidRequest,
    InvalidSecurity,
    MalformedMessage,
    MessageAddressingHeaderRequired,
    MessageExpired,
    MustUnderstand,
    NoHostAvailable,
    PayloadTooLarge,
    QName,
    ReceiverError,
    RegistryUnavailable,
    RemoteFault,
    ReplyToNotAllowed,
    SecurityFault,
    SenderError,
    ShuttingDown,
    SnapshotIncompatible,
    TransportError,
    UnknownHost,
    UnknownService,
    Unreachable,
    VersionMismatch,
)
from dynasoar.soap import addressing
from dynasoar.soap.addressing import REPLY_RELATIONSHIP, AddressingHeaders
from dynasoar.soap.envelope import Envelope, SoapVersion, parse_envelope
from dynasoar.soap.faults import fault_reply, http_status, read_fault, render_fault

S11, S12, WSA, WSA04, DYN = ns.SOAP11_ENV, ns.SOAP12_ENV, ns.WSA, ns.WSA_2004, ns.DYN
WSSE = errors.WSSE
VERSIONS = pytest.mark.parametrize("version", list(SoapVersion), ids=["soap11", "soap12"])
#: Non-ASCII, markup characters and a CDATA terminator: all must survive as text.
REASON = "Grüße, 日本語 — <tag attr=\"x\"> & 'quotes' ]]> done"


@dataclass(frozen=True)
class Case:
    error: DynasoarError
    sender: bool
    subcode: QName | None = None
    subsubcode: QName | None = None

    @property
    def wsa_code(self) -> bool:
        """A WS-Addressing or WS-Security fault with its own code (SOAP 1.1: the faultcode)."""
        return self.subcode is not None and self.subcode[0] in (WSA, WSSE)


CASES: dict[str, Case] = {
    "DynasoarError": Case(DynasoarError(REASON), sender=False),
    "SenderError": Case(SenderError(REASON), sender=True),
    "MalformedMessage": Case(MalformedMessage(REASON), True, (DYN, "MalformedMessage")),
    "PayloadTooLarge": Case(PayloadTooLarge(REASON), True, (DYN, "PayloadTooLarge")),
    "InvalidPackage": Case(InvalidPackage(REASON), True, (DYN, "InvalidPackage")),
    "UnknownService": Case(UnknownService(REASON), True, (DYN, "UnknownService")),
    "UnknownHost": Case(UnknownHost(REASON), True, (DYN, "UnknownHost")),
    "InvalidRequest": Case(InvalidRequest(REASON), True, (DYN, "InvalidRequest")),
    "ImageNotHeld": Case(ImageNotHeld(REASON), True, (DYN, "ImageNotHeld")),
    "SnapshotIncompatible": Case(
        SnapshotIncompatible(REASON), True, (DYN, "SnapshotIncompatible")
    ),
    "AddressingFault": Case(AddressingFault(REASON), sender=True),
    "InvalidAddressingHeader": Case(
        InvalidAddressingHeader(
            REASON, subsubcode="ActionMismatch", problem_header=(WSA, "Action")
        ),
        True,
        (WSA, "InvalidAddressingHeader"),
        (WSA, "ActionMismatch"),
    ),
    "ReplyToNotAllowed": Case(
        ReplyToNotAllowed(REASON, problem_header=(WSA, "ReplyTo")),
        True,
        (WSA, "InvalidAddressingHeader"),
        (DYN, "ReplyToNotAllowed"),
    ),
    "InvalidAddressingHeader-bare": Case(
        InvalidAddressingHeader(REASON, subsubcode=None, problem_header=None),
        True,
        (WSA, "InvalidAddressingHeader"),
    ),
    "MessageAddressingHeaderRequired": Case(
        MessageAddressingHeaderRequired(REASON, problem_header=(WSA, "MessageID")),
        True,
        (WSA, "MessageAddressingHeaderRequired"),
    ),
    "ActionNotSupported": Case(
        ActionNotSupported(REASON, action="urn:svc/Nope"), True, (WSA, "ActionNotSupported")
    ),
    "DestinationUnreachable": Case(
        DestinationUnreachable(REASON, iri="http://sp/services/Gone"),
        True,
        (WSA, "DestinationUnreachable"),
    ),
    "DestinationUnreachable-bare": Case(
        DestinationUnreachable(REASON), True, (WSA, "DestinationUnreachable")
    ),
    "EndpointUnavailable": Case(
        EndpointUnavailable(REASON, retry_after_ms=5000), False, (WSA, "EndpointUnavailable")
    ),
    "SecurityFault": Case(SecurityFault(REASON), sender=True),
    "InvalidSecurity": Case(InvalidSecurity(REASON), True, (WSSE, "InvalidSecurity")),
    "FailedAuthentication": Case(
        FailedAuthentication(REASON), True, (WSSE, "FailedAuthentication")
    ),
    "MessageExpired": Case(MessageExpired(REASON), True, (WSSE, "MessageExpired")),
    "ReceiverError": Case(ReceiverError(REASON), sender=False),
    "NoHostAvailable": Case(NoHostAvailable(REASON), False, (DYN, "NoHostAvailable")),
    "DeploymentFailed": Case(DeploymentFailed(REASON), False, (DYN, "DeploymentFailed")),
    "DeploymentTimeout": Case(DeploymentTimeout(REASON), False, (DYN, "DeploymentTimeout")),
    "HostLost": Case(HostLost(REASON), False, (DYN, "HostLost")),
    "Busy": Case(Busy(REASON), False, (DYN, "Busy")),
    "ShuttingDown": Case(ShuttingDown(REASON), False, (DYN, "ShuttingDown")),
    "CallTimeout": Case(CallTimeout(REASON), False, (DYN, "CallTimeout")),
    "Interrupted": Case(Interrupted(REASON), False, (DYN, "Interrupted")),
    "RegistryUnavailable": Case(RegistryUnavailable(REASON), False, (DYN, "RegistryUnavailable")),
    "ImageUnavailable": Case(ImageUnavailable(REASON), False, (DYN, "ImageUnavailable")),
    "TransportError": Case(TransportError(REASON), False, (DYN, "TransportError")),
    "Unreachable": Case(Unreachable(REASON), False, (DYN, "TransportError")),
    "RemoteFault": Case(
        RemoteFault(FaultInfo((S12, "Receiver"), reason="peer said no"), status=500),
        sender=False,
    ),
}
EACH_CASE = pytest.mark.parametrize("name", CASES)
WSA_CASES = [name for name, case in CASES.items() if isinstance(case.error, AddressingFault)]


def request(wsa: str = WSA, message_id: str | None = "urn:uuid:request-1") -> AddressingHeaders:
    return AddressingHeaders(
        namespace=wsa,
        to="http://sp/services/Echo",
        action="urn:svc/Echo",
        message_id=message_id,
        present=True,
    )


def resolve(el: etree._Element, text: str | None) -> QName:
    """A QName-valued text, resolved with the namespaces in scope at ``el``."""
    prefix, _, local = (text or "").strip().rpartition(":")
    uri = el.nsmap.get(prefix or None)
    assert uri is not None or not prefix, f"prefix {prefix!r} of {text!r} is not in scope"
    return (uri or "", local)


def local(el: etree._Element) -> str:
    return str(etree.QName(el).localname)


def check_soap_rules(env: Envelope) -> None:
    """The SOAP envelope rules that are cheap to check on a rendered fault."""
    assert env.body is not None
    children = [c for c in env.body if isinstance(c.tag, str)]
    assert len(children) == 1, "a fault Body holds exactly one element, the Fault"
    fault = children[0]
    e = env.version.envelope_ns
    assert fault.tag == f"{{{e}}}Fault"
    assert all(etree.QName(b).namespace for b in env.header_blocks), "header blocks are qualified"
    kids = [c for c in fault if isinstance(c.tag, str)]
    if env.version is SoapVersion.SOAP12:
        names = [c.tag for c in kids]
        order = ["Code", "Reason", "Node", "Role", "Detail"]
        assert all(etree.QName(t).namespace == e for t in names)
        assert [local(c) for c in kids] == sorted((local(c) for c in kids), key=order.index), (
            "SOAP 1.2 Fault children in schema order"
        )
        assert names[:2] == [f"{{{e}}}Code", f"{{{e}}}Reason"]
        node = kids[0]
        first = True
        while node is not None:
            parts = [local(c) for c in node if isinstance(c.tag, str)]
            assert parts in (["Value"], ["Value", "Subcode"]), parts
            value = node.find(f"{{{e}}}Value")
            assert value is not None
            code = resolve(value, value.text)
            if first:
                assert code[0] == e and code[1] in (
                    "VersionMismatch",
                    "MustUnderstand",
                    "DataEncodingUnknown",
                    "Sender",
                    "Receiver",
                )
            first = False
            node = node.find(f"{{{e}}}Subcode")
        texts = kids[1].findall(f"{{{e}}}Text")
        assert texts and all(t.get(f"{{{ns.XML}}}lang") for t in texts)
    else:
        names = [c.tag for c in kids]
        order = ["faultcode", "faultstring", "faultactor", "detail"]
        assert all(t in order for t in names), "SOAP 1.1 Fault children are unqualified"
        assert names == sorted(names, key=order.index)
        assert names[:2] == ["faultcode", "faultstring"]
        resolve(kids[0], kids[0].text)
    for problem in env.root.iter(f"{{{WSA}}}ProblemHeaderQName", f"{{{WSA04}}}ProblemHeaderQName"):
        uri, name = resolve(problem, problem.text)
        assert uri and name, f"ProblemHeaderQName {problem.text!r} names no qualified header"


def rendered(
    error: DynasoarError, version: SoapVersion, req: AddressingHeaders | None = None
) -> tuple[int, str, Envelope]:
    status, content_type, body = fault_reply(error, version, req)
    env = parse_envelope(body)
    check_soap_rules(env)
    return status, content_type, env


# -- codes, reason, status -------------------------------------------------------------------


def test_every_error_class_is_in_the_table() -> None:
    classes = {
        obj
        for _, obj in inspect.getmembers(errors, inspect.isclass)
        if issubclass(obj, DynasoarError) and obj.__module__ == errors.__name__
    }
    covered = {type(case.error) for case in CASES.values()} | {VersionMismatch, MustUnderstand}
    assert classes == covered


@EACH_CASE
@VERSIONS
def test_fault_parses_back_to_its_codes(name: str, version: SoapVersion) -> None:
    case = CASES[name]
    status, content_type, env = rendered(case.error, version)
    assert env.version is version
    assert env.body is not None
    fault = read_fault(env.body, version)
    assert fault is not None
    if version is SoapVersion.SOAP12:
        assert fault.code == (S12, "Sender" if case.sender else "Receiver")
        assert fault.subcodes == [c for c in (case.subcode, case.subsubcode) if c]
        assert status == (400 if case.sender else 500)
        assert content_type.startswith("application/soap+xml")
    elif case.wsa_code:
        assert (fault.code, fault.subcodes) == (case.subcode, [])
        assert status == 500
    else:
        assert fault.code == (S11, "Client" if case.sender else "Server")
        assert fault.subcodes == ([case.subcode] if case.subcode else [])
        assert status == 500
    if version is SoapVersion.SOAP11:
        assert content_type.startswith("text/xml")
    assert status == http_status(case.error, version)
    # Non-ASCII and markup characters come back verbatim.
    assert fault.reason == case.error.reason


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.subcode and c.subcode[0] == DYN])
@VERSIONS
def test_dynasoar_faults_carry_a_detail_element_named_by_the_subcode(
    name: str, version: SoapVersion
) -> None:
    case = CASES[name]
    env = rendered(case.error, version)[2]
    assert env.body is not None
    e = version.envelope_ns
    detail = env.body.find(
        f"{{{e}}}Fault/" + ("detail" if version is SoapVersion.SOAP11 else f"{{{e}}}Detail")
    )
    assert detail is not None
    assert case.subcode is not None
    assert [(c.tag, c.text) for c in detail] == [("{%s}%s" % case.subcode, REASON)]


def test_read_fault_of_a_normal_reply_is_none() -> None:
    for version in SoapVersion:
        e = version.envelope_ns
        body = etree.fromstring(f'<s:Body xmlns:s="{e}"><m:EchoResponse xmlns:m="urn:m"/></s:Body>')
        assert read_fault(body, version) is None


# -- WS-Addressing fault replies --------------------------------------------------------------


def wsa_blocks(env: Envelope, wsa: str) -> dict[str, list[etree._Element]]:
    out: dict[str, list[etree._Element]] = {}
    for block in env.header_blocks:
        if etree.QName(block).namespace == wsa:
            out.setdefault(local(block), []).append(block)
    return out


@EACH_CASE
@VERSIONS
def test_fault_reply_to_an_addressed_request(name: str, version: SoapVersion) -> None:
    case = CASES[name]
    env = rendered(case.error, version, request())[2]
    headers = wsa_blocks(env, WSA)
    # SOAP Binding §6: WS-Addressing's own faults .../fault, every other .../soap/fault.
    action = WSA + ("/fault" if isinstance(case.error, AddressingFault) else "/soap/fault")
    assert [b.text for b in headers["Action"]] == [action]
    assert [b.text for b in headers["RelatesTo"]] == ["urn:uuid:request-1"]
    assert headers["RelatesTo"][0].get("RelationshipType") in (None, REPLY_RELATIONSHIP)
    [message_id] = headers["MessageID"]
    assert message_id.text and message_id.text != "urn:uuid:request-1"
    assert wsa_blocks(env, WSA04) == {}


@EACH_CASE
@VERSIONS
def test_fault_reply_answers_a_2004_request_in_2004(name: str, version: SoapVersion) -> None:
    case = CASES[name]
    env = rendered(case.error, version, request(WSA04))[2]
    headers = wsa_blocks(env, WSA04)
    assert [b.text for b in headers["Action"]] == [WSA04 + "/fault"]
    assert [b.text for b in headers["RelatesTo"]] == ["urn:uuid:request-1"]
    assert "MessageID" in headers
    assert {local(b) for b in wsa_blocks(env, WSA)} <= {"FaultDetail"}


@pytest.mark.parametrize(
    "req", [None, AddressingHeaders()], ids=["no-request-headers", "request-without-wsa"]
)
@VERSIONS
def test_no_addressing_headers_for_a_plain_request(
    req: AddressingHeaders | None, version: SoapVersion
) -> None:
    env = rendered(NoHostAvailable(REASON), version, req)[2]
    assert env.header_blocks == []


@VERSIONS
def test_a_request_without_message_id_gets_no_relates_to(version: SoapVersion) -> None:
    env = rendered(NoHostAvailable(REASON), version, request(message_id=None))[2]
    headers = wsa_blocks(env, WSA)
    assert "RelatesTo" not in headers and "Action" in headers


def expected_detail(error: DynasoarError) -> list[tuple[QName, str]]:
    return [(item.name, item.text) for item in error.detail]


def detail_items(parent: etree._Element) -> list[tuple[QName, str]]:
    out = []
    for child in parent:
        text = child.text or ""
        if local(child) == "ProblemHeaderQName":
            text = "{%s}%s" % resolve(child, text)
        elif local(child) == "ProblemAction":
            text = child.findtext(f"{{{WSA}}}Action") or ""
        out.append(((etree.QName(child).namespace or "", local(child)), text))
    return out


@pytest.mark.parametrize("name", [n for n in WSA_CASES if CASES[n].error.detail])
@pytest.mark.parametrize("req", [None, request()], ids=["unaddressed", "addressed"])
def test_soap11_wsa_fault_detail_travels_in_a_fault_detail_header(
    name: str, req: AddressingHeaders | None
) -> None:
    error = CASES[name].error
    env = rendered(error, SoapVersion.SOAP11, req)[2]
    [fault_detail] = wsa_blocks(env, WSA)["FaultDetail"]
    assert detail_items(fault_detail) == expected_detail(error)
    assert env.body is not None
    assert env.body.find(f"{{{S11}}}Fault/detail") is None


@pytest.mark.parametrize("name", [n for n in WSA_CASES if CASES[n].error.detail])
def test_soap12_wsa_fault_detail_is_in_the_fault(name: str) -> None:
    error = CASES[name].error
    env = rendered(error, SoapVersion.SOAP12, request())[2]
    assert "FaultDetail" not in wsa_blocks(env, WSA)
    assert env.body is not None
    detail = env.body.find(f"{{{S12}}}Fault/{{{S12}}}Detail")
    assert detail is not None
    assert detail_items(detail) == expected_detail(error)


@pytest.mark.parametrize(
    ("problem", "req_ns"),
    [
        ((WSA, "To"), WSA),
        ((WSA, "To"), None),
        ((WSA04, "To"), WSA04),
    ],
    ids=["wsa10", "wsa10-unaddressed", "wsa2004"],
)
@VERSIONS
def test_problem_header_qname_names_the_header(
    problem: QName, req_ns: str | None, version: SoapVersion
) -> None:
    # What check_request raises for a repeated wsa:To in a request of that namespace.
    error = InvalidAddressingHeader(
        "wsa:To appears twice", subsubcode="InvalidCardinality", problem_header=problem
    )
    body = render_fault(error, version, request(req_ns) if req_ns else None)
    root = etree.fromstring(body)
    # The detail element is in the request's WS-Addressing namespace (2004/08 for 2004/08).
    [el] = list(root.iter(f"{{{req_ns or WSA}}}ProblemHeaderQName"))
    assert resolve(el, el.text) == problem


#: The W3C WS-Addressing 1.0 schema's declarations of the fault detail elements.
WSA_DETAIL_XSD = f"""
<xs:schema xmlns:xs="{ns.XSD}" xmlns:wsa="{WSA}" targetNamespace="{WSA}"
           elementFormDefault="qualified">
  <xs:complexType name="AttributedQNameType"><xs:simpleContent>
    <xs:extension base="xs:QName"><xs:anyAttribute namespace="##other" processContents="lax"/>
    </xs:extension></xs:simpleContent></xs:complexType>
  <xs:complexType name="AttributedURIType"><xs:simpleContent>
    <xs:extension base="xs:anyURI"><xs:anyAttribute namespace="##other" processContents="lax"/>
    </xs:extension></xs:simpleContent></xs:complexType>
  <xs:complexType name="AttributedUnsignedLongType"><xs:simpleContent>
    <xs:extension base="xs:unsignedLong">
      <xs:anyAttribute namespace="##other" processContents="lax"/>
    </xs:extension></xs:simpleContent></xs:complexType>
  <xs:element name="Action" type="wsa:AttributedURIType"/>
  <xs:element name="ProblemHeaderQName" type="wsa:AttributedQNameType"/>
  <xs:element name="ProblemIRI" type="wsa:AttributedURIType"/>
  <xs:element name="RetryAfter" type="wsa:AttributedUnsignedLongType"/>
  <xs:element name="ProblemAction">
    <xs:complexType>
      <xs:sequence>
        <xs:element ref="wsa:Action" minOccurs="0"/>
        <xs:element name="SoapAction" minOccurs="0" type="xs:anyURI"/>
      </xs:sequence>
      <xs:anyAttribute namespace="##other" processContents="lax"/>
    </xs:complexType>
  </xs:element>
</xs:schema>
"""


@pytest.mark.parametrize(
    "name",
    [n for n in WSA_CASES if CASES[n].error.detail],
)
@VERSIONS
def test_wsa_fault_detail_is_valid_per_the_ws_addressing_schema(
    name: str, version: SoapVersion
) -> None:
    schema = etree.XMLSchema(etree.fromstring(WSA_DETAIL_XSD))
    body = render_fault(CASES[name].error, version, request())
    root = etree.fromstring(body)
    names = {f"{{{WSA}}}{item.name[1]}" for item in CASES[name].error.detail}
    found = [el for el in root.iter() if el.tag in names]
    assert found
    for el in found:
        # Serialising a subtree keeps the namespaces in scope: QName values still resolve.
        standalone = etree.fromstring(etree.tostring(el))
        assert schema.validate(standalone), schema.error_log


# -- VersionMismatch ---------------------------------------------------------------------------


@pytest.mark.parametrize("req", [None, request()], ids=["unaddressed", "addressed"])
@VERSIONS
def test_version_mismatch_is_a_soap12_fault_with_an_upgrade_header(
    version: SoapVersion, req: AddressingHeaders | None
) -> None:
    status, content_type, env = rendered(VersionMismatch(REASON), version, req)
    assert env.version is SoapVersion.SOAP12
    assert status == 500  # SOAP 1.2 Part 2 §7.5.2.2: env:VersionMismatch → 500
    assert content_type.startswith("application/soap+xml")
    assert env.body is not None
    fault = read_fault(env.body, SoapVersion.SOAP12)
    assert fault is not None
    assert (fault.code, fault.subcodes, fault.reason) == ((S12, "VersionMismatch"), [], REASON)
    upgrades = [b for b in env.header_blocks if b.tag == f"{{{S12}}}Upgrade"]
    assert len(upgrades) == 1
    supported = upgrades[0].findall(f"{{{S12}}}SupportedEnvelope")
    assert [resolve(s, s.get("qname")) for s in supported] == [
        (S12, "Envelope"),
        (S11, "Envelope"),
    ]


# -- MustUnderstand ----------------------------------------------------------------------------


@pytest.mark.parametrize("req", [None, request()], ids=["unaddressed", "addressed"])
@VERSIONS
def test_must_understand_names_what_was_not_understood(
    version: SoapVersion, req: AddressingHeaders | None
) -> None:
    missed = (("urn:example:tx", "Transaction"), ("urn:example:other", "Hint"))
    error = MustUnderstand(REASON, not_understood=missed)
    status, _, env = rendered(error, version, req)
    assert status == 500  # a MustUnderstand fault is not a Sender fault: 500 in both
    assert env.body is not None
    fault = read_fault(env.body, version)
    assert fault is not None
    assert fault.code == (env.version.envelope_ns, "MustUnderstand")
    assert fault.reason == REASON
    blocks = [b for b in env.header_blocks if b.tag == f"{{{S12}}}NotUnderstood"]
    if version is SoapVersion.SOAP12:
        assert [resolve(b, b.get("qname")) for b in blocks] == list(missed)
    else:
        assert blocks == []  # SOAP 1.1 has no NotUnderstood header
    if req is not None:
        assert req.message_id in [
            rel for rel, _ in addressing.read_headers(env.header_blocks).relates_to
        ]
