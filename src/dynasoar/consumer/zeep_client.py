"""zeep clients with dynasoar's defaults: no environment proxies, bounded timeouts, and
WS-Addressing from the WSDL (zeep adds To/Action/MessageID when operations declare
wsaw:Action; adding its WsAddressingPlugin as well would send every header twice)."""

from __future__ import annotations

from typing import Any

import requests
import zeep
import zeep.exceptions
from zeep.transports import Transport

from dynasoar import ns
from dynasoar.errors import FaultInfo, RemoteFault, TransportError, Unreachable
from dynasoar.tls import default_ca


def new_client(
    wsdl_url: str, timeout: float = 180.0, plugins: list[Any] | None = None
) -> zeep.Client:
    session = requests.Session()
    session.trust_env = False  # loopback peers: never route through an environment proxy
    ca = default_ca()
    session.verify = str(ca) if ca is not None else True
    transport = Transport(session=session, timeout=timeout, operation_timeout=timeout)
    try:
        client = zeep.Client(
            wsdl_url,
            transport=transport,
            settings=zeep.Settings(strict=True, xml_huge_tree=False),
            plugins=plugins or [],
        )
    except requests.ConnectionError as exc:
        why = _why(exc)
        raise Unreachable(f"nothing answers at {_origin(wsdl_url)} ({why})", why=why) from exc
    except (requests.RequestException, OSError) as exc:
        raise TransportError(f"cannot load the WSDL at {wsdl_url}: {exc}") from exc
    return client


def _origin(url: str) -> str:
    return url.partition("://")[2].partition("/")[0] or url


def _why(exc: requests.ConnectionError) -> str:
    """What requests' nested ConnectionError boils down to (refused, no such name ...)."""
    text = str(exc)
    for known in (
        "Connection refused",
        "Name or service not known",
        "No route to host",
        "timed out",
        "Temporary failure in name resolution",
    ):
        if known in text:
            return known.lower()
    return text


def soap12_service(client: zeep.Client) -> Any:
    """The client's service proxy bound to the WSDL's SOAP 1.2 port, if it has one."""
    for service in client.wsdl.services.values():
        for port in service.ports.values():
            if port.binding.__class__.__name__ == "Soap12Binding":
                return client.bind(service.name, port.name)
    return client.service


def invoke(service: Any, operation: str, **kwargs: Any) -> Any:
    """Call an operation, turning zeep's errors into dynasoar's."""
    try:
        return getattr(service, operation)(**kwargs)
    except zeep.exceptions.Fault as exc:
        subcodes = [(q.namespace or "", q.localname) for q in (exc.subcodes or [])]
        # SOAP 1.1 has no subcodes: dynasoar's ride as detail elements.
        if exc.detail is not None:
            subcodes += [_qname(c) for c in exc.detail if isinstance(c.tag, str)]
        code = exc.code or ""
        raise RemoteFault(
            FaultInfo(code=(ns.SOAP11_ENV, str(code)), subcodes=subcodes, reason=exc.message or ""),
            status=500,
        ) from exc
    except requests.ConnectionError as exc:
        why = _why(exc)
        raise Unreachable(f"{operation}: nothing answers ({why})", why=why) from exc
    except (requests.RequestException, zeep.exceptions.TransportError) as exc:
        raise TransportError(f"{operation}: {exc}") from exc


def _qname(element: Any) -> tuple[str, str]:
    tag = element.tag
    return (tag[1:].partition("}")[0], tag.partition("}")[2]) if tag.startswith("{") else ("", tag)
