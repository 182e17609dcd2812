"""``dynasoar call WSDL_URL OPERATION NAME=VALUE...``: one call through a zeep client generated
from the WSDL, with WS-Addressing (declared by the WSDL's actions)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from zeep.helpers import serialize_object
from zeep.plugins import Plugin

from dynasoar.consumer.zeep_client import invoke, new_client, soap12_service
from dynasoar.errors import InvalidRequest
from dynasoar.soap.security import Credentials, sign


class ReplyHeaders(Plugin):
    """Keeps the HTTP headers of the last reply (the SP's X-Dynasoar-* among them)."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}

    def ingress(self, envelope: Any, http_headers: Any, operation: Any) -> tuple[Any, Any]:
        self.headers = {k.lower(): v for k, v in dict(http_headers).items()}
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
) -> CallResult:
    """Call ``operation``; with ``credentials`` the message is signed (services whose manifest
    requires signed messages accept nothing else)."""
    headers = ReplyHeaders()
    plugins: list[Any] = [headers]
    if credentials is not None:
        plugins.append(Signer(credentials))
    client = new_client(wsdl_url, timeout, plugins=plugins)
    service = soap12_service(client) if soap12 else client.service
    kwargs = _arguments(service, operation, assignments)
    return CallResult(invoke(service, operation, **kwargs), headers.headers)


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
