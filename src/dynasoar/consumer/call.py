"""``dynasoar call WSDL_URL OPERATION NAME=VALUE...``: one call through a zeep client generated
from the WSDL, with WS-Addressing (declared by the WSDL's actions), extra SOAP header blocks
(``--header``, e.g. dyn:PreferredHosts) and the envelopes on the wire if asked (``--raw``);
``--list`` shows the WSDL's operations and their signatures instead."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from zeep.helpers import serialize_object
from zeep.plugins import Plugin

from dynasoar.consumer.zeep_client import invoke, new_client, soap12_service
from dynasoar.errors import InvalidRequest
from dynasoar.soap.envelope import new_parser
from dynasoar.soap.security import Credentials, sign


class ReplyHeaders(Plugin):
    """Keeps the HTTP headers of the last reply (the SP's X-Dynasoar-* among them), and the
    envelopes as they went and came (for --raw)."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.sent: bytes = b""
        self.received: bytes = b""

    def egress(
        self, envelope: Any, http_headers: Any, operation: Any, binding_options: Any
    ) -> tuple[Any, Any]:
        self.sent = etree.tostring(envelope, pretty_print=True)
        return envelope, http_headers

    def ingress(self, envelope: Any, http_headers: Any, operation: Any) -> tuple[Any, Any]:
        self.headers = {k.lower(): v for k, v in dict(http_headers).items()}
        self.received = etree.tostring(envelope, pretty_print=True)
        return envelope, http_headers


class Signer(Plugin):
    """Signs each outgoing message (WS-Security, X.509): zeep has added WS-Addressing by
    then, so the signature covers it too."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    def egress(
        self, envelope: Any, http_headers: Any, operation: Any, binding_options: Any
    ) -> tuple[Any, Any]:
        sign(envelope, self.credentials)
        return envelope, http_headers


@dataclass
class CallResult:
    value: Any
    headers: dict[str, str] = field(default_factory=dict)
    sent: bytes = b""
    received: bytes = b""

    def render(self) -> str:
        value = serialize_object(self.value)
        if isinstance(value, (dict, list)):
            return json.dumps(value, indent=2, default=str)
        return str(value)


def call(
    wsdl_url: str,
    operation: str,
    assignments: list[str],
    soap12: bool = False,
    timeout: float = 180.0,
    credentials: Credentials | None = None,
    soap_headers: list[str] | None = None,
    trace: ReplyHeaders | None = None,
) -> CallResult:
    """Call ``operation``; with ``credentials`` the message is signed (services whose manifest
    requires signed messages accept nothing else). ``soap_headers`` are header blocks as XML
    text; ``trace`` keeps the envelopes even when the call ends in a fault."""
    blocks = [header_block(text) for text in soap_headers or []]
    headers = trace or ReplyHeaders()
    plugins: list[Any] = [headers]
    if credentials is not None:
        # zeep runs egress plugins in order: the signature goes on last, the trace sees it.
        plugins.insert(0, Signer(credentials))
    client = new_client(wsdl_url, timeout, plugins=plugins)
    service = soap12_service(client) if soap12 else client.service
    kwargs = _arguments(service, operation, assignments)
    if blocks:
        kwargs["_soapheaders"] = blocks
    value = invoke(service, operation, **kwargs)
    return CallResult(value, headers.headers, headers.sent, headers.received)


def header_block(text: str) -> etree._Element:
    """A SOAP header block given as XML text (parsed with no DTDs, entities or network)."""
    try:
        element = etree.fromstring(text.encode(), new_parser())
    except etree.XMLSyntaxError as exc:
        raise InvalidRequest(f"--header {text[:80]!r} is not well-formed XML: {exc}") from None
    if not isinstance(element.tag, str) or not element.tag.startswith("{"):
        raise InvalidRequest(
            f"--header {text[:80]!r}: a header block is a namespace-qualified element, "
            'e.g. <dyn:PreferredHosts xmlns:dyn="urn:dynasoar:2006">...'
        )
    return element


def list_operations(wsdl_url: str, soap12: bool = False, timeout: float = 180.0) -> list[str]:
    """The operations of the WSDL's (SOAP 1.1, or 1.2) port: ``Name(inputs) -> outputs``."""
    client = new_client(wsdl_url, timeout)
    service = soap12_service(client) if soap12 else client.service
    lines = []
    for name, op in sorted(service._binding._operations.items()):
        inputs = op.input.signature(as_output=False) if op.input is not None else ""
        outputs = op.output.signature(as_output=True) if op.output is not None else "(one-way)"
        lines.append(f"{name}({inputs}) -> {outputs or '(nothing)'}")
    return lines


def _arguments(service: Any, operation: str, assignments: list[str]) -> dict[str, Any]:
    try:
        op = service._binding._operations[operation]
    except KeyError:
        names = ", ".join(sorted(service._binding._operations)) or "none"
        raise InvalidRequest(f"the WSDL has no operation {operation!r} (it has: {names})") from None
    types = {name: element.type for name, element in op.input.body.type.elements}
    kwargs: dict[str, Any] = {}
    for assignment in assignments:
        name, sep, text = assignment.partition("=")
        if not sep:
            raise InvalidRequest(f"arguments are NAME=VALUE, not {assignment!r}")
        if name not in types:
            known = ", ".join(types) or "none"
            raise InvalidRequest(f"{operation} has no parameter {name!r} (it has: {known})")
        try:
            kwargs[name] = types[name].pythonvalue(text)
        except (ValueError, TypeError, AttributeError, NotImplementedError):
            kwargs[name] = text
    return kwargs
