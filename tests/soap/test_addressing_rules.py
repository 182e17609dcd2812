"""The WS-Addressing rules an endpoint applies (WS-Addressing 1.0 SOAP Binding §6), one table
row per rule, and how the transport's action is read (SOAPAction / the SOAP 1.2 parameter)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from lxml import etree

from dynasoar import ns
from dynasoar.errors import (
    ActionNotSupported,
    AddressingFault,
    DestinationUnreachable,
    DetailItem,
    InvalidAddressingHeader,
    MessageAddressingHeaderRequired,
)
from dynasoar.soap.addressing import AddressingHeaders, read_headers
from dynasoar.soap.addressing_rules import EndpointRules, check_request, soap_action_of

HERE = "http://sp.example/services/Echo"
ECHO = "urn:svc/Echo"  # request-response
NOTIFY = "urn:svc/Notify"  # one-way
REPLIES = {ECHO: True, NOTIFY: False}


def rules(required: bool = True, any_action: bool = False) -> EndpointRules:
    return EndpointRules(
        required=required,
        actions=None if any_action else set(REPLIES),
        expects_reply=lambda action: REPLIES.get(action, True),
        is_destination=lambda to: to == HERE,
    )


def headers(xml: str, wsa: str = ns.WSA) -> AddressingHeaders:
    root = etree.fromstring(f'<H xmlns:wsa="{wsa}" xmlns:p="urn:p">{xml}</H>')
    return read_headers(list(root))


def problem_header(error: AddressingFault) -> tuple[str, str] | None:
    for item in error.detail:
        if item.name == (ns.WSA, "ProblemHeaderQName"):
            uri, _, local = item.text[1:].partition("}")
            return uri, local
    return None


GOOD = (
    f"<wsa:To>{HERE}</wsa:To><wsa:Action>{ECHO}</wsa:Action>"
    "<wsa:MessageID>urn:uuid:1</wsa:MessageID>"
)
A = ns.WSA
A04 = ns.WSA_2004


@dataclass(frozen=True)
class Broken:
    xml: str
    error: type[AddressingFault]
    subcode: str
    subsubcode: str | None = None
    problem: tuple[str, str] | None = None
    detail: DetailItem | None = None
    soap_action: str | None = None
    wsa: str = ns.WSA
    required: bool = True


BROKEN = {
    "required-but-absent": Broken(
        "<p:Other/>",
        MessageAddressingHeaderRequired,
        "MessageAddressingHeaderRequired",
        problem=(A, "Action"),
    ),
    "no-action": Broken(
        f"<wsa:To>{HERE}</wsa:To><wsa:MessageID>urn:uuid:1</wsa:MessageID>",
        MessageAddressingHeaderRequired,
        "MessageAddressingHeaderRequired",
        problem=(A, "Action"),
        required=False,
    ),
    "duplicate-to": Broken(
        GOOD + f"<wsa:To>{HERE}</wsa:To>",
        InvalidAddressingHeader,
        "InvalidAddressingHeader",
        "InvalidCardinality",
        (A, "To"),
    ),
    "duplicate-action": Broken(
        GOOD + f"<wsa:Action>{ECHO}</wsa:Action>",
        InvalidAddressingHeader,
        "InvalidAddressingHeader",
        "InvalidCardinality",
        (A, "Action"),
    ),
    "duplicate-message-id": Broken(
        GOOD + "<wsa:MessageID>urn:uuid:2</wsa:MessageID>",
        InvalidAddressingHeader,
        "InvalidAddressingHeader",
        "InvalidCardinality",
        (A, "MessageID"),
    ),
    "duplicate-reply-to": Broken(
        GOOD + f"<wsa:ReplyTo><wsa:Address>{A}/anonymous</wsa:Address></wsa:ReplyTo>" * 2,
        InvalidAddressingHeader,
        "InvalidAddressingHeader",
        "InvalidCardinality",
        (A, "ReplyTo"),
    ),
    "duplicate-to-2004": Broken(
        GOOD + f"<wsa:To>{HERE}</wsa:To>",
        InvalidAddressingHeader,
        "InvalidAddressingHeader",
        "InvalidCardinality",
        (A04, "To"),
        wsa=A04,
    ),
    "empty-action": Broken(
        f"<wsa:To>{HERE}</wsa:To><wsa:Action/><wsa:MessageID>urn:uuid:1</wsa:MessageID>",
        InvalidAddressingHeader,
        "InvalidAddressingHeader",
        None,
        (A, "Action"),
    ),
    "epr-without-address": Broken(
        GOOD + "<wsa:ReplyTo><wsa:ReferenceParameters/></wsa:ReplyTo>",
        InvalidAddressingHeader,
        "InvalidAddressingHeader",
        "MissingAddressInEPR",
        (A, "ReplyTo"),
    ),
    "soapaction-differs": Broken(
        GOOD,
        InvalidAddressingHeader,
        "InvalidAddressingHeader",
        "ActionMismatch",
        (A, "Action"),
        soap_action="urn:svc/Other",
    ),
    "unknown-action": Broken(
        f"<wsa:To>{HERE}</wsa:To><wsa:Action>urn:svc/Nope</wsa:Action>"
        "<wsa:MessageID>urn:uuid:1</wsa:MessageID>",
        ActionNotSupported,
        "ActionNotSupported",
        detail=DetailItem((A, "ProblemAction"), "urn:svc/Nope"),
    ),
    "wrong-to": Broken(
        f"<wsa:To>http://elsewhere/x</wsa:To><wsa:Action>{ECHO}</wsa:Action>"
        "<wsa:MessageID>urn:uuid:1</wsa:MessageID>",
        DestinationUnreachable,
        "DestinationUnreachable",
        detail=DetailItem((A, "ProblemIRI"), "http://elsewhere/x"),
    ),
    "request-response-without-message-id": Broken(
        f"<wsa:To>{HERE}</wsa:To><wsa:Action>{ECHO}</wsa:Action>",
        MessageAddressingHeaderRequired,
        "MessageAddressingHeaderRequired",
        problem=(A, "MessageID"),
    ),
    "non-anonymous-reply-to": Broken(
        GOOD + "<wsa:ReplyTo><wsa:Address>http://client/callback</wsa:Address></wsa:ReplyTo>",
        InvalidAddressingHeader,
        "InvalidAddressingHeader",
        "OnlyAnonymousAddressSupported",
        (A, "ReplyTo"),
    ),
    "non-anonymous-fault-to": Broken(
        GOOD + "<wsa:FaultTo><wsa:Address>http://client/faults</wsa:Address></wsa:FaultTo>",
        InvalidAddressingHeader,
        "InvalidAddressingHeader",
        "OnlyAnonymousAddressSupported",
        (A, "FaultTo"),
    ),
}


@pytest.mark.parametrize("case", BROKEN)
def test_each_broken_rule_raises_its_fault(case: str) -> None:
    c = BROKEN[case]
    with pytest.raises(c.error) as info:
        check_request(headers(c.xml, c.wsa), c.soap_action, rules(required=c.required))
    error = info.value
    assert error.subcode == (ns.WSA, c.subcode)
    assert error.subsubcode == ((ns.WSA, c.subsubcode) if c.subsubcode else None)
    assert problem_header(error) == c.problem
    if c.detail is not None:
        assert c.detail in error.detail
    assert error.sender


PASSING = {
    "optional-and-no-headers": ("<p:Other/>", None, rules(required=False)),
    "optional-and-nothing-at-all": ("", None, rules(required=False)),
    "complete-request": (GOOD, None, rules()),
    "soapaction-equals-action": (GOOD, ECHO, rules()),
    "to-absent-means-anonymous": (
        f"<wsa:Action>{ECHO}</wsa:Action><wsa:MessageID>m</wsa:MessageID>",
        None,
        rules(),
    ),
    "to-anonymous": (
        f"<wsa:To>{A}/anonymous</wsa:To><wsa:Action>{ECHO}</wsa:Action>"
        "<wsa:MessageID>m</wsa:MessageID>",
        None,
        rules(),
    ),
    "one-way-without-message-id": (
        f"<wsa:To>{HERE}</wsa:To><wsa:Action>{NOTIFY}</wsa:Action>",
        None,
        rules(),
    ),
    "reply-to-anonymous": (
        GOOD + f"<wsa:ReplyTo><wsa:Address>{A}/anonymous</wsa:Address></wsa:ReplyTo>",
        None,
        rules(),
    ),
    "reply-to-none": (
        GOOD + f"<wsa:FaultTo><wsa:Address>{A}/none</wsa:Address></wsa:FaultTo>",
        None,
        rules(),
    ),
    "any-action-accepted-when-unknown-list": (
        f"<wsa:To>{HERE}</wsa:To><wsa:Action>urn:whatever</wsa:Action>"
        "<wsa:MessageID>m</wsa:MessageID>",
        None,
        rules(any_action=True),
    ),
}


@pytest.mark.parametrize("case", PASSING)
def test_requests_that_keep_the_rules_pass(case: str) -> None:
    xml, soap_action, endpoint = PASSING[case]
    check_request(headers(xml), soap_action, endpoint)


def test_a_2004_request_with_a_2004_anonymous_reply_to_passes() -> None:
    xml = GOOD + f"<wsa:ReplyTo><wsa:Address>{A04}/role/anonymous</wsa:Address></wsa:ReplyTo>"
    check_request(headers(xml, A04), ECHO, rules())


# -- the transport's action ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "soapaction", "action"),
    [
        ("text/xml; charset=utf-8", '"urn:svc/Echo"', "urn:svc/Echo"),
        ("text/xml; charset=utf-8", "urn:svc/Echo", "urn:svc/Echo"),
        ("text/xml", '  "urn:svc/Echo"  ', "urn:svc/Echo"),
        ("text/xml", '""', None),  # "the intent is the request URI": no action to compare
        ("text/xml", "", None),
        (None, '"http://example.org/a b"', "http://example.org/a b"),
        ('application/soap+xml; charset=utf-8; action="urn:svc/Echo"', None, "urn:svc/Echo"),
        ("application/soap+xml;action=urn:svc/Echo", None, "urn:svc/Echo"),
        ('Application/SOAP+XML; Action="urn:svc/Echo"', None, "urn:svc/Echo"),
        ("application/soap+xml; charset=utf-8", None, None),
        ('application/soap+xml; action=""', None, None),
        ("not a content type", None, None),
        (None, None, None),
    ],
)
def test_soap_action_of(
    content_type: str | None, soapaction: str | None, action: str | None
) -> None:
    assert soap_action_of(content_type, soapaction) == action


def test_empty_soapaction_never_mismatches() -> None:
    # WS-Addressing SOAP Binding §4.2: SOAPAction is the quoted action or the empty "".
    check_request(headers(GOOD), soap_action_of("text/xml", '""'), rules())
