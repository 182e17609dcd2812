"""The hand-maintained WSDL 1.1 contracts load offline and keep the conventions we promise.

WSDL 1.1 document/literal wrapped, WS-I Basic Profile 1.1, one SOAP 1.1 and one SOAP 1.2 port
per service, WS-Addressing 1.0 declared (wsaw:UsingAddressing, wsaw:Action on every input and
output) with soapAction equal to the input action. Covers `wsdl/*.wsdl` (addressing required)
and the sample packages' WSDLs in `deploy/services/` (addressing optional).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zeep
from lxml import etree
from zeep.transports import Transport
from zeep.wsdl.bindings.soap import Soap11Binding, Soap12Binding

ROOT = Path(__file__).resolve().parents[1]

WSDL = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP11 = "http://schemas.xmlsoap.org/wsdl/soap/"
WSDL_SOAP12 = "http://schemas.xmlsoap.org/wsdl/soap12/"
WSAW = "http://www.w3.org/2006/05/addressing/wsdl"
XSD = "http://www.w3.org/2001/XMLSchema"
XMIME = "http://www.w3.org/2005/05/xmlmime"
SOAP_OVER_HTTP = "http://schemas.xmlsoap.org/soap/http"
NS = {"wsdl": WSDL, "soap": WSDL_SOAP11, "soap12": WSDL_SOAP12, "wsaw": WSAW, "xs": XSD}
SOAP_NS = {WSDL_SOAP11: "SOAP 1.1", WSDL_SOAP12: "SOAP 1.2"}


@dataclass(frozen=True)
class Contract:
    path: Path
    addressing_required: bool

    def __str__(self) -> str:
        return str(self.path.relative_to(ROOT))


CONTRACTS = [Contract(p, True) for p in sorted((ROOT / "wsdl").glob("*.wsdl"))] + [
    Contract(p, False) for p in sorted((ROOT / "deploy" / "services").glob("*/*.wsdl"))
]
each_contract = pytest.mark.parametrize("contract", CONTRACTS, ids=str)

#: QName-valued attributes: (namespace of the element, its local name, attribute) -> what it names.
REFERENCES = {
    (XSD, "element", "type"): "type",
    (XSD, "attribute", "type"): "type",
    (XSD, "element", "ref"): "element",
    (XSD, "attribute", "ref"): "attribute",
    (XSD, "extension", "base"): "type",
    (XSD, "restriction", "base"): "type",
    (XSD, "list", "itemType"): "type",
    (WSDL, "part", "element"): "element",
    (WSDL, "part", "type"): "type",
    (WSDL, "input", "message"): "message",
    (WSDL, "output", "message"): "message",
    (WSDL, "fault", "message"): "message",
    (WSDL, "binding", "type"): "portType",
    (WSDL, "port", "binding"): "binding",
}


class OfflineTransport(Transport):
    """zeep's transport with the network cut: every schema must come from disk."""

    def _load_remote_data(self, url: str) -> bytes:
        raise AssertionError(f"the contract made zeep fetch {url}")


@functools.cache
def load(path: Path) -> zeep.Client:
    return zeep.Client(str(path), settings=zeep.Settings(strict=True), transport=OfflineTransport())


def parse(path: Path) -> etree._ElementTree:
    return etree.parse(str(path))


def schema_files(path: Path) -> Iterator[Path]:
    """The XSD files a WSDL or XSD pulls in through schemaLocation, transitively."""
    seen: set[Path] = set()
    pending = [path]
    while pending:
        current = pending.pop()
        for include in parse(current).iterfind(".//xs:*[@schemaLocation]", NS):
            location = include.get("schemaLocation", "")
            assert "://" not in location, f"{current.name} imports {location} from the network"
            target = (current.parent / location).resolve()
            if target not in seen:
                seen.add(target)
                pending.append(target)
                yield target


def qname(element: etree._Element, value: str) -> etree.QName:
    prefix, _, local = value.rpartition(":")
    namespace = element.nsmap.get(prefix or None)
    assert namespace is not None or not prefix, f"prefix {prefix!r} of {value!r} is not declared"
    return etree.QName(namespace, local)


def references(tree: etree._ElementTree) -> Iterator[tuple[str, etree.QName]]:
    for element in tree.iter(etree.Element):
        tag = etree.QName(element)
        for attribute, value in element.attrib.items():
            kind = REFERENCES.get((tag.namespace or "", tag.localname, str(attribute)))
            if kind is not None:
                yield kind, qname(element, value)


def resolves(client: zeep.Client, kind: str, name: etree.QName) -> bool:
    definitions = client.wsdl
    named: dict[str, dict[str, Any]] = {
        "message": definitions.messages,
        "portType": definitions.port_types,
        "binding": definitions.bindings,
    }
    if kind in named:
        return name.text in named[kind]
    lookup = {
        "type": definitions.types.get_type,
        "element": definitions.types.get_element,
        "attribute": definitions.types.get_attribute,
    }[kind]
    try:
        lookup(name)
    except zeep.exceptions.LookupError:
        return False
    return True


def soap_child(parent: etree._Element, localname: str) -> etree._Element:
    """The one SOAP 1.1 or SOAP 1.2 extension element of that name under `parent`."""
    found = [child for ns in SOAP_NS if (child := parent.find(f"{{{ns}}}{localname}")) is not None]
    assert len(found) == 1, f"{parent.get('name')}: expected one soap:{localname}"
    return found[0]


def target_namespace(tree: etree._ElementTree) -> str:
    return str(tree.getroot().get("targetNamespace"))


