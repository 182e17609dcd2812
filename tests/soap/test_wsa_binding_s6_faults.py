"""WS-Addressing 1.0 SOAP Binding §6 as the fault renderer applies it, for every error of the
tree and both SOAP versions: the Action (``.../fault`` for WS-Addressing's own faults,
``.../soap/fault`` for all others; 2004/08: its ``.../fault``), the wsa prefix declared on the
Fault element itself, the 2004/08 detail in the 2004/08 namespace, the HTTP status of SOAP 1.2
Sender faults (400, or 500 when asked). The wire tests are tests/integration/ ones of the same
name."""

from __future__ import annotations

import re

import pytest
from lxml import etree

from dynasoar import ns
from dynasoar.errors import (
    AddressingFault,
    DeploymentFailed,
    DestinationUnreachable,
    DynasoarError,
    FailedAuthentication,
    InvalidAddressingHeader,
    MustUnderstand,
    ReplyToNotAllowed,
)
from dynasoar.soap.addressing import AddressingHeaders
from dynasoar.soap.envelope import SoapVersion
from dynasoar.soap.faults import fault_reply

VERSIONS = pytest.mark.parametrize("version", list(SoapVersion), ids=lambda v: v.value)
ERRORS: dict[str, DynasoarError] = {
    "InvalidAddressingHeader": InvalidAddressingHeader(
        "x", subsubcode="InvalidCardinality", problem_header=(ns.WSA, "To")
    ),
    "ReplyToNotAllowed": ReplyToNotAllowed("x", problem_header=(ns.WSA, "ReplyTo")),
    "DestinationUnreachable": DestinationUnreachable("x", iri="http://elsewhere/"),
    "MustUnderstand": MustUnderstand("x", not_understood=(("urn:x", "T"),)),
    "FailedAuthentication": FailedAuthentication("x"),
    "DeploymentFailed": DeploymentFailed("x"),
}
EACH = pytest.mark.parametrize("name", ERRORS)


def request(wsa: str = ns.WSA) -> AddressingHeaders:
    return AddressingHeaders(namespace=wsa, action="urn:a", message_id="urn:m", present=True)


def action_of(body: bytes, wsa: str = ns.WSA) -> str | None:
    el = etree.fromstring(body).find(f"{{*}}Header/{{{wsa}}}Action")
    return None if el is None else el.text


@EACH
@VERSIONS
def test_the_action_of_each_fault(name: str, version: SoapVersion) -> None:
    error = ERRORS[name]
    body = fault_reply(error, version, request())[2]
    expected = (
        ns.WSA_FAULT_ACTION if isinstance(error, AddressingFault) else ns.WSA_SOAP_FAULT_ACTION
    )
    assert action_of(body) == expected
    assert action_of(fault_reply(error, version, request(ns.WSA_2004))[2], ns.WSA_2004) == (
        ns.WSA_2004_FAULT_ACTION
    )


@pytest.mark.parametrize("name", [n for n in ERRORS if n != "MustUnderstand"])
@VERSIONS
def test_the_fault_declares_the_wsa_prefix_itself(name: str, version: SoapVersion) -> None:
    # (env:MustUnderstand's Fault names nothing of WS-Addressing.)
    body = fault_reply(ERRORS[name], version, request())[2]
    start = re.search(rb"<[\w.-]+:Fault\b[^>]*>", body)
    assert start is not None and f'="{ns.WSA}"'.encode() in start.group(0), body


@VERSIONS
def test_a_2004_fault_detail_is_in_the_2004_namespace(version: SoapVersion) -> None:
    body = fault_reply(ERRORS["DestinationUnreachable"], version, request(ns.WSA_2004))[2]
    root = etree.fromstring(body)
    assert root.find(f".//{{{ns.WSA_2004}}}ProblemIRI") is not None
    assert ns.WSA.encode() not in body


@EACH
def test_soap12_sender_faults_400_or_500(name: str) -> None:
    error = ERRORS[name]
    default = fault_reply(error, SoapVersion.SOAP12, request())[0]
    asked = fault_reply(error, SoapVersion.SOAP12, request(), sender_status=500)[0]
    sender = error.sender and not isinstance(error, MustUnderstand)
    assert (default, asked) == ((400, 500) if sender else (500, 500))
    assert fault_reply(error, SoapVersion.SOAP11, request(), sender_status=400)[0] == 500
