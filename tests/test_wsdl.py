"""Reading WSDL 1.1 contracts (operations, WS-Addressing actions, SOAP versions) and rewriting
a service's addresses to the Service Provider's URL."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from lxml import etree

from dynasoar import ns
from dynasoar.errors import InvalidPackage
from dynasoar.soap.envelope import SoapVersion
from dynasoar.wsdl import Operation, read_contract, rewrite_addresses

ROOT = Path(__file__).resolve().parents[1]
BOTH = {SoapVersion.SOAP11, SoapVersion.SOAP12}


def ops(tns: str, *names: str) -> dict[str, Operation]:
    """Our contracts' operations: explicit actions tns/Name and tns/NameResponse, soapAction
    equal to the input action, body element {tns}Name."""
    return {
        f"{tns}/{name}": Operation(
            name, f"{tns}/{name}", f"{tns}/{name}Response", f"{tns}/{name}", f"{{{tns}}}{name}"
        )
        for name in names
    }


CONTRACTS = {
    "deploy/services/echo/Echo.wsdl": (
        ops("urn:dynasoar:samples:echo", "Echo", "Compute"), False,
    ),
    "deploy/services/counter/Counter.wsdl": (
        ops("urn:dynasoar:samples:counter", "Increment"), False,
    ),
    "wsdl/ServiceProvider.wsdl": (
        ops(
            "urn:dynasoar:2006:provider", "Publish", "Deploy", "Undeploy", "ListServices",
            "ListDeployments", "ListHosts", "RegisterHost", "DeregisterHost", "QueryImages",
            "GetLogs", "Unpublish", "Rollout", "Rollback", "SetTraffic", "GetUsage", "Move",
            "DrainHost",
        ),
        True,
    ),
    "wsdl/HostProvider.wsdl": (
        ops(
            "urn:dynasoar:2006:host", "Deploy", "Undeploy", "List", "Status", "QueryImages",
            "GetLogs", "GetUsage", "GetSnapshot", "SaveState", "Resume",
        ),
        True,
    ),
}


@pytest.mark.parametrize("path", CONTRACTS)
def test_read_repo_contracts(path: str) -> None:
    expected, addressing_required = CONTRACTS[path]
    contract = read_contract((ROOT / path).read_bytes(), path)
    assert contract.operations == expected
    assert contract.versions == BOTH
    assert contract.addressing_required is addressing_required
    assert contract.by_element == {op.input_element: op for op in expected.values()}
    for action, op in expected.items():
        assert contract.operation_for(action, None) == op
        assert contract.operation_for(None, op.input_element) == op
        assert contract.operation_for("urn:unknown", op.input_element) == op
        assert contract.expects_reply(action)
    assert contract.operation_for("urn:unknown", "{urn:x}Unknown") is None
    assert contract.operation_for(None, None) is None


def wsdl(
    tns: str,
    *,
    explicit: bool = False,
    input_name: str | None = None,
    soap12: bool = False,
    using_addressing: str | None = None,
    soap_action: str = "",
    wsam: bool = False,
) -> bytes:
    """A hand-written document/literal WSDL: Add (request-response) and Ping (one-way)."""
    attr = "wsam:Action" if wsam else "wsaw:Action"
    action = f' {attr}="urn:explicit/Add"' if explicit else ""
    name = f' name="{input_name}"' if input_name else ""
    soap = "soap12" if soap12 else "soap"
    addressing = (
        f'<wsaw:UsingAddressing wsdl:required="{using_addressing}"/>' if using_addressing else ""
    )
    return f"""<?xml version="1.0"?>
