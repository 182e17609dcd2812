"""The WSGI container around a deployed code package: serves its WSDL at ``?wsdl``, answers
WS-Addressing requests with RelatesTo, Action and the reply endpoint's reference parameters
when the package's own code does not, and faults (env:MustUnderstand) a message with a
mandatory header block that neither it nor the service's WSDL (its bindings' soap:header
parts) says anything processes.

The deployed service is any WSGI SOAP application; addressing is the platform's job, as a
container's, so every package gets it."""

from __future__ import annotations

import http
import io
from collections.abc import Callable, Iterable
from typing import Any

from dynasoar import ns
from dynasoar.errors import WSSE, DynasoarError, MustUnderstand
from dynasoar.soap import addressing, replies
from dynasoar.soap.envelope import Envelope, not_understood, parse_envelope, serialize
from dynasoar.soap.faults import fault_action, fault_reply
from dynasoar.wsdl import ServiceContract, read_contract, rewrite_addresses

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

MAX_REQUEST_BYTES = 64 << 20


class ServiceContainer:
    def __init__(self, app: WsgiApp, wsdl: bytes) -> None:
        self.app = app
        self.wsdl = wsdl
        self.contract: ServiceContract = read_contract(wsdl)
        # Addressing is ours; dyn: headers (PreferredHosts) and wsse:Security (the consumer
        # signatures a service may require) are the Service Provider's.
        self.understood = {ns.WSA, ns.WSA_2004, ns.DYN, WSSE, *self.contract.header_elements}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "GET" and environ.get("QUERY_STRING", "").lower() in ("wsdl", "wsdl="):
            return self._serve_wsdl(environ, start_response)
        if method != "POST":
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length <= 0 or length > MAX_REQUEST_BYTES:
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        try:
            envelope = parse_envelope(body)
        except DynasoarError:
            return self.app(environ, start_response)  # not ours to judge: the service answers
        request = addressing.read_headers(envelope.header_blocks)
        missed = not_understood(envelope, self.understood)
        if missed:
            return _must_understand(start_response, envelope, request, missed)
        if not request.present:
            return self.app(environ, start_response)
        return self._addressed(environ, start_response, request)

    def _serve_wsdl(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        host = environ.get("HTTP_HOST") or f"{environ['SERVER_NAME']}:{environ['SERVER_PORT']}"
        url = f"http://{host}{environ.get('SCRIPT_NAME', '')}{environ.get('PATH_INFO', '')}"
        body = rewrite_addresses(self.wsdl, url)
        start_response(
            "200 OK",
            [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def _addressed(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        request: addressing.AddressingHeaders,
    ) -> list[bytes]:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        chunks = self.app(environ, capture)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        body = self._add_reply_headers(body, request, captured["status"])
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(captured["status"], headers)
        return [body]

    def _add_reply_headers(
        self, body: bytes, request: addressing.AddressingHeaders, status: str
    ) -> bytes:
        """The reply as a WS-Addressing reply (Core §3.4): RelatesTo, Action, a MessageID and
        the reference parameters of the endpoint it is for, where the service wrote none of
        them; the service's own headers are left as they are."""
        try:
            envelope = parse_envelope(body)
        except DynasoarError:
            return body  # not ours to fix: relay what the service wrote
        is_fault = status.startswith(("4", "5")) or (
            envelope.body is not None
            and envelope.body.find(f"{{{envelope.version.envelope_ns}}}Fault") is not None
        )
        op = self.contract.operations.get(request.action or "")
        if is_fault:
            action = fault_action(request.namespace)  # a fault the service wrote: generic
        elif op is not None and op.output_action:
            action = op.output_action
        else:
            action = (request.action or "") + "Response"
        # The reply goes back on this HTTP response (to the SP, which sends it on): its
        # endpoint's reference parameters go with it, its address is the SP's to write.
        selected = replies.select(request, fault=is_fault)
        target = replies.ReplyTarget(replies.Destination.ANONYMOUS, selected.epr, selected.header)
        if not replies.complete(envelope, request, action, target):
            return body
        return serialize(envelope.root)


def _must_understand(
    start_response: StartResponse,
    envelope: Envelope,
    request: addressing.AddressingHeaders,
    missed: list[tuple[str, str]],
) -> list[bytes]:
    names = ", ".join("{%s}%s" % q for q in missed)
    error = MustUnderstand(
        f"{names} must be understood, and this service does not process it",
        not_understood=tuple(missed),
    )
    status, content_type, body = fault_reply(error, envelope.version, request)
    start_response(
        f"{status} {http.HTTPStatus(status).phrase}",
        [("Content-Type", content_type), ("Content-Length", str(len(body)))],
    )
    return [body]
