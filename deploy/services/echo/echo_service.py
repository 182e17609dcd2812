"""Echo, dynasoar's stateless sample service: `Echo(text) -> text`, `Compute(millis) -> iterations`.

`application` is one WSGI callable answering SOAP 1.1 (text/xml) and SOAP 1.2
(application/soap+xml) on the same URL, as `Echo.wsdl` describes. The module runs in a plain
Python process on a Host Provider, so it imports only spyne, lxml and the standard library.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from spyne import Application, Fault, Integer32, Integer64, ServiceBase, Unicode, rpc
from spyne.protocol.soap import Soap11, Soap12
from spyne.server.wsgi import WsgiApplication

TNS = "urn:dynasoar:samples:echo"
#: Compute refuses more CPU time than this per call (milliseconds).
MAX_MILLIS = 60_000

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]


def burn_cpu(millis: int) -> int:
    """Spin until this thread has used `millis` ms of CPU time; return the iterations done.

    Thread CPU time, not wall time: a loaded host makes the call slower, not cheaper.
    """
    deadline = time.thread_time() + millis / 1000.0
    iterations = 0
    while time.thread_time() < deadline:
        iterations += 1
    return iterations


class EchoService(ServiceBase):
    # nillable stays True on `text`: spyne reads an empty <text/> as None before the nillable
    # check, so nillable=False would refuse Echo("").
    @rpc(
        Unicode(min_occurs=1),
        _returns=Unicode(min_occurs=1),
        _out_variable_name="text",
    )
    def Echo(ctx: Any, text: str | None) -> str:
        if text is None:  # xsi:nil="true": not allowed by the WSDL
            raise Fault("Client.InvalidArgument", "text must not be nil")
        return text

    @rpc(
        Integer32(min_occurs=1, nillable=False),
        _returns=Integer64(min_occurs=1),
        _out_variable_name="iterations",
    )
    def Compute(ctx: Any, millis: int) -> int:
        if not 0 <= millis <= MAX_MILLIS:
            raise Fault(
                "Client.InvalidArgument",
                f"millis must be between 0 and {MAX_MILLIS}, got {millis}",
            )
        return burn_cpu(millis)


# --- SOAP 1.1 + 1.2 on one URL (the same few lines are in every sample package) -------------


class _NonEmptyBody:
    """spyne 2.14 crashes (AttributeError, a bare HTTP 500) on an empty SOAP Body: fault instead."""

    ns_soap_env: str

    def decompose_incoming_envelope(self, ctx: Any, *args: Any, **kwargs: Any) -> None:
        envelope = ctx.in_document[0]
        if envelope.tag == f"{{{self.ns_soap_env}}}Envelope":
            body = envelope.find(f"{{{self.ns_soap_env}}}Body")
            if body is None or len(body) == 0 or not isinstance(body[0].tag, str):
                raise Fault("Client.SoapError", "The SOAP Body must hold the request element")
        super().decompose_incoming_envelope(ctx, *args, **kwargs)


class _Soap11(_NonEmptyBody, Soap11):
    pass


class _Soap12(_NonEmptyBody, Soap12):
    pass


def _plain(
    start_response: StartResponse, status: str, text: str, *extra: tuple[str, str]
) -> list[bytes]:
    body = text.encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    start_response(status, [*headers, *extra])
    return [body]


def soap_application(services: list[type], tns: str, name: str) -> WsgiApp:
    """One WSGI app for both SOAP versions, chosen per request by the Content-Type."""

    def spyne_app(protocol: type) -> WsgiApp:
        # validator="soft": spyne 2.14's Soap12 with the lxml validator crashes building faults.
        app = Application(
            services,
            tns=tns,
            name=name,
            in_protocol=protocol(validator="soft"),
            out_protocol=protocol(),
        )
        return WsgiApplication(app)

    by_media_type = {"text/xml": spyne_app(_Soap11), "application/soap+xml": spyne_app(_Soap12)}

    def dispatch(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return _plain(
                start_response,
                "405 Method Not Allowed",
                "POST a SOAP envelope\n",
                ("Allow", "POST"),
            )
        media_type = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        app = by_media_type.get(media_type)
        if app is None:
            return _plain(
                start_response,
                "415 Unsupported Media Type",
                "SOAP 1.1 is text/xml, SOAP 1.2 is application/soap+xml\n",
            )
        return app(environ, start_response)

    return dispatch


application = soap_application([EchoService], TNS, "EchoService")