<wsdl:definitions targetNamespace="{tns}" xmlns:tns="{tns}"
    xmlns:wsdl="{ns.WSDL}" xmlns:soap="{ns.WSDL_SOAP11}" xmlns:soap12="{ns.WSDL_SOAP12}"
    xmlns:wsaw="{ns.WSAW}" xmlns:wsam="{ns.WSAM}" xmlns:xs="{ns.XSD}" xmlns:m="urn:msgs">
  <wsdl:types>
    <xs:schema targetNamespace="urn:msgs" elementFormDefault="qualified">
      <xs:element name="Add" type="xs:int"/><xs:element name="AddResult" type="xs:int"/>
      <xs:element name="Ping" type="xs:string"/>
    </xs:schema>
  </wsdl:types>
  <wsdl:message name="AddIn"><wsdl:part name="p" element="m:Add"/></wsdl:message>
  <wsdl:message name="AddOut"><wsdl:part name="p" element="m:AddResult"/></wsdl:message>
  <wsdl:message name="PingIn"><wsdl:part name="p" element="m:Ping"/></wsdl:message>
  <wsdl:portType name="CalcPort">
    <wsdl:operation name="Add">
      <wsdl:input message="tns:AddIn"{name}{action}/>
      <wsdl:output message="tns:AddOut"/>
    </wsdl:operation>
    <wsdl:operation name="Ping"><wsdl:input message="tns:PingIn"/></wsdl:operation>
  </wsdl:portType>
  <wsdl:binding name="CalcBinding" type="tns:CalcPort">
    <{soap}:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    {addressing}
    <wsdl:operation name="Add">
      <{soap}:operation soapAction="{soap_action}"/>
      <wsdl:input><{soap}:body use="literal"/></wsdl:input>
      <wsdl:output><{soap}:body use="literal"/></wsdl:output>
    </wsdl:operation>
    <wsdl:operation name="Ping">
      <{soap}:operation/>
      <wsdl:input><{soap}:body use="literal"/></wsdl:input>
    </wsdl:operation>
  </wsdl:binding>
  <wsdl:service name="Calc">
    <wsdl:port name="CalcPort" binding="tns:CalcBinding">
      <{soap}:address location="http://localhost/Calc"/>
    </wsdl:port>
  </wsdl:service>
