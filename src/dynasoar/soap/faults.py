"""The one place errors become SOAP faults (SOAP 1.1 and 1.2), and faults become errors.

SOAP 1.2: Code/Value env:Sender|Receiver, Subcode/Value = the error's subcode (a qualified
name), a nested Subcode for WS-Addressing's refinement (e.g. wsa:ActionMismatch), Reason/Text,
Detail. SOAP 1.1: WS-Addressing faults put their subcode in faultcode and their detail in a
wsa:FaultDetail header (WS-Addressing 1.0 SOAP Binding §6); WS-Security faults put theirs in
faultcode too, with no detail (SOAP Message Security 1.1 §12); dynasoar's own faults use
faultcode Client|Server and a detail element named by the subcode (CONTRACT.md).

A fault to a request that used WS-Addressing is a reply (Core §3.4): RelatesTo, a MessageID,
the fault endpoint's reference parameters, and the Action of SOAP Binding §6 — ``.../fault``
for the faults WS-Addressing defines, ``.../soap/fault`` for every other (generic SOAP faults,
WS-Security's, dynasoar's own); a 2004/08 request is answered in 2004/08, which has only
``.../fault``. The Fault element declares the WS-Addressing prefix itself (a client that reads
the Fault apart from its envelope, as Mono's WCF does, resolves the QNames in it).

HTTP status: SOAP 1.1 faults are 500 (WS-I BP R1126); SOAP 1.2 Sender faults 400 (or 500 for
clients that take a 400 for a transport error), others 500.
"""

from __future__ import annotations

from lxml import etree

from dynasoar import ns
from dynasoar.errors import (
    WSSE,
    AddressingFault,
    DetailItem,
    DynasoarError,
    FaultInfo,
    MustUnderstand,
    QName,
    SecurityFault,
    VersionMismatch,
)
from dynasoar.soap import addressing, replies
from dynasoar.soap.envelope import SoapVersion, build_envelope, clark, serialize

#: HTTP statuses a SOAP 1.2 Sender fault may be sent with (SOAP 1.2 part 2 §7.5.1.2: 400).
SENDER_STATUSES = (400, 500)


def http_status(error: DynasoarError, version: SoapVersion, sender_status: int = 400) -> int:
    """SOAP 1.2 HTTP binding: Sender faults 400 (or ``sender_status``), all others 500;
    SOAP 1.1: 500 (BP R1126)."""
    if (
        version is SoapVersion.SOAP12
        and error.sender
        and not isinstance(error, VersionMismatch | MustUnderstand)
    ):
        return sender_status
    return 500


def fault_action(wsa: str, error: DynasoarError | None = None) -> str:
    """SOAP Binding §6: WS-Addressing's own faults ``.../fault``, all others (``error`` None:
    a fault someone else wrote) ``.../soap/fault``; 2004/08 knows only its ``.../fault``."""
    if wsa == ns.WSA_2004:
        return ns.WSA_2004_FAULT_ACTION
    return ns.WSA_FAULT_ACTION if isinstance(error, AddressingFault) else ns.WSA_SOAP_FAULT_ACTION


def fault_reply(
    error: DynasoarError,
    version: SoapVersion,
    request: addressing.AddressingHeaders | None = None,
    *,
    sender_status: int = 400,
    target: replies.ReplyTarget | None = None,
) -> tuple[int, str, bytes]:
    """(HTTP status, Content-Type, body) of the fault reply for ``error``."""
    body = render_fault(error, version, request, target)
    if isinstance(error, VersionMismatch):
        version = SoapVersion.SOAP12
    return http_status(error, version, sender_status), version.content_type(), body


def render_fault(
    error: DynasoarError,
    version: SoapVersion,
    request: addressing.AddressingHeaders | None = None,
    target: replies.ReplyTarget | None = None,
) -> bytes:
    """The fault envelope for ``error``; addressed as a reply when the request used WS-A, to
    ``target`` (by default the endpoint :func:`replies.fault_target` selects)."""
    headers: list[etree._Element] = []
    wsa = request.namespace if request is not None and request.present else None
    if wsa is not None and request is not None:
        target = target or replies.fault_target(request, error)
        headers += replies.reply_blocks(request, fault_action(wsa, error), target)
    if isinstance(error, VersionMismatch):
        return _version_mismatch(error)
    if isinstance(error, MustUnderstand):
        return _must_understand(error, version, headers)
    if version is SoapVersion.SOAP12:
        fault = _fault12(error, wsa)
    else:
        fault, detail_header = _fault11(error, wsa)
        if detail_header is not None:
            headers.append(detail_header)
    return serialize(build_envelope(version, [fault], headers, nsmap=_prefixes(error, wsa)))


def _detail_name(item: DetailItem, wsa: str | None) -> QName:
    """A 2004/08 fault's detail elements are in the 2004/08 namespace (WS-Addressing 1.0's
    names: the submission names no detail elements of its own but RetryAfter)."""
    if wsa == ns.WSA_2004 and item.name[0] == ns.WSA:
        return (ns.WSA_2004, item.name[1])
    return item.name


