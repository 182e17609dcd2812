"""WS-Addressing 1.0 faults on the SP's routing interceptor and on the management ports, both
SOAP versions, checked on the wire."""

from __future__ import annotations

import pytest

from dynasoar import ns

from .conftest import Cluster
from .wire import ECHO_ACTION, echo_body, envelope, post, wsa_headers

WSA = "{%s}" % ns.WSA
DYN = "{%s}" % ns.DYN
SENDER = {"1.1": "{%s}Client" % ns.SOAP11_ENV, "1.2": "{%s}Sender" % ns.SOAP12_ENV}

SP_LIST = f'<sp:ListServices xmlns:sp="{ns.DYN_SP}"/>'
SP_LIST_ACTION = f"{ns.DYN_SP}/ListServices"


def _codes(version: str, *wsa_codes: str) -> list[str]:
    """The codes a WS-A fault carries: SOAP 1.2 Sender + subcodes, SOAP 1.1 the subcode."""
    if version == "1.2":
        return [SENDER["1.2"], *wsa_codes]
    return [wsa_codes[0]]


# (case, headers(to) -> str, SOAPAction, body, expected WS-A codes)
CASES = [
    (
        "duplicate MessageID",
        lambda to: wsa_headers(to=to, extra="<wsa:MessageID>urn:uuid:dup</wsa:MessageID>")[0],
        ECHO_ACTION,
        echo_body(),
        [WSA + "InvalidAddressingHeader", WSA + "InvalidCardinality"],
    ),
    (
        "SOAPAction differs from wsa:Action",
        lambda to: wsa_headers(to=to)[0],
        "urn:something:else",
        echo_body(),
        [WSA + "InvalidAddressingHeader", WSA + "ActionMismatch"],
    ),
    (
        "unknown action",
        lambda to: wsa_headers(to=to, action="urn:dynasoar:samples:echo/Nope")[0],
        "urn:dynasoar:samples:echo/Nope",
        echo_body(),
        [WSA + "ActionNotSupported"],
    ),
    (
        "no wsa:Action",
        lambda to: wsa_headers(to=to, action=None)[0],
        None,
        echo_body(),
        [WSA + "MessageAddressingHeaderRequired"],
    ),
    (
        "no MessageID on a request-response operation",
        lambda to: wsa_headers(to=to, message_id=None)[0],
        ECHO_ACTION,
        echo_body(),
        [WSA + "MessageAddressingHeaderRequired"],
    ),
    (
        "wsa:To names another service",
        lambda to: wsa_headers(to=to.replace("/Echo", "/Other"))[0],
        ECHO_ACTION,
        echo_body(),
        [WSA + "DestinationUnreachable"],
    ),
    (
        "non-anonymous ReplyTo, and no --reply-to-allow",
        lambda to: wsa_headers(
            to=to,
            extra="<wsa:ReplyTo><wsa:Address>http://127.0.0.1:9/cb</wsa:Address></wsa:ReplyTo>",
        )[0],
        ECHO_ACTION,
        echo_body(),
        [WSA + "InvalidAddressingHeader", DYN + "ReplyToNotAllowed"],
    ),
]


@pytest.mark.parametrize("version", ["1.1", "1.2"])
@pytest.mark.parametrize(
    ("case", "headers", "action", "body", "codes"), CASES, ids=[c[0] for c in CASES]
)
def test_service_addressing_faults(
    cluster: Cluster, echo: str, version: str, case: str, headers, action, body, codes
) -> None:  # type: ignore[no-untyped-def]
    reply = post(echo, envelope(body, headers(echo), version), version, soap_action=action)
    assert reply.fault_codes() == _codes(version, *codes)
    assert reply.status == (500 if version == "1.1" else 400)
    assert reply.text(".//wsa:Action") == ns.WSA_FAULT_ACTION
    # Nothing was deployed for a message refused at the door.
    assert not cluster.client.call("ListDeployments")


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_unknown_service_is_destination_unreachable(cluster: Cluster, version: str) -> None:
    url = cluster.service_url("NoSuchService")
    headers, message_id = wsa_headers(to=url)
    reply = post(url, envelope(echo_body(), headers, version), version, soap_action=ECHO_ACTION)
    assert reply.fault_codes() == _codes(version, WSA + "DestinationUnreachable")
    assert reply.text(".//wsa:RelatesTo") == message_id
    plain = post(url, envelope(echo_body(), "", version), version)
    assert plain.fault_codes() == _codes(version, WSA + "DestinationUnreachable")
    assert plain.find(".//wsa:RelatesTo") is None


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_management_port_requires_addressing(cluster: Cluster, version: str) -> None:
    port = cluster.sp.url + "/dynasoar/ServiceProvider"
    reply = post(port, envelope(SP_LIST, "", version), version, soap_action=SP_LIST_ACTION)
    assert reply.fault_codes() == _codes(version, WSA + "MessageAddressingHeaderRequired")
    headers, message_id = wsa_headers(to=port, action=SP_LIST_ACTION)
    ok = post(port, envelope(SP_LIST, headers, version), version, soap_action=SP_LIST_ACTION)
    assert ok.status == 200
    assert ok.text(".//wsa:RelatesTo") == message_id
    assert ok.text(".//wsa:Action") == f"{ns.DYN_SP}/ListServicesResponse"


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_management_port_unknown_action(cluster: Cluster, version: str) -> None:
    port = cluster.hps[0].url + "/dynasoar/HostProvider"
    action = f"{ns.DYN_HP}/Explode"
    headers, _ = wsa_headers(to=port, action=action)
    reply = post(
        port,
        envelope(f'<h:Explode xmlns:h="{ns.DYN_HP}"/>', headers, version),
        version,
        soap_action=action,
    )
    assert reply.fault_codes() == _codes(version, WSA + "ActionNotSupported")
    assert reply.text(".//wsa:ProblemAction/wsa:Action") == action


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_a_header_that_must_be_understood_and_is_not(cluster: Cluster, version: str) -> None:
    port = cluster.sp.url + "/dynasoar/ServiceProvider"
    env = ns.SOAP11_ENV if version == "1.1" else ns.SOAP12_ENV
    must = "1" if version == "1.1" else "true"
    headers, _ = wsa_headers(to=port, action=SP_LIST_ACTION)
    headers += (
        f'<x:Transaction xmlns:x="urn:example:tx" xmlns:e="{env}" '
        f'e:mustUnderstand="{must}">42</x:Transaction>'
    )
    reply = post(port, envelope(SP_LIST, headers, version), version, soap_action=SP_LIST_ACTION)
    assert reply.status == 500
    assert reply.fault_codes()[0] == "{%s}MustUnderstand" % env
    if version == "1.2":
        (not_understood,) = reply.xml.findall(".//s12:NotUnderstood", {"s12": env})
        prefix, _, local = not_understood.get("qname").partition(":")
        assert (not_understood.nsmap[prefix], local) == ("urn:example:tx", "Transaction")
    # the same header without mustUnderstand is simply ignored
    optional = headers.replace(f'e:mustUnderstand="{must}"', "")
    ok = post(port, envelope(SP_LIST, optional, version), version, soap_action=SP_LIST_ACTION)
    assert ok.status == 200