</wsdl:definitions>""".encode()


@pytest.mark.parametrize(
    ("tns", "add", "add_response", "ping"),
    [
        # WS-A Metadata §4.4.4: [target namespace][delimiter][port type][delimiter][name],
        # ":" for a URN, "/" otherwise; an input/output name defaults to the operation's
        # name + Request/Response (one-way: the operation's name).
        ("urn:example:calc", "urn:example:calc:CalcPort:AddRequest",
         "urn:example:calc:CalcPort:AddResponse", "urn:example:calc:CalcPort:Ping"),
        ("http://example.org/calc", "http://example.org/calc/CalcPort/AddRequest",
         "http://example.org/calc/CalcPort/AddResponse", "http://example.org/calc/CalcPort/Ping"),
        # A namespace that already ends with the delimiter does not get a second one.
        ("http://example.org/calc/", "http://example.org/calc/CalcPort/AddRequest",
         "http://example.org/calc/CalcPort/AddResponse", "http://example.org/calc/CalcPort/Ping"),
    ],
)
def test_default_action_pattern(tns: str, add: str, add_response: str, ping: str) -> None:
    contract = read_contract(wsdl(tns))
    assert set(contract.operations) == {add, ping}
    assert contract.operations[add].output_action == add_response
    assert contract.operations[ping].output_action is None
    assert contract.expects_reply(add) and not contract.expects_reply(ping)
    assert contract.operations[add].input_element == "{urn:msgs}Add"
    assert contract.versions == {SoapVersion.SOAP11}
    assert not contract.addressing_required


def test_default_action_uses_an_explicit_input_name() -> None:
    contract = read_contract(wsdl("http://example.org/calc", input_name="AddIt"))
    assert "http://example.org/calc/CalcPort/AddIt" in contract.operations


@pytest.mark.parametrize("wsam", [False, True], ids=["wsaw", "wsam"])
def test_explicit_action_wins(wsam: bool) -> None:
    contract = read_contract(wsdl("http://example.org/calc", explicit=True, wsam=wsam))
    assert "urn:explicit/Add" in contract.operations


def test_empty_soap_action_is_none() -> None:
    contract = read_contract(wsdl("urn:c", soap_action=""))
    assert all(op.soap_action is None for op in contract.operations.values())
    contract = read_contract(wsdl("urn:c", soap_action="urn:c/Add"))
    assert contract.operations["urn:c:CalcPort:AddRequest"].soap_action == "urn:c/Add"


@pytest.mark.parametrize(
    ("flag", "required"), [(None, False), ("false", False), ("true", True)]
)
@pytest.mark.parametrize("soap12", [False, True], ids=["soap11", "soap12"])
def test_using_addressing_and_soap_version(flag: str | None, required: bool, soap12: bool) -> None:
    contract = read_contract(wsdl("urn:c", using_addressing=flag, soap12=soap12))
    assert contract.addressing_required is required
    assert contract.versions == {SoapVersion.SOAP12 if soap12 else SoapVersion.SOAP11}


@pytest.mark.parametrize(
    "data",
    [
        b"not xml at all",
        b"",
        b"<html><body>WSDL here</body></html>",
        f'<xs:schema xmlns:xs="{ns.XSD}"/>'.encode(),
        b'<definitions xmlns="http://www.w3.org/ns/wsdl"/>',  # WSDL 2.0
        f'<wsdl:definitions xmlns:wsdl="{ns.WSDL}" targetNamespace="urn:x"/>'.encode(),
        wsdl("urn:c").replace(ns.WSDL_SOAP11.encode(), b"urn:not-soap"),  # no SOAP binding
    ],
    ids=["text", "empty", "html", "xsd", "wsdl20", "no-operations", "no-soap-binding"],
)
def test_non_wsdl_input_is_an_invalid_package(data: bytes) -> None:
    with pytest.raises(InvalidPackage):
        read_contract(data)


def test_an_external_entity_in_a_wsdl_is_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    body = wsdl("urn:c").split(b"\n", 1)[1].replace(
        b"<wsdl:types>", b"<wsdl:documentation>&x;</wsdl:documentation><wsdl:types>", 1
    )
    data = f'<!DOCTYPE wsdl:definitions [<!ENTITY x SYSTEM "file://{secret}">]>'.encode() + body
    try:
        out = rewrite_addresses(data, "http://sp/services/Calc")
    except InvalidPackage:
        return  # refusing is as good as not reading
    assert b"TOP-SECRET" not in out


# -- rewriting addresses ------------------------------------------------------------------------

ADDRESS_TAGS = (f"{{{ns.WSDL_SOAP11}}}address", f"{{{ns.WSDL_SOAP12}}}address")


def without_locations(root: etree._Element) -> bytes:
    root = copy.deepcopy(root)
    for el in root.iter(*ADDRESS_TAGS):
        el.set("location", "-")
    return bytes(etree.tostring(root, method="c14n"))


REWRITE_INPUTS = {path: (ROOT / path).read_bytes() for path in CONTRACTS} | {
    "hand-written-soap11": wsdl("urn:c"),
    "hand-written-soap12": wsdl("urn:c", soap12=True),
}


@pytest.mark.parametrize("name", REWRITE_INPUTS)
def test_rewrite_changes_only_the_addresses(name: str) -> None:
    data = REWRITE_INPUTS[name]
    new = "http://sp.example:8080/services/Echo"
    out = rewrite_addresses(data, new)
    before, after = etree.fromstring(data), etree.fromstring(out)
    addresses = list(after.iter(*ADDRESS_TAGS))
    assert addresses and all(el.get("location") == new for el in addresses)
    assert len(addresses) == len(list(before.iter(*ADDRESS_TAGS)))
    assert without_locations(after) == without_locations(before)
    # The contract a client reads is the same.
    assert read_contract(out).operations == read_contract(data).operations


def test_rewrite_moves_the_ports_endpoint_reference_too() -> None:
    data = wsdl("urn:c").replace(
        b'<soap:address location="http://localhost/Calc"/>',
        b'<soap:address location="http://localhost/Calc"/>'
        b'<wsa:EndpointReference xmlns:wsa="http://www.w3.org/2005/08/addressing">'
        b"<wsa:Address>http://localhost/Calc</wsa:Address></wsa:EndpointReference>",
    )
    out = etree.fromstring(rewrite_addresses(data, "http://sp/services/Calc"))
    [address] = out.iter(f"{{{ns.WSA}}}Address")
    assert address.text == "http://sp/services/Calc"


def test_rewrite_keeps_the_comment_before_the_root() -> None:
    data = (ROOT / "deploy/services/echo/Echo.wsdl").read_bytes()
    out = rewrite_addresses(data, "http://sp/services/Echo")
    before = etree.fromstring(data).getroottree()
    after = etree.fromstring(out).getroottree()
    comments = [c.text for c in before.getroot().itersiblings(preceding=True)]
    assert comments, "Echo.wsdl starts with a comment"
    assert [c.text for c in after.getroot().itersiblings(preceding=True)] == comments


def test_rewrite_refuses_non_wsdl() -> None:
    with pytest.raises(InvalidPackage):
        rewrite_addresses(b"<html/>", "http://sp/x")