def _nsmap(error: DynasoarError, wsa: str | None = None) -> dict[str | None, str]:
    """Prefixes for every namespace the fault names, in element names and in QName values,
    and the request's WS-Addressing namespace."""
    uris = {q[0] for q in _codes(error, wsa) if q}
    uris |= {_detail_name(item, wsa)[0] for item in error.detail}
    if wsa is not None:
        uris.add(wsa)
    uris |= {
        item.text[1:].partition("}")[0]
        for item in error.detail
        if item.name[1] == "ProblemHeaderQName" and item.text.startswith("{")
    }
    prefixes = {ns.WSA: "wsa", ns.DYN: "dyn", ns.WSA_2004: "wsa04", WSSE: "wsse"}
    return {prefixes.get(uri, f"ns{i}"): uri for i, uri in enumerate(sorted(uris))}


def _code_is_faultcode(error: DynasoarError) -> bool:
    """Faults of standards that name their own SOAP 1.1 faultcode (WS-A, WS-Security)."""
    return isinstance(error, AddressingFault | SecurityFault)


def error_subsubcode(error: DynasoarError) -> QName | None:
    return error.subsubcode if isinstance(error, AddressingFault) else None


#: WS-Addressing 1.0 subcodes under their 2004/08 member-submission names (its section 4.4);
#: a request in 2004/08 is answered in 2004/08, which has no subsubcodes.
_WSA_2004_SUBCODES = {
    "InvalidAddressingHeader": "InvalidMessageInformationHeader",
    "MessageAddressingHeaderRequired": "MessageInformationHeaderRequired",
}


def _codes(error: DynasoarError, wsa: str | None) -> tuple[QName | None, QName | None]:
    """The fault's subcode and subsubcode, in the WS-Addressing namespace of the request."""
    subcode = error.subcode
    if wsa == ns.WSA_2004 and subcode is not None and subcode[0] == ns.WSA:
        return (ns.WSA_2004, _WSA_2004_SUBCODES.get(subcode[1], subcode[1])), None
    return subcode, error_subsubcode(error)


def _qname_text(el: etree._Element, qname: QName) -> str:
    """Text of a QName value, using (or declaring) a prefix in scope at ``el``."""
    for prefix, uri in (el.nsmap or {}).items():
        if uri == qname[0] and prefix:
            return f"{prefix}:{qname[1]}"
    raise ValueError(f"no prefix in scope for {qname[0]}")


def _prefixes(error: DynasoarError, wsa: str | None) -> dict[str | None, str]:
    """The Envelope's own declarations: the fault's vocabularies but WS-Addressing's, which
    the Fault and each header block declare where they use it."""
    return {p: uri for p, uri in _nsmap(error, wsa).items() if uri not in (ns.WSA, ns.WSA_2004)}


def _detail_children(error: DynasoarError, parent: etree._Element, wsa: str | None) -> None:
    for item in error.detail:
        name = _detail_name(item, wsa)
        child = etree.SubElement(parent, "{%s}%s" % name)
        if name[1] == "ProblemHeaderQName" and item.text.startswith("{"):
            uri, _, local = item.text[1:].partition("}")
            child.text = _qname_text(child, (uri, local))
        elif name[1] == "ProblemAction":
            # WS-Addressing schema: ProblemAction holds an Action (and optionally a SoapAction).
            etree.SubElement(child, "{%s}Action" % name[0]).text = item.text
        else:
            child.text = item.text


def _fault12(error: DynasoarError, wsa: str | None = None) -> etree._Element:
    env = ns.SOAP12_ENV
    fault = etree.Element(f"{{{env}}}Fault", nsmap={"soap": env, **_nsmap(error, wsa)})
    code = etree.SubElement(fault, f"{{{env}}}Code")
    etree.SubElement(code, f"{{{env}}}Value").text = (
        "soap:Sender" if error.sender else "soap:Receiver"
    )
    parent = code
    for sub in _codes(error, wsa):
        if sub is None:
            break
        parent = etree.SubElement(parent, f"{{{env}}}Subcode")
        etree.SubElement(parent, f"{{{env}}}Value").text = _qname_text(fault, sub)
    reason = etree.SubElement(fault, f"{{{env}}}Reason")
    text = etree.SubElement(reason, f"{{{env}}}Text")
    text.set(f"{{{ns.XML}}}lang", "en")
    text.text = error.reason
    if _code_is_faultcode(error):
        if error.detail:
            _detail_children(error, etree.SubElement(fault, f"{{{env}}}Detail"), wsa)
    elif error.subcode is not None:
        detail = etree.SubElement(fault, f"{{{env}}}Detail")
        etree.SubElement(detail, "{%s}%s" % error.subcode).text = error.reason
    return fault


