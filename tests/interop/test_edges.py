"""Era-faithful edges, on the wire through a real SP: WS-Addressing 2004/08 as WSE and WCF send it
(answered in 2004/08, faults included), SOAP 1.2 faults with subcodes and SOAP 1.1 faults with
detail, and the SOAP 1.2 HTTP binding's Content-Type: the action parameter instead of
SOAPAction, parameters in any case and order, a media type that contradicts the envelope."""

from __future__ import annotations

import uuid

import pytest

from dynasoar import ns
from integration.wire import ECHO_ACTION, ECHO_NS, echo_body, envelope, post, wsa_headers

from .conftest import Interop

pytestmark = pytest.mark.integration

W04 = "{%s}" % ns.WSA_2004
W10 = "{%s}" % ns.WSA
DYN = "{%s}" % ns.DYN
S11, S12 = "{%s}" % ns.SOAP11_ENV, "{%s}" % ns.SOAP12_ENV


@pytest.fixture(scope="module")
def echo(interop: Interop) -> str:
    return interop.publish_echo("EchoEdges")


def wcf_2004(to: str, action: str = ECHO_ACTION, version: str = "1.2") -> tuple[bytes, str]:
    """A request as WCF's Soap12WSAddressingAugust2004 (or WSE 3 on SOAP 1.1) writes it:
    mustUnderstand on Action and To, an anonymous ReplyTo in the 2004/08 role namespace."""
    message_id = f"urn:uuid:{uuid.uuid4()}"
    env = ns.SOAP12_ENV if version == "1.2" else ns.SOAP11_ENV
    body = (
        f'<s:Envelope xmlns:s="{env}" xmlns:a="{ns.WSA_2004}"><s:Header>'
        f'<a:Action s:mustUnderstand="1">{action}</a:Action>'
        f"<a:MessageID>{message_id}</a:MessageID>"
        f"<a:ReplyTo><a:Address>{ns.WSA_2004_ANONYMOUS}</a:Address></a:ReplyTo>"
        f'<a:To s:mustUnderstand="1">{to}</a:To>'
        f"</s:Header><s:Body>{echo_body('wcf')}</s:Body></s:Envelope>"
    )
    return body.encode(), message_id


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_wsa_2004_request_is_answered_in_2004(echo: str, version: str) -> None:
    body, message_id = wcf_2004(echo, version=version)
    reply = post(echo, body, version, soap_action=ECHO_ACTION)
    assert reply.status == 200, reply.body
    assert reply.text(".//echo:text") == "wcf"
    assert reply.text(".//wsa04:RelatesTo") == message_id
    assert reply.text(".//wsa04:Action") == f"{ECHO_NS}/EchoResponse"
    assert reply.find(".//wsa:RelatesTo") is None, "no WS-A 1.0 header in a 2004/08 answer"


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_wsa_2004_fault_is_in_2004(echo: str, version: str) -> None:
    action = f"{ECHO_NS}/Nope"
    body, message_id = wcf_2004(echo, action=action, version=version)
    reply = post(echo, body, version, soap_action=action)
    assert reply.text(".//wsa04:Action") == ns.WSA_2004_FAULT_ACTION
    assert reply.text(".//wsa04:RelatesTo") == message_id
    codes = reply.fault_codes()
    if version == "1.2":
        assert codes == [S12 + "Sender", W04 + "ActionNotSupported"]
        assert reply.status == 400
    else:
        assert codes[0] == W04 + "ActionNotSupported"
        assert reply.status == 500


def test_wsa_2004_missing_message_id_is_a_2004_fault(echo: str) -> None:
    body, _ = wcf_2004(echo)
    body = body.replace(b"a:MessageID>", b"a:Nothing>")
    reply = post(echo, body, "1.2", soap_action=ECHO_ACTION)
    assert reply.fault_codes() == [S12 + "Sender", W04 + "MessageInformationHeaderRequired"]


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_dynasoar_faults_carry_subcode_or_detail(interop: Interop, version: str) -> None:
    url = f"{interop.sp}/services/{interop.broken}"
    reply = post(url, envelope(echo_body(), "", version), version, soap_action=ECHO_ACTION)
    assert reply.status == 500
    if version == "1.2":
        # SOAP 1.2: Code Receiver, Subcode dyn:DeploymentFailed (and a Detail naming it).
        assert reply.fault_codes() == [S12 + "Receiver", DYN + "DeploymentFailed"]
        assert reply.find(".//s12:Detail/dyn:DeploymentFailed") is not None
    else:
        # SOAP 1.1 has no subcodes: faultcode Server, the subcode as a detail element.
        assert reply.fault_codes() == [S11 + "Server", DYN + "DeploymentFailed"]


