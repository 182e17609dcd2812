"""Where a reply or fault goes and what it carries (WS-Addressing 1.0 Core §3.4, SOAP Binding
§3): the endpoint selected, its kind, and a reply written by someone else completed with what
it lacks, nothing added twice."""

from __future__ import annotations

import pytest
from lxml import etree

from dynasoar import ns
from dynasoar.errors import (
    ActionNotSupported,
    InvalidAddressingHeader,
    MessageAddressingHeaderRequired,
)
from dynasoar.soap.addressing import AddressingHeaders, read_headers
from dynasoar.soap.envelope import SoapVersion, parse_envelope
from dynasoar.soap.replies import ANONYMOUS, Destination, complete, fault_target, select

A = ns.WSA
IS_REF = f"{{{A}}}IsReferenceParameter"
PARAM = '<p:Key xmlns:p="urn:p" p:kind="gold">k<p:Child/></p:Key>'


def request(xml: str, wsa: str = A) -> AddressingHeaders:
    root = etree.fromstring(
        f'<H xmlns:wsa="{wsa}" xmlns:q="urn:q"><wsa:Action>urn:a</wsa:Action>'
        f"<wsa:MessageID>urn:uuid:r</wsa:MessageID>{xml}</H>"
    )
    return read_headers(list(root))


def epr(tag: str, address: str, params: str = "") -> str:
    refs = f"<wsa:ReferenceParameters>{params}</wsa:ReferenceParameters>" if params else ""
    return f"<wsa:{tag}><wsa:Address>{address}</wsa:Address>{refs}</wsa:{tag}>"


def reply(headers: str = "", version: SoapVersion = SoapVersion.SOAP12) -> bytes:
    env = version.envelope_ns
    header = f"<s:Header>{headers}</s:Header>" if headers else ""
    return (
        f'<s:Envelope xmlns:s="{env}" xmlns:wsa="{A}">{header}'
        '<s:Body><m:R xmlns:m="urn:m"/></s:Body></s:Envelope>'
    ).encode()


def blocks(envelope_bytes: bytes) -> list[etree._Element]:
    return parse_envelope(envelope_bytes).header_blocks


@pytest.mark.parametrize(
    ("xml", "fault", "kind", "header"),
    [
        ("", False, Destination.ANONYMOUS, None),
        ("", True, Destination.ANONYMOUS, None),
        (epr("ReplyTo", "http://c/r"), False, Destination.ADDRESS, "ReplyTo"),
        (epr("ReplyTo", "http://c/r"), True, Destination.ADDRESS, "ReplyTo"),
        (epr("ReplyTo", ns.WSA_NONE), True, Destination.NONE, "ReplyTo"),
        (epr("ReplyTo", "http://c/r") + epr("FaultTo", A + "/anonymous"), True,
         Destination.ANONYMOUS, "FaultTo"),
        (epr("ReplyTo", A + "/anonymous") + epr("FaultTo", ns.WSA_NONE), False,
         Destination.ANONYMOUS, "ReplyTo"),
        (epr("FaultTo", "http://c/f"), False, Destination.ANONYMOUS, None),
    ],
)  # fmt: skip
def test_select_follows_core_3_4(
    xml: str, fault: bool, kind: Destination, header: str | None
) -> None:
    target = select(request(xml), fault=fault)
    assert (target.kind, target.header) == (kind, header)
    assert (target.address is not None) == (kind is Destination.ADDRESS)


def test_a_fault_about_the_addressing_headers_goes_back_on_the_response() -> None:
    headers = request(epr("FaultTo", "http://c/f"))
    broken = InvalidAddressingHeader("x", subsubcode="ActionMismatch", problem_header=(A, "Action"))
    assert fault_target(headers, broken) is ANONYMOUS
    missing = MessageAddressingHeaderRequired("x", problem_header=(A, "MessageID"))
    assert fault_target(headers, missing) is ANONYMOUS
    assert fault_target(headers, ActionNotSupported("x", action="urn:a")).address == "http://c/f"
    duplicated = request(epr("FaultTo", "http://c/f") * 2)
    assert fault_target(duplicated, ActionNotSupported("x", action="urn:a")) is ANONYMOUS


