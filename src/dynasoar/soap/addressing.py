"""WS-Addressing codec: SOAP header blocks ⇄ :class:`AddressingHeaders` (pure, no rules).

Reads WS-Addressing 1.0 and the 2004/08 member submission; writes in the namespace asked for
(a reply answers in the namespace its request used). Validation lives in
:mod:`dynasoar.soap.addressing_rules`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from lxml import etree

from dynasoar import ns

#: The message addressing properties carried as single header blocks.
SINGLE_HEADERS = ("To", "Action", "MessageID", "From", "ReplyTo", "FaultTo")

REPLY_RELATIONSHIP = ns.WSA + "/reply"
_WSA_TAGS = (f"{{{ns.WSA}}}", f"{{{ns.WSA_2004}}}")


@dataclass(frozen=True)
class EndpointReference:
    address: str
    reference_parameters: tuple[etree._Element, ...] = ()
    #: The 2004/08 submission's ReferenceProperties (1.0 folded them into the parameters).
    reference_properties: tuple[etree._Element, ...] = ()


@dataclass
class AddressingHeaders:
    """The message addressing properties of one message (WS-Addressing 1.0 Core §3)."""

    namespace: str = ns.WSA
    to: str | None = None
    action: str | None = None
    message_id: str | None = None
    relates_to: list[tuple[str, str]] = field(default_factory=list)  # (id, relationship)
    reply_to: EndpointReference | None = None
    fault_to: EndpointReference | None = None
    from_: EndpointReference | None = None
    #: True when the message carried any header block in a WS-Addressing namespace.
    present: bool = False
    #: Single-valued properties that appeared more than once, as (namespace, local name).
    repeated: list[tuple[str, str]] = field(default_factory=list)
    #: Properties present but unusable (an EPR without Address, an empty value).
    invalid: list[tuple[str, str]] = field(default_factory=list)

    @property
    def anonymous(self) -> str:
        return ns.WSA_ANONYMOUS if self.namespace == ns.WSA else ns.WSA_2004_ANONYMOUS

    @property
    def fault_action(self) -> str:
        return ns.WSA_FAULT_ACTION if self.namespace == ns.WSA else ns.WSA_2004_FAULT_ACTION


def new_message_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def read_headers(blocks: Iterable[etree._Element]) -> AddressingHeaders:
    """Decode the addressing properties among a message's header blocks.

    When both namespaces are present the 1.0 one wins; blocks of the other are ignored.
    """
    # One pass over Clark-notation tags: this runs for every message the SP routes.
    found: dict[str, list[tuple[str, etree._Element]]] = {}
    for block in blocks:
        tag = block.tag
        if isinstance(tag, str) and tag.startswith(_WSA_TAGS):
            uri, _, local = tag[1:].partition("}")
            found.setdefault(uri, []).append((local, block))
    wsa = ns.WSA if ns.WSA in found else ns.WSA_2004 if ns.WSA_2004 in found else None
    if wsa is None:
        return AddressingHeaders()
    headers = AddressingHeaders(namespace=wsa, present=True)
    ours = found[wsa]
    seen: set[str] = set()
    for local, block in ours:
        if local in seen:
            if local in SINGLE_HEADERS and (wsa, local) not in headers.repeated:
                headers.repeated.append((wsa, local))
        else:
            seen.add(local)
        _read_block(headers, block, local)
    if len(headers.repeated) > 1:  # in the order of SINGLE_HEADERS, as they are reported
        headers.repeated.sort(key=lambda name: SINGLE_HEADERS.index(name[1]))
    return headers


def _read_block(headers: AddressingHeaders, block: etree._Element, name: str) -> None:
    text = (block.text or "").strip()
    if name == "To":
        headers.to = headers.to or text
    elif name == "Action":
        headers.action = headers.action or text
        if not text:
            headers.invalid.append((headers.namespace, name))
    elif name == "MessageID":
        headers.message_id = headers.message_id or text
        if not text:
            headers.invalid.append((headers.namespace, name))
    elif name == "RelatesTo":
        kind = block.get("RelationshipType") or REPLY_RELATIONSHIP
        headers.relates_to.append((text, kind))
    elif name in ("ReplyTo", "FaultTo", "From"):
        epr = _read_epr(block, headers.namespace)
        if epr is None:
            headers.invalid.append((headers.namespace, name))
        attr = {"ReplyTo": "reply_to", "FaultTo": "fault_to", "From": "from_"}[name]
        if getattr(headers, attr) is None:
            setattr(headers, attr, epr)


def _read_epr(element: etree._Element, wsa: str) -> EndpointReference | None:
    address = element.find(f"{{{wsa}}}Address")
    if address is None or not (address.text or "").strip():
        return None
    return EndpointReference(
        (address.text or "").strip(),
        _children(element.find(f"{{{wsa}}}ReferenceParameters")),
        _children(element.find(f"{{{wsa}}}ReferenceProperties")) if wsa == ns.WSA_2004 else (),
    )


def _children(parent: etree._Element | None) -> tuple[etree._Element, ...]:
    return tuple(c for c in parent if isinstance(c.tag, str)) if parent is not None else ()


def write_headers(headers: AddressingHeaders) -> list[etree._Element]:
    """Encode the properties that are set as header blocks, in a stable order."""
    wsa = headers.namespace
    out: list[etree._Element] = []

    def text_block(name: str, value: str | None) -> None:
        if value is not None:
            el = etree.Element(f"{{{wsa}}}{name}", nsmap={"wsa": wsa})
            el.text = value
            out.append(el)

    text_block("To", headers.to)
    text_block("Action", headers.action)
    text_block("MessageID", headers.message_id)
    for rel_id, kind in headers.relates_to:
        el = etree.Element(f"{{{wsa}}}RelatesTo", nsmap={"wsa": wsa})
        el.text = rel_id
        if kind != REPLY_RELATIONSHIP:
            el.set("RelationshipType", kind)
        out.append(el)
    for name, epr in (
        ("From", headers.from_),
        ("ReplyTo", headers.reply_to),
        ("FaultTo", headers.fault_to),
    ):
        if epr is not None:
            out.append(write_epr(f"{{{wsa}}}{name}", epr, wsa))
    return out


def write_epr(tag: str, epr: EndpointReference, wsa: str = ns.WSA) -> etree._Element:
    el = etree.Element(tag, nsmap={"wsa": wsa})
    etree.SubElement(el, f"{{{wsa}}}Address").text = epr.address
    for name, values in (
        ("ReferenceProperties", epr.reference_properties),
        ("ReferenceParameters", epr.reference_parameters),
    ):
        if values:
            etree.SubElement(el, f"{{{wsa}}}{name}").extend([_copy(p) for p in values])
    return el


def _copy(el: etree._Element) -> etree._Element:
    # Through text: the copy keeps every namespace in scope where it was (a QName in its
    # content may use one), and belongs to no tree of the request's.
    return etree.fromstring(etree.tostring(el))


def reply_headers(
    request: AddressingHeaders, action: str, to: str | None = None
) -> AddressingHeaders:
    """The addressing properties of the reply to ``request`` (Core §3.4); ``to`` is the
    selected endpoint's address when it is not anonymous (an anonymous [destination] is the
    default and goes unwritten)."""
    relates = [(request.message_id, REPLY_RELATIONSHIP)] if request.message_id else []
    return AddressingHeaders(
        namespace=request.namespace,
        to=to,
        action=action,
        message_id=new_message_id(),
        relates_to=relates,
        present=True,
    )


def reference_parameter_blocks(epr: EndpointReference, wsa: str = ns.WSA) -> list[etree._Element]:
    """An EPR's reference parameters as the header blocks of a message to it: in WS-Addressing
    1.0 each marked ``wsa:IsReferenceParameter="true"`` (SOAP Binding §3); in the 2004/08
    submission the reference properties too, unmarked (its §2.3 has no such attribute)."""
    if wsa == ns.WSA_2004:
        return [_copy(p) for p in (*epr.reference_properties, *epr.reference_parameters)]
    blocks = []
    for param in epr.reference_parameters:
        block = _copy(param)
        block.set(f"{{{wsa}}}IsReferenceParameter", "true")
        blocks.append(block)
    return blocks