def test_nested_soap12_subcodes(echo: str) -> None:
    """The action parameter contradicts wsa:Action: Sender / InvalidAddressingHeader /
    ActionMismatch, three levels deep."""
    headers, _ = wsa_headers(to=echo)
    reply = post(
        echo,
        envelope(echo_body(), headers, "1.2"),
        "1.2",
        content_type=f'application/soap+xml; charset=utf-8; action="{ECHO_NS}/Compute"',
    )
    assert reply.status == 400
    assert reply.fault_codes() == [
        S12 + "Sender",
        W10 + "InvalidAddressingHeader",
        W10 + "ActionMismatch",
    ]


@pytest.mark.parametrize(
    "content_type",
    [
        f'application/soap+xml; charset=utf-8; action="{ECHO_ACTION}"',
        f'application/soap+xml;action="{ECHO_ACTION}";charset=utf-8',
        f"Application/SOAP+XML; Charset=UTF-8; Action={ECHO_ACTION}",
        f'application/soap+xml; action="{ECHO_ACTION}"',
    ],
    ids=["canonical", "reordered-no-spaces", "case-unquoted", "no-charset"],
)
def test_soap12_action_parameter_without_soapaction(echo: str, content_type: str) -> None:
    headers, message_id = wsa_headers(to=echo)
    reply = post(echo, envelope(echo_body("p"), headers, "1.2"), "1.2", content_type=content_type)
    assert reply.status == 200, reply.body
    assert reply.text(".//echo:text") == "p"
    assert reply.text(".//wsa:RelatesTo") == message_id
    assert reply.headers["content-type"].startswith("application/soap+xml")


def test_soap12_action_parameter_on_the_management_port(interop: Interop) -> None:
    port = interop.sp + "/dynasoar/ServiceProvider"
    action = f"{ns.DYN_SP}/ListServices"
    headers, message_id = wsa_headers(to=port, action=action)
    reply = post(
        port,
        envelope(f'<sp:ListServices xmlns:sp="{ns.DYN_SP}"/>', headers, "1.2"),
        "1.2",
        content_type=f'application/soap+xml; charset=utf-8; action="{action}"',
    )
    assert reply.status == 200, reply.body
    assert reply.text(".//wsa:RelatesTo") == message_id
    content_type = reply.headers["content-type"]
    assert content_type.startswith("application/soap+xml")
    assert f'action="{ns.DYN_SP}/ListServicesResponse"' in content_type


@pytest.mark.parametrize(
    ("media_type", "envelope_version"),
    [("application/soap+xml", "1.1"), ("text/xml", "1.2")],
    ids=["soap11-envelope-as-soap12", "soap12-envelope-as-soap11"],
)
def test_media_type_that_contradicts_the_envelope(
    echo: str, media_type: str, envelope_version: str
) -> None:
    """The HTTP binding names the SOAP version: an envelope of the other version is a
    VersionMismatch (SOAP 1.2 part 1 §5.4.7) with the Upgrade header, not a message to relay
    (the service behind would answer with a fault about a missing Envelope)."""
    reply = post(
        echo,
        envelope(echo_body(), "", envelope_version),
        content_type=f"{media_type}; charset=utf-8",
    )
    assert reply.status == 500
    assert reply.fault_codes() == [S12 + "VersionMismatch"]
    upgrade = reply.find(".//s12:Upgrade")
    assert upgrade is not None and len(upgrade) == 2
    assert "x-dynasoar-deployment" not in reply.headers, "refused before it was relayed"
