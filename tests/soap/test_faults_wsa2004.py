"""A request in the WS-Addressing 2004/08 member submission (WSE, early WCF) gets its
WS-Addressing faults in 2004/08 too: the submission's subcode names in its namespace, no
WS-Addressing 1.0 subsubcodes (regression: the subcodes came back in the 1.0 namespace)."""

from __future__ import annotations

import pytest

from dynasoar import ns
from dynasoar.errors import (
    ActionNotSupported,
    AddressingFault,
    DestinationUnreachable,
    InvalidAddressingHeader,
    MessageAddressingHeaderRequired,
)
from dynasoar.soap.addressing import AddressingHeaders
from dynasoar.soap.envelope import SoapVersion, parse_envelope
from dynasoar.soap.faults import read_fault, render_fault

W04, W10 = ns.WSA_2004, ns.WSA

CASES: list[tuple[AddressingFault, str, str]] = [
    (
        InvalidAddressingHeader(
            "twice", subsubcode="InvalidCardinality", problem_header=(W04, "To")
        ),
        "InvalidMessageInformationHeader",
        "InvalidAddressingHeader",
    ),
    (
        MessageAddressingHeaderRequired("no id", problem_header=(W04, "MessageID")),
        "MessageInformationHeaderRequired",
        "MessageAddressingHeaderRequired",
    ),
    (ActionNotSupported("no", action="urn:x"), "ActionNotSupported", "ActionNotSupported"),
    (
        DestinationUnreachable("where", iri="http://x/"),
        "DestinationUnreachable",
        "DestinationUnreachable",
    ),
]
EACH = pytest.mark.parametrize(("error", "name_2004", "name_10"), CASES, ids=[c[1] for c in CASES])
VERSIONS = pytest.mark.parametrize("version", list(SoapVersion), ids=lambda v: v.value)


def request(wsa: str) -> AddressingHeaders:
    return AddressingHeaders(namespace=wsa, action="urn:a", message_id="urn:uuid:r1", present=True)


@EACH
@VERSIONS
def test_a_2004_request_gets_2004_subcodes(
    error: AddressingFault, name_2004: str, name_10: str, version: SoapVersion
) -> None:
    envelope = parse_envelope(render_fault(error, version, request(W04)))
    assert envelope.body is not None
    fault = read_fault(envelope.body, version)
    assert fault is not None
    codes = [fault.code, *fault.subcodes]
    if version is SoapVersion.SOAP12:
        assert codes[:2] == [(ns.SOAP12_ENV, "Sender"), (W04, name_2004)]
        assert len(fault.subcodes) == 1, "2004/08 has no subsubcodes"
    else:
        assert codes[0] == (W04, name_2004)


@EACH
@VERSIONS
def test_a_wsa10_request_keeps_the_10_subcodes(
    error: AddressingFault, name_2004: str, name_10: str, version: SoapVersion
) -> None:
    envelope = parse_envelope(render_fault(error, version, request(W10)))
    assert envelope.body is not None
    fault = read_fault(envelope.body, version)
    assert fault is not None
    first = fault.subcodes[0] if version is SoapVersion.SOAP12 else fault.code
    assert first == (W10, name_10)