@each_contract
def test_loads_offline_with_strict_zeep(contract: Contract) -> None:
    client = load(contract.path)

    assert client.wsdl.services, "no wsdl:service"
    for service in client.wsdl.services.values():
        for port in service.ports.values():
            for operation in port.binding._operations.values():
                assert operation.input.body is not None, operation.name
                assert operation.output.body is not None, operation.name


@each_contract
def test_every_service_has_a_soap11_and_a_soap12_port(contract: Contract) -> None:
    for service in load(contract.path).wsdl.services.values():
        ports = list(service.ports.values())
        soap11 = [p for p in ports if isinstance(p.binding, Soap11Binding)]
        soap12 = [p for p in ports if isinstance(p.binding, Soap12Binding)]

        assert (len(soap11), len(soap12), len(ports)) == (1, 1, 2), service.name
        assert soap11[0].binding.port_type is soap12[0].binding.port_type
        address = soap11[0].binding_options["address"]
        assert address == soap12[0].binding_options["address"]
        assert address.startswith("http://localhost/"), "the address is a placeholder"


@each_contract
def test_bindings_are_document_literal(contract: Contract) -> None:
    bindings = parse(contract.path).findall("wsdl:binding", NS)

    assert len(bindings) == 2
    for binding in bindings:
        soap_binding = soap_child(binding, "binding")
        assert soap_binding.get("style") == "document"
        assert soap_binding.get("transport") == SOAP_OVER_HTTP  # WS-I BP R2702
        for operation in binding.findall("wsdl:operation", NS):
            assert soap_child(operation, "operation").get("style", "document") == "document"
            for direction in ("input", "output"):
                body = soap_child(operation.find(f"wsdl:{direction}", NS), "body")
                assert body.get("use") == "literal"  # R2706
                # R2716: no namespace on document-literal; no parts: the message's one part
                assert body.get("namespace") is None
                assert body.get("parts") is None
                assert body.get("encodingStyle") is None
    for service in load(contract.path).wsdl.services.values():
        for port in service.ports.values():
            for operation in port.binding._operations.values():
                assert operation.style == "document", operation.name


@each_contract
def test_actions_are_declared_and_equal_to_soap_action(contract: Contract) -> None:
    tree = parse(contract.path)
    tns = target_namespace(tree)
    required = "true" if contract.addressing_required else "false"
    input_actions: dict[str, str] = {}

    for operation in tree.iterfind("wsdl:portType/wsdl:operation", NS):
        name = operation.get("name", "")
        sent = operation.find("wsdl:input", NS).get(f"{{{WSAW}}}Action")
        answered = operation.find("wsdl:output", NS).get(f"{{{WSAW}}}Action")
        assert (sent, answered) == (f"{tns}/{name}", f"{tns}/{name}Response")
        input_actions[name] = sent

    assert input_actions
    assert len(set(input_actions.values())) == len(input_actions)
    for binding in tree.iterfind("wsdl:binding", NS):
        using = binding.findall("wsaw:UsingAddressing", NS)
        assert [u.get(f"{{{WSDL}}}required") for u in using] == [required]
        operations = binding.findall("wsdl:operation", NS)
        assert sorted(o.get("name", "") for o in operations) == sorted(input_actions)
        for operation in operations:
            soap_action = soap_child(operation, "operation").get("soapAction")
            assert soap_action == input_actions[operation.get("name", "")]


@each_contract
def test_one_element_part_per_message(contract: Contract) -> None:
    # WS-I BP R2201 / R2210: a document-literal message has exactly one part, an element.
    messages = parse(contract.path).findall("wsdl:message", NS)

    assert messages
    for message in messages:
        parts = message.findall("wsdl:part", NS)
        assert len(parts) == 1, message.get("name")
        assert parts[0].get("element") is not None, message.get("name")
        assert parts[0].get("type") is None, message.get("name")


@each_contract
def test_messages_are_wrapped(contract: Contract) -> None:
    # "Wrapped": the body element is named after the operation (+ "Response"), in the tns.
    client = load(contract.path)
    tns = target_namespace(parse(contract.path))

    for service in client.wsdl.services.values():
        for port in service.ports.values():
            for name, operation in port.binding._operations.items():
                assert operation.input.body.qname == etree.QName(tns, name)
                assert operation.output.body.qname == etree.QName(tns, name + "Response")
                for body in (operation.input.body, operation.output.body):
                    assert hasattr(body.type, "elements"), f"{body.qname} is not a complexType"


@each_contract
def test_every_reference_resolves(contract: Contract) -> None:
    client = load(contract.path)
    files = [contract.path, *schema_files(contract.path)]
    found = [(path.name, kind, name) for path in files for kind, name in references(parse(path))]

    assert found
    unresolved = [ref for ref in found if not resolves(client, ref[1], ref[2])]
    assert unresolved == []


@each_contract
def test_schemas_are_valid_xsd(contract: Contract) -> None:
    tree = parse(contract.path)
    inline = tree.findall("wsdl:types/xs:schema", NS)
    files = [parse(path).getroot() for path in schema_files(contract.path)]

    assert len(inline) == 1
    for schema in [*inline, *files]:
        assert schema.get("elementFormDefault") == "qualified"
        # Compiled on its own: an inline schema must declare its prefixes itself, as tools that
        # lift it out of the WSDL (lxml here) do not see the wsdl:definitions declarations.
        etree.XMLSchema(schema)


@each_contract
def test_binary_elements_declare_their_content_type(contract: Contract) -> None:
    tree = parse(contract.path)
    binary = [
        element
        for element in tree.iterfind(".//xs:element[@type]", NS)
        if qname(element, element.get("type", "")) == etree.QName(XSD, "base64Binary")
    ]

    for element in binary:
        expected = element.get(f"{{{XMIME}}}expectedContentTypes")
        assert expected == "application/octet-stream", element.get("name")
