"""Reading WSDL 1.1 documents: operations, their WS-Addressing actions and addresses; rewriting
the addresses of a service's ports (the SP advertises a service at its own URL)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from dynasoar import ns
from dynasoar.errors import InvalidPackage
from dynasoar.soap.envelope import SoapVersion, new_parser, serialize

_W = f"{{{ns.WSDL}}}"
_ADDRESS_TAGS = (f"{{{ns.WSDL_SOAP11}}}address", f"{{{ns.WSDL_SOAP12}}}address")
_HEADER_TAGS = (f"{{{ns.WSDL_SOAP11}}}header", f"{{{ns.WSDL_SOAP12}}}header")


@dataclass(frozen=True)
class Operation:
    name: str
    input_action: str
    output_action: str | None  # None for one-way operations
    soap_action: str | None
    #: The qualified name of the input message's body element ("{ns}local"), if known.
    input_element: str | None


@dataclass
class ServiceContract:
    """What a router needs to know of one WSDL."""

    target_namespace: str
    operations: dict[str, Operation] = field(default_factory=dict)  # by input action
    #: Body element → operation, for plain SOAP without a usable action.
    by_element: dict[str, Operation] = field(default_factory=dict)
    versions: set[SoapVersion] = field(default_factory=set)
    addressing_required: bool = False
    #: Header blocks ("{ns}local") the bindings' inputs declare: the ones the service processes.
    header_elements: set[str] = field(default_factory=set)

    def operation_for(self, action: str | None, body_qname: str | None) -> Operation | None:
        if action and action in self.operations:
            return self.operations[action]
        if body_qname:
            return self.by_element.get(body_qname)
        return None

    def expects_reply(self, action: str) -> bool:
        op = self.operations.get(action)
        return op is None or op.output_action is not None


def parse_wsdl(data: bytes, origin: str = "WSDL") -> etree._Element:
    try:
        root = etree.fromstring(data, new_parser())
    except etree.XMLSyntaxError as exc:
        raise InvalidPackage(f"{origin} is not well-formed XML: {exc}") from exc
    if root.tag != f"{_W}definitions":
        raise InvalidPackage(f"{origin} is not a WSDL 1.1 document (root element {root.tag})")
    return root


def read_contract(data: bytes, origin: str = "WSDL") -> ServiceContract:
    root = parse_wsdl(data, origin)
    tns = root.get("targetNamespace", "")
    contract = ServiceContract(target_namespace=tns)
    messages = _message_elements(root)
    port_types = {pt.get("name"): pt for pt in root.iter(f"{_W}portType")}
    for binding in root.iter(f"{_W}binding"):
        _read_binding(contract, binding, port_types, messages, tns)
    contract.header_elements = _input_headers(root)
    if not contract.operations:
        raise InvalidPackage(f"{origin} declares no SOAP binding with operations")
    return contract


def _message_elements(root: etree._Element) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for message in root.iter(f"{_W}message"):
        part = message.find(f"{_W}part")
        element = part.get("element") if part is not None else None
        out[message.get("name", "")] = (
            _resolve(part, element) if element and part is not None else None
        )
    return out


def _input_headers(root: etree._Element) -> set[str]:
    """The elements of the soap:header / soap12:header parts of every binding input."""
    parts = {
        (message.get("name", ""), part.get("name", "")): _resolve(part, part.get("element", ""))
        for message in root.iter(f"{_W}message")
        for part in message.iter(f"{_W}part")
        if part.get("element")
    }
    headers = set()
    for op_input in root.iterfind(f"{_W}binding/{_W}operation/{_W}input"):
        for header in op_input:
            if header.tag in _HEADER_TAGS:
                element = parts.get((_local(header.get("message", "")), header.get("part", "")))
                if element:
                    headers.add(element)
    return headers


def _read_binding(
    contract: ServiceContract,
    binding: etree._Element,
    port_types: dict[str | None, etree._Element],
    messages: dict[str, str | None],
    tns: str,
) -> None:
    version = None
    for child in binding:
        if child.tag == f"{{{ns.WSDL_SOAP11}}}binding":
            version = SoapVersion.SOAP11
        elif child.tag == f"{{{ns.WSDL_SOAP12}}}binding":
            version = SoapVersion.SOAP12
        elif child.tag == f"{{{ns.WSAW}}}UsingAddressing":
            required = child.get(f"{_W}required", "false")
            contract.addressing_required |= required == "true"
    if version is None:
        return
    contract.versions.add(version)
    port_type = port_types.get(_local(binding.get("type", "")))
    if port_type is None:
        return
    for op in binding.iter(f"{_W}operation"):
        name = op.get("name", "")
        soap_op = op.find(f"{{{ns.WSDL_SOAP11}}}operation")
        if soap_op is None:
            soap_op = op.find(f"{{{ns.WSDL_SOAP12}}}operation")
        soap_action = soap_op.get("soapAction") if soap_op is not None else None
        abstract = port_type.find(f"{_W}operation[@name='{name}']")
        if abstract is None:
            continue
        operation = _operation(abstract, port_type.get("name", ""), tns, soap_action, messages)
        contract.operations.setdefault(operation.input_action, operation)
        if operation.input_element:
            contract.by_element.setdefault(operation.input_element, operation)


def _operation(
    abstract: etree._Element,
    port_type: str,
    tns: str,
    soap_action: str | None,
    messages: dict[str, str | None],
) -> Operation:
    name = abstract.get("name", "")
    inp = abstract.find(f"{_W}input")
    out = abstract.find(f"{_W}output")
    delimiter = ":" if tns.startswith("urn:") else "/"
    base = tns.rstrip(delimiter) + delimiter + port_type + delimiter

    def action(el: etree._Element, default_name: str) -> str:
        explicit = el.get(f"{{{ns.WSAM}}}Action") or el.get(f"{{{ns.WSAW}}}Action")
        return explicit or base + (el.get("name") or default_name)

    input_action = (
        action(inp, name + ("Request" if out is not None else "")) if inp is not None else name
    )
    output_action = action(out, name + "Response") if out is not None else None
    element = messages.get(_local(inp.get("message", ""))) if inp is not None else None
    return Operation(name, input_action, output_action, soap_action or None, element)


def _resolve(el: etree._Element, qname: str) -> str:
    prefix, _, local = qname.rpartition(":")
    uri = (el.nsmap or {}).get(prefix or None, "")
    return f"{{{uri}}}{local}" if uri else local


def _local(qname: str) -> str:
    return qname.rpartition(":")[2]


def rewrite_addresses(data: bytes, address: str, origin: str = "WSDL") -> bytes:
    """The WSDL with every soap:address / soap12:address location set to ``address``."""
    root = parse_wsdl(data, origin)
    for tag in _ADDRESS_TAGS:
        for el in root.iter(tag):
            el.set("location", address)
    for epr_address in root.iter(f"{{{ns.WSA}}}Address"):
        if (
            epr_address.getparent() is not None
            and epr_address.getparent().tag == f"{{{ns.WSA}}}EndpointReference"
        ):
            epr_address.text = address
    return serialize(root.getroottree())