def test_a_reply_without_addressing_gets_all_of_it() -> None:
    headers = request(epr("ReplyTo", A + "/anonymous", PARAM))
    envelope = parse_envelope(reply())
    assert complete(envelope, headers, "urn:a/Response", select(headers, fault=False))
    names = [etree.QName(b).localname for b in envelope.header_blocks]
    assert names == ["Action", "MessageID", "RelatesTo", "Key"]
    key = envelope.header_blocks[-1]
    assert key.get(IS_REF) == "true" and key.get("{urn:p}kind") == "gold" and len(key) == 1


def test_a_complete_reply_is_left_alone() -> None:
    headers = request("")
    envelope = parse_envelope(
        reply("<wsa:Action>urn:own</wsa:Action><wsa:RelatesTo>urn:uuid:r</wsa:RelatesTo>")
    )
    assert not complete(envelope, headers, "urn:a/Response", ANONYMOUS)
    assert [b.text for b in envelope.header_blocks] == ["urn:own", "urn:uuid:r"]


def test_only_what_is_missing_is_added() -> None:
    headers = request("")
    envelope = parse_envelope(reply("<wsa:RelatesTo>urn:uuid:r</wsa:RelatesTo>"))
    assert complete(envelope, headers, "urn:a/Response", ANONYMOUS)
    assert [(etree.QName(b).localname, b.text) for b in envelope.header_blocks] == [
        ("RelatesTo", "urn:uuid:r"),
        ("Action", "urn:a/Response"),
    ]


def test_reference_parameters_already_there_are_not_added_twice() -> None:
    headers = request(epr("ReplyTo", A + "/anonymous", PARAM + PARAM))
    marked = PARAM.replace("<p:Key ", '<p:Key wsa:IsReferenceParameter="true" ')
    envelope = parse_envelope(reply("<wsa:Action>urn:own</wsa:Action>" + marked))
    assert complete(envelope, headers, "urn:x", select(headers, fault=False))
    keys = [b for b in envelope.header_blocks if b.tag == "{urn:p}Key"]
    assert len(keys) == 2, "one was there; the second of the EPR's two was added"
    assert not complete(envelope, headers, "urn:x", select(headers, fault=False))


def test_a_services_own_header_of_the_same_name_is_not_the_parameter() -> None:
    headers = request(epr("ReplyTo", A + "/anonymous", PARAM))
    envelope = parse_envelope(reply("<wsa:Action>urn:own</wsa:Action>" + PARAM))
    assert complete(envelope, headers, "urn:x", select(headers, fault=False))
    keys = [b for b in envelope.header_blocks if b.tag == "{urn:p}Key"]
    assert [k.get(IS_REF) for k in keys] == [None, "true"]


def test_a_reply_sent_to_an_address_names_it_first() -> None:
    headers = request(epr("ReplyTo", "http://c/replies"))
    envelope = parse_envelope(reply("<wsa:Action>urn:own</wsa:Action>"))
    assert complete(envelope, headers, "urn:x", select(headers, fault=False))
    assert [(etree.QName(b).localname, b.text) for b in envelope.header_blocks][:2] == [
        ("To", "http://c/replies"),
        ("Action", "urn:own"),
    ]
    anonymous_to = parse_envelope(reply(f"<wsa:To>{A}/anonymous</wsa:To>"))
    assert complete(anonymous_to, headers, "urn:x", select(headers, fault=False))
    assert anonymous_to.header_blocks[0].text == "http://c/replies"


def test_2004_properties_and_parameters_unmarked() -> None:
    w04 = ns.WSA_2004
    props = '<r:Tenant xmlns:r="urn:r">t</r:Tenant>'
    xml = (
        f"<wsa:ReplyTo><wsa:Address>{w04}/role/anonymous</wsa:Address>"
        f"<wsa:ReferenceProperties>{props}</wsa:ReferenceProperties>"
        f"<wsa:ReferenceParameters>{PARAM}</wsa:ReferenceParameters></wsa:ReplyTo>"
    )
    headers = request(xml, w04)
    envelope = parse_envelope(reply())
    assert complete(envelope, headers, "urn:x", select(headers, fault=False))
    tail = envelope.header_blocks[-2:]
    assert [b.tag for b in tail] == ["{urn:r}Tenant", "{urn:p}Key"]
    assert all(b.get(IS_REF) is None for b in tail)
    assert {etree.QName(b).namespace for b in envelope.header_blocks[:-2]} == {w04}
