"""WS-Addressing on the wire for the spec-section tests: endpoint references as the tests send
them, and what to read off a fault (its Action, ProblemHeaderQName, where wsa is declared)."""

from __future__ import annotations

import re

from lxml import etree

from dynasoar import ns

from .wire import NSMAP, Reply

SP_PORT = "/dynasoar/ServiceProvider"
HP_PORT = "/dynasoar/HostProvider"
SP_LIST = f'<sp:ListServices xmlns:sp="{ns.DYN_SP}"/>'
SP_LIST_ACTION = f"{ns.DYN_SP}/ListServices"
HP_STATUS = f'<h:Status xmlns:h="{ns.DYN_HP}"/>'
HP_STATUS_ACTION = f"{ns.DYN_HP}/Status"
#: A reference parameter with an attribute of its own, a child, and a QName as content (whose
#: prefix is declared on the EPR, not on the parameter: it must come along).
KEY_PARAM = (
    '<p:CustomerKey xmlns:p="urn:example:p" p:kind="gold" flag="1">'
    "<p:Id>123456789</p:Id><p:Type>q:Premium</p:Type></p:CustomerKey>"
)
KEY = "{urn:example:p}CustomerKey"


def epr(tag: str, address: str, params: str = "", properties: str = "") -> str:
    """An endpoint reference as a header block (prefix ``wsa`` bound by the envelope)."""
    parts = [f"<wsa:Address>{address}</wsa:Address>"]
    if properties:
        parts.append(f"<wsa:ReferenceProperties>{properties}</wsa:ReferenceProperties>")
    if params:
        parts.append(f"<wsa:ReferenceParameters>{params}</wsa:ReferenceParameters>")
    return f'<wsa:{tag} xmlns:q="urn:example:q">{"".join(parts)}</wsa:{tag}>'


def reply_to(address: str, params: str = "") -> str:
    return epr("ReplyTo", address, params)


def fault_to(address: str, params: str = "") -> str:
    return epr("FaultTo", address, params)


def header_text(reply: Reply, name: str, wsa: str = ns.WSA) -> str | None:
    """The text of a WS-Addressing header block of the reply."""
    el = reply.xml.find(f"{{*}}Header/{{{wsa}}}{name}")
    return None if el is None else (el.text or "").strip()


def problem_header(reply: Reply, wsa: str = ns.WSA) -> tuple[str, str] | None:
    """The ProblemHeaderQName of a WS-A fault, resolved (SOAP 1.2: in the Detail; SOAP 1.1: in
    the wsa:FaultDetail header)."""
    el = reply.xml.find(f".//{{{wsa}}}ProblemHeaderQName")
    if el is None:
        return None
    prefix, _, local = (el.text or "").strip().rpartition(":")
    return (el.nsmap.get(prefix or None, ""), local)


def fault_element(reply: Reply) -> etree._Element:
    fault = reply.xml.find(".//s11:Fault", NSMAP)
    if fault is None:
        fault = reply.xml.find(".//s12:Fault", NSMAP)
    assert fault is not None, reply.body
    return fault


def declared_on_the_fault(reply: Reply, uri: str) -> bool:
    """Does the Fault element itself declare a prefix for ``uri`` (not only an ancestor)?"""
    start = re.search(rb"<([\w.-]+:)?Fault\b[^>]*>", reply.body)
    assert start is not None, reply.body
    return f'="{uri}"'.encode() in start.group(0)


def reference_blocks(reply: Reply, tag: str = KEY) -> list[etree._Element]:
    header = reply.xml.find("{*}Header")
    return [] if header is None else [b for b in header if b.tag == tag]
