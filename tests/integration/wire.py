"""Raw SOAP over HTTP for tests that check the bytes: envelopes built by hand, http.client."""

from __future__ import annotations

import http.client
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from lxml import etree

from dynasoar import ns

ECHO_NS = "urn:dynasoar:samples:echo"
ECHO_ACTION = ECHO_NS + "/Echo"
ENV = {"1.1": ns.SOAP11_ENV, "1.2": ns.SOAP12_ENV}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def xml(self) -> etree._Element:
        return etree.fromstring(self.body)

    def find(self, path: str) -> etree._Element | None:
        return self.xml.find(path, NSMAP)

    def text(self, path: str) -> str | None:
        el = self.find(path)
        return None if el is None else el.text

    def fault_codes(self) -> list[str]:
        """Fault code and subcodes as '{ns}local' strings, for either SOAP version."""
        root = self.xml
        env = etree.QName(root).namespace
        if env == ns.SOAP12_ENV:
            values = root.findall(".//s12:Code//s12:Value", NSMAP)
        else:
            values = root.findall(".//faultcode")
        out = []
        for v in values:
            prefix, _, local = (v.text or "").strip().rpartition(":")
            out.append("{%s}%s" % (v.nsmap.get(prefix or None, ""), local))
        if env == ns.SOAP11_ENV:
            detail = root.find(".//detail")
            if detail is not None:
                out += [c.tag for c in detail if isinstance(c.tag, str)]
        return out


NSMAP = {
    "s11": ns.SOAP11_ENV,
    "s12": ns.SOAP12_ENV,
    "wsa": ns.WSA,
    "wsa04": ns.WSA_2004,
    "echo": ECHO_NS,
    "dyn": ns.DYN,
}


def wsa_headers(
    to: str | None = None,
    action: str | None = ECHO_ACTION,
    message_id: str | None = "auto",
    extra: str = "",
) -> tuple[str, str | None]:
    """WS-Addressing header blocks (prefix ``wsa``, bound by :func:`envelope`) and the
    MessageID they carry."""
    mid = f"urn:uuid:{uuid.uuid4()}" if message_id == "auto" else message_id
    parts = []
    if to is not None:
        parts.append(f"<wsa:To>{to}</wsa:To>")
    if action is not None:
        parts.append(f"<wsa:Action>{action}</wsa:Action>")
    if mid is not None:
        parts.append(f"<wsa:MessageID>{mid}</wsa:MessageID>")
    return "".join(parts) + extra, mid


def envelope(body: str, headers: str = "", version: str = "1.1", wsa: str = ns.WSA) -> bytes:
    header = f"<s:Header>{headers}</s:Header>" if headers else ""
    return (
        f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{ENV[version]}" '
        f'xmlns:wsa="{wsa}">{header}<s:Body>{body}</s:Body></s:Envelope>'
    ).encode()


def echo_body(text: str = "hi") -> str:
    return f'<e:Echo xmlns:e="{ECHO_NS}"><e:text>{text}</e:text></e:Echo>'


def post(
    url: str,
    body: bytes,
    version: str = "1.1",
    soap_action: str | None = None,
    headers: dict[str, str] | None = None,
    content_type: str | None = None,
    timeout: float = 120.0,
) -> Reply:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    h = {
        "Content-Type": content_type
        or (
            "text/xml; charset=utf-8" if version == "1.1" else "application/soap+xml; charset=utf-8"
        )
    }
    if soap_action is not None:
        if version == "1.1":
            h["SOAPAction"] = f'"{soap_action}"'
        else:
            h["Content-Type"] += f'; action="{soap_action}"'
    h.update(headers or {})
    try:
        conn.request("POST", parts.path or "/", body=body, headers=h)
        response = conn.getresponse()
        return Reply(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        conn.close()


def get(url: str, timeout: float = 30.0) -> Reply:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", target)
        response = conn.getresponse()
        return Reply(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        conn.close()
