"""A WS-I Basic Profile 1.1 check of WSDL 1.1 documents, offline: the description rules that
matter for generated clients, by their BP 1.1 numbers. SOAP 1.2 bindings get the same
document/literal rules (as BP 2.0 has them), plus "explicit bindings": every binding and port
uses one SOAP namespace throughout, and a description that declares the soap12 namespace has a
SOAP 1.2 binding (gSOAP's wsdl2h generates SOAP 1.2 code as soon as that namespace appears).

``check(document, load)`` returns the violations; ``load(location, base)`` fetches an imported
document (a file or the SP's URL) and returns (bytes, its own location)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

WSDL = "http://schemas.xmlsoap.org/wsdl/"
SOAP11 = "http://schemas.xmlsoap.org/wsdl/soap/"
SOAP12 = "http://schemas.xmlsoap.org/wsdl/soap12/"
XSD = "http://www.w3.org/2001/XMLSchema"
SOAP_ENC = ("http://schemas.xmlsoap.org/soap/encoding/", "http://www.w3.org/2003/05/soap-encoding")
SOAP_HTTP = "http://schemas.xmlsoap.org/soap/http"
SOAP_NS = (SOAP11, SOAP12)

Loader = Callable[[str, str], tuple[bytes, str]]


@dataclass(frozen=True)
class Violation:
    #: The BP 1.1 requirement ("R2201"), or a name for the rules that are ours ("explicit-binding",
    #: "soapAction", "tns", "xsd-import", "port").
    rule: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule} {self.where}: {self.message}"


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def _qname(element: etree._Element, value: str) -> tuple[str, str]:
    prefix, _, local = value.strip().rpartition(":")
    return (element.nsmap.get(prefix or None) or "", local)


class _Checker:
    def __init__(self, root: etree._Element, location: str, load: Loader) -> None:
        self.root = root
        self.location = location
        self.load = load
        self.found: list[Violation] = []
        self.tns = root.get("targetNamespace") or ""

    def flag(self, rule: str, where: str, message: str) -> None:
        self.found.append(Violation(rule, where, message))

    def run(self) -> list[Violation]:
        if etree.QName(self.root).text != f"{{{WSDL}}}definitions":
            self.flag("R2001", "/", "the document is not a WSDL 1.1 wsdl:definitions")
            return self.found
        if not self.tns:
            self.flag("tns", "wsdl:definitions", "no targetNamespace")
        self._order()
        self._imports()
        self._schemas()
        self._encoding()
        messages = {m.get("name"): m for m in self.root.iterfind(f"{{{WSDL}}}message")}
        port_types = {p.get("name"): p for p in self.root.iterfind(f"{{{WSDL}}}portType")}
        for port_type in port_types.values():
            names = [o.get("name") for o in port_type.iterfind(f"{{{WSDL}}}operation")]
            if len(names) != len(set(names)):
                self.flag("R2304", f"portType {port_type.get('name')}", "overloaded operation name")
        uses_soap12 = False
        for binding in self.root.iterfind(f"{{{WSDL}}}binding"):
            uses_soap12 |= self._binding(binding, messages, port_types) == SOAP12
        self._ports()
        if SOAP12 in self._declared() and not uses_soap12:
            self.flag(
                "explicit-binding",
                "wsdl:definitions",
                "declares the soap12 namespace but has no SOAP 1.2 binding",
            )
        return self.found

    def _declared(self) -> set[str]:
        return {uri for el in self.root.iter(etree.Element) for uri in el.nsmap.values()}

    def _order(self) -> None:
        # R2022: wsdl:import first; R2023: then wsdl:types (wsdl:documentation may lead).
        seen: list[str] = []
        for child in self.root:
            if not isinstance(child.tag, str) or etree.QName(child).namespace != WSDL:
                continue
            name = etree.QName(child).localname
            if name == "documentation":
                continue
            if name == "import" and any(s != "import" for s in seen):
                self.flag("R2022", "wsdl:import", "wsdl:import must precede other WSDL elements")
            if name == "types" and any(s not in ("import",) for s in seen):
                self.flag("R2023", "wsdl:types", "wsdl:types must precede all but wsdl:import")
            seen.append(name)

    def _imports(self) -> None:
        for imp in self.root.iterfind(f"{{{WSDL}}}import"):
            location, namespace = imp.get("location") or "", imp.get("namespace") or ""
            where = f"wsdl:import {location or '(no location)'}"
            if not location:
                self.flag("R2007", where, "wsdl:import needs a non-empty location")
                continue
            if not namespace:
                self.flag("R2005", where, "wsdl:import needs a namespace")
            data, _ = self.load(location, self.location)
            imported = etree.fromstring(data, _parser())
            if etree.QName(imported).text != f"{{{WSDL}}}definitions":
                self.flag("R2001", where, "wsdl:import may only import a WSDL description")
            elif imported.get("targetNamespace") != namespace:
                self.flag("R2005", where, "imported targetNamespace differs from @namespace")
        for imp in self.root.iter(f"{{{XSD}}}import", f"{{{XSD}}}include"):
            parent = imp.getparent()
            if parent is None or etree.QName(parent).text != f"{{{XSD}}}schema":
                self.flag("R2003", "xsd:import", "xsd:import only inside xsd:schema")
            elif parent.getparent() is None or etree.QName(parent.getparent()).text != (
                f"{{{WSDL}}}types"
            ):
                self.flag("R2003", "xsd:import", "xsd:schema must be inside wsdl:types")

    def _schemas(self) -> None:
        types = self.root.findall(f"{{{WSDL}}}types")
        if len(types) > 1:
            self.flag("R2023", "wsdl:types", "more than one wsdl:types")
        for schema in self.root.iterfind(f"{{{WSDL}}}types/{{{XSD}}}schema"):
            children = {etree.QName(c).localname for c in schema if isinstance(c.tag, str)}
            if not schema.get("targetNamespace") and not children <= {"import", "annotation"}:
                self.flag("R2105", "xsd:schema", "no targetNamespace")
            for imp in schema.iterfind(f"{{{XSD}}}import"):
                self._schema_import(schema, imp)
        for child in self.root.iterfind(f"{{{WSDL}}}types/*"):
            if etree.QName(child).namespace != XSD:
                self.flag("R2002", "wsdl:types", f"{child.tag} is not an XML Schema")

    def _schema_import(self, schema: etree._Element, imp: etree._Element) -> None:
        namespace, location = imp.get("namespace"), imp.get("schemaLocation")
        where = f"xsd:import {location or namespace}"
        if not namespace:
            self.flag("xsd-import", where, "xsd:import without a namespace")
        if namespace and namespace == schema.get("targetNamespace"):
            self.flag("xsd-import", where, "xsd:import of the schema's own namespace (xsd:include)")
        if location:
            data, _ = self.load(location, self.location)
            imported = etree.fromstring(data, _parser())
            if etree.QName(imported).text != f"{{{XSD}}}schema":
                self.flag("R2004", where, "xsd:import of a document that is not an xsd:schema")
            elif imported.get("targetNamespace") != namespace:
                self.flag("xsd-import", where, "imported schema's targetNamespace differs")

    def _encoding(self) -> None:
        for el in self.root.iter(etree.Element):
            for name in el.attrib:
                if etree.QName(name).localname == "encodingStyle":
                    self.flag("R1005", etree.QName(el).localname, "encodingStyle: SOAP encoding")
                if etree.QName(name).localname == "arrayType":
                    self.flag("R2111", etree.QName(el).localname, "wsdl:arrayType: SOAP encoding")
            if etree.QName(el).localname in ("restriction", "extension"):
                base = _qname(el, el.get("base", ""))
                if base[0] in SOAP_ENC:
                    self.flag("R2110", "xsd:" + etree.QName(el).localname, "derives from soapenc")

    def _soap_children(self, parent: etree._Element, local: str) -> list[etree._Element]:
        return [c for ns in SOAP_NS for c in parent.iterfind(f"{{{ns}}}{local}")]

    def _binding(
        self,
        binding: etree._Element,
        messages: dict[str | None, etree._Element],
        port_types: dict[str | None, etree._Element],
    ) -> str | None:
        name = f"binding {binding.get('name')}"
        found = self._soap_children(binding, "binding")
        if len(found) != 1:
            self.flag("R2401", name, "needs exactly one soap:binding or soap12:binding")
            return None
        soap_binding = found[0]
        soap = etree.QName(soap_binding).namespace or ""
        if soap_binding.get("transport") != SOAP_HTTP:
            self.flag("R2702", name, f"transport {soap_binding.get('transport')!r}")
        binding_style = soap_binding.get("style", "document")
        used = {etree.QName(el).namespace for el in binding.iter(etree.Element)} & set(SOAP_NS)
        if used != {soap}:
            self.flag("explicit-binding", name, "mixes soap and soap12 extension elements")
        port_type = port_types.get(_qname(binding, binding.get("type", ""))[1])
        abstract = (
            {o.get("name") for o in port_type.iterfind(f"{{{WSDL}}}operation")}
            if (port_type is not None)
            else set()
        )
        concrete = [o.get("name") for o in binding.iterfind(f"{{{WSDL}}}operation")]
        if set(concrete) != abstract or len(concrete) != len(set(concrete)):
            self.flag("R2718", name, "operations differ from its portType's")
        signatures: dict[tuple[str, str], str | None] = {}
        for operation in binding.iterfind(f"{{{WSDL}}}operation"):
            where = f"{name} operation {operation.get('name')}"
            soap_op = operation.find(f"{{{soap}}}operation")
            style = binding_style
            if soap_op is None or soap_op.get("soapAction") is None:
                self.flag("soapAction", where, "no soapAction declared")
            elif soap_op.get("style"):
                style = soap_op.get("style", style)
            if style != "document":
                self.flag("R2705", where, f"style {style!r}: dynasoar's contracts are doc/literal")
            body_element = self._operation_bodies(operation, soap, where, messages, port_type)
            if body_element is not None:
                if body_element in signatures:
                    self.flag(
                        "R2710",
                        where,
                        f"same body element as {signatures[body_element]}: not unique",
                    )
                signatures[body_element] = operation.get("name")
        return soap

    def _operation_bodies(
        self,
        operation: etree._Element,
        soap: str,
        where: str,
        messages: dict[str | None, etree._Element],
        port_type: etree._Element | None,
    ) -> tuple[str, str] | None:
        abstract = None
        if port_type is not None:
            for op in port_type.iterfind(f"{{{WSDL}}}operation"):
                if op.get("name") == operation.get("name"):
                    abstract = op
        input_element = None
        for direction in ("input", "output"):
            concrete = operation.find(f"{{{WSDL}}}{direction}")
            if concrete is None:
                continue
            for ext in concrete.iter(f"{{{soap}}}body", f"{{{soap}}}header", f"{{{soap}}}fault"):
                if ext.get("use", "literal") != "literal":
                    self.flag("R2706", where, f"{direction}: use={ext.get('use')!r}")
            body = concrete.find(f"{{{soap}}}body")
            if body is None:
                self.flag("R2705", where, f"{direction} has no soap body")
                continue
            if body.get("namespace") is not None:
                self.flag("R2716", where, f"{direction}: namespace on a doc/literal soap:body")
            message_ref = None
            if abstract is not None and abstract.find(f"{{{WSDL}}}{direction}") is not None:
                message_ref = abstract.find(f"{{{WSDL}}}{direction}").get("message", "")
            message = messages.get(_qname(abstract, message_ref)[1]) if message_ref else None
            if message is None:
                self.flag("R2101", where, f"{direction}: its message is not in this description")
                continue
            parts = message.findall(f"{{{WSDL}}}part")
            listed = (body.get("parts") or "").split() if body.get("parts") is not None else None
            if listed is not None and len(listed) > 1:
                self.flag("R2201", where, f"{direction}: more than one part in soap:body/@parts")
            body_parts = [p for p in parts if listed is None or p.get("name") in listed]
            if listed is None and len(parts) > 1:
                self.flag(
                    "R2210",
                    where,
                    f"{direction}: message {message.get('name')} has {len(parts)} parts",
                )
            for part in body_parts:
                if part.get("element") is None:
                    self.flag("R2204", where, f"{direction}: part {part.get('name')} uses type=")
            if direction == "input" and len(body_parts) == 1 and body_parts[0].get("element"):
                input_element = _qname(body_parts[0], body_parts[0].get("element", ""))
        return input_element

    def _ports(self) -> None:
        bindings = {b.get("name"): b for b in self.root.iterfind(f"{{{WSDL}}}binding")}
        for port in self.root.iterfind(f"{{{WSDL}}}service/{{{WSDL}}}port"):
            where = f"port {port.get('name')}"
            binding = bindings.get(_qname(port, port.get("binding", ""))[1])
            addresses = self._soap_children(port, "address")
            if binding is None or len(addresses) != 1:
                self.flag("port", where, "needs its binding and one soap address")
                continue
            soap = {etree.QName(c).namespace for c in self._soap_children(binding, "binding")}
            if {etree.QName(addresses[0]).namespace} != soap:
                self.flag("explicit-binding", where, "address and binding use different SOAP")


def check(document: bytes, location: str, load: Loader) -> list[Violation]:
    root = etree.fromstring(document, _parser())
    return _Checker(root, location, load).run()