def _fault11(error: DynasoarError, wsa: str | None) -> tuple[etree._Element, etree._Element | None]:
    env = ns.SOAP11_ENV
    fault = etree.Element(f"{{{env}}}Fault", nsmap={"soap": env, **_nsmap(error, wsa)})
    detail_header = None
    faultcode = etree.SubElement(fault, "faultcode")
    subcode = _codes(error, wsa)[0]
    if _code_is_faultcode(error) and subcode is not None:
        faultcode.text = _qname_text(fault, subcode)
        if isinstance(error, AddressingFault) and error.detail:
            header_ns = wsa or ns.WSA
            detail_header = etree.Element(f"{{{header_ns}}}FaultDetail", nsmap=_nsmap(error, wsa))
            _detail_children(error, detail_header, wsa)
    else:
        faultcode.text = "soap:Client" if error.sender else "soap:Server"
    etree.SubElement(fault, "faultstring").text = error.reason
    if not _code_is_faultcode(error) and error.subcode is not None:
        detail = etree.SubElement(fault, "detail")
        etree.SubElement(detail, "{%s}%s" % error.subcode).text = error.reason
    return fault, detail_header


def _must_understand(
    error: MustUnderstand, version: SoapVersion, headers: list[etree._Element]
) -> bytes:
    """SOAP 1.2 §5.4.8 (env:MustUnderstand, one env:NotUnderstood per block) / SOAP 1.1 §4.4."""
    env = version.envelope_ns
    fault = etree.Element(f"{{{env}}}Fault", nsmap={"soap": env})
    if version is SoapVersion.SOAP12:
        for i, (uri, local) in enumerate(error.not_understood):
            block = etree.Element(f"{{{env}}}NotUnderstood", nsmap={"soap": env, f"n{i}": uri})
            block.set("qname", f"n{i}:{local}")
            headers.append(block)
        code = etree.SubElement(fault, f"{{{env}}}Code")
        etree.SubElement(code, f"{{{env}}}Value").text = "soap:MustUnderstand"
        reason = etree.SubElement(etree.SubElement(fault, f"{{{env}}}Reason"), f"{{{env}}}Text")
        reason.set(f"{{{ns.XML}}}lang", "en")
        reason.text = error.reason
    else:
        etree.SubElement(fault, "faultcode").text = "soap:MustUnderstand"
        etree.SubElement(fault, "faultstring").text = error.reason
    return serialize(build_envelope(version, [fault], headers))


def _version_mismatch(error: VersionMismatch) -> bytes:
    """SOAP 1.2 §5.4.7: env:VersionMismatch with an Upgrade header listing what we speak."""
    env = ns.SOAP12_ENV
    upgrade = etree.Element(f"{{{env}}}Upgrade", nsmap={"soap": env})
    etree.SubElement(upgrade, f"{{{env}}}SupportedEnvelope", qname="soap:Envelope")
    etree.SubElement(
        upgrade,
        f"{{{env}}}SupportedEnvelope",
        qname="soap11:Envelope",
        nsmap={"soap11": ns.SOAP11_ENV},
    )
    fault = etree.Element(f"{{{env}}}Fault")
    code = etree.SubElement(fault, f"{{{env}}}Code")
    etree.SubElement(code, f"{{{env}}}Value").text = "soap:VersionMismatch"
    reason = etree.SubElement(etree.SubElement(fault, f"{{{env}}}Reason"), f"{{{env}}}Text")
    reason.set(f"{{{ns.XML}}}lang", "en")
    reason.text = error.reason
    return serialize(build_envelope(SoapVersion.SOAP12, [fault], [upgrade]))


def read_fault(body: etree._Element, version: SoapVersion) -> FaultInfo | None:
    """The fault in a reply's Body, if it holds one."""
    env = version.envelope_ns
    fault = body.find(f"{{{env}}}Fault")
    if fault is None:
        return None
    detail_xml = b""
    if version is SoapVersion.SOAP12:
        code_el = fault.find(f"{{{env}}}Code")
        codes: list[QName] = []
        node = code_el
        while node is not None:
            value = node.find(f"{{{env}}}Value")
            if value is not None:
                codes.append(_resolve_qname(value))
            node = node.find(f"{{{env}}}Subcode")
        reason_el = fault.find(f"{{{env}}}Reason/{{{env}}}Text")
        detail = fault.find(f"{{{env}}}Detail")
    else:
        code_text = fault.find("faultcode")
        codes = [_resolve_qname(code_text)] if code_text is not None else []
        reason_el = fault.find("faultstring")
        detail = fault.find("detail")
        # SOAP 1.1 has no subcodes: dynasoar's ride as detail elements (see the module doc).
        if detail is not None:
            codes += [_tag_qname(c) for c in detail if isinstance(c.tag, str)]
    if detail is not None:
        detail_xml = etree.tostring(detail)
    reason = (reason_el.text or "") if reason_el is not None else ""
    code = codes[0] if codes else (env, "Receiver")
    return FaultInfo(code=code, subcodes=codes[1:], reason=reason, detail_xml=detail_xml)


def _resolve_qname(el: etree._Element) -> QName:
    text = (el.text or "").strip()
    prefix, _, local = text.rpartition(":")
    return ((el.nsmap or {}).get(prefix or None, "") or "", local)


def _tag_qname(el: etree._Element) -> QName:
    return clark(el.tag)
