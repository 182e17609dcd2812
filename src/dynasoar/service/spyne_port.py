"""Runs a spyne application on one envelope, for SOAP 1.1 or 1.2, without spyne's transports.

Errors from the :mod:`dynasoar.errors` tree raised by a service method come back out as
themselves (spyne would turn them into a generic "Internal Error"), so that
:mod:`dynasoar.soap.faults` renders every fault.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from spyne import Application, MethodContext, ServiceBase
from spyne.protocol.soap import Soap11, Soap12
from spyne.server import ServerBase

from dynasoar.errors import DynasoarError, InvalidRequest, MalformedMessage, ReceiverError
from dynasoar.soap.envelope import SoapVersion
from dynasoar.soap.mtom_writer import OutgoingAttachment

log = logging.getLogger(__name__)

# spyne logs every fault with a traceback (at ERROR, some at CRITICAL); we report faults
# ourselves, so spyne's own loggers say nothing.
for _name in (
    "spyne",
    "spyne.application",
    "spyne.application.client",
    "spyne.application.server",
    "spyne.protocol.xml",
):
    logging.getLogger(_name).setLevel(logging.CRITICAL + 1)


class CallState:
    """Per-call state handed to service methods as ``ctx.udc``."""

    def __init__(self, **values: Any) -> None:
        #: What to do if the requester is gone before it hears the reply (see endpoint.py).
        self.undo: list[Callable[[], object]] = []
        #: Files the reply carries as MTOM attachments (see mtom_reply.py).
        self.outgoing: list[OutgoingAttachment] = []
        self.__dict__.update(values)
        self.error: DynasoarError | None = None


class _Application(Application):  # type: ignore[misc]
    def call_wrapper(self, ctx: MethodContext) -> Any:
        try:
            return super().call_wrapper(ctx)
        except DynasoarError as exc:
            if isinstance(ctx.udc, CallState):
                ctx.udc.error = exc
            raise


class SpynePort:
    """One spyne service definition, served for both SOAP versions."""

    def __init__(self, services: Sequence[type[ServiceBase]], tns: str, name: str) -> None:
        self._servers = {
            version: ServerBase(
                _Application(
                    list(services),
                    tns=tns,
                    name=name,
                    in_protocol=protocol(validator="soft"),
                    out_protocol=protocol(),
                )
            )
            for version, protocol in ((SoapVersion.SOAP11, Soap11), (SoapVersion.SOAP12, Soap12))
        }

    def dispatch(self, envelope: bytes, version: SoapVersion, state: CallState) -> bytes:
        """The reply envelope for a request envelope; raises DynasoarError for a fault."""
        server = self._servers[version]
        first = ctx = MethodContext(server, MethodContext.SERVER)
        try:
            ctx.udc = state
            ctx.in_string = [envelope]
            ctx = server.generate_contexts(ctx)[0]
            ctx.udc = state
            if ctx.in_error is None:
                server.get_in_object(ctx)
            if ctx.in_error is not None:
                raise _request_error(ctx.in_error)
            server.get_out_object(ctx)
            if ctx.out_error is not None:
                if state.error is not None:
                    raise state.error
                log.error("service method failed: %s", ctx.out_error)
                raise ReceiverError("the operation failed inside the service; see the server log")
            server.get_out_string(ctx)
            return b"".join(ctx.out_string)
        finally:
            # spyne's contexts sit in reference cycles: what they hold (the request's bytes
            # and trees, megabytes for a big message) would wait for a full collection.
            for context in {id(first): first, id(ctx): ctx}.values():
                _release(context)


def _release(ctx: MethodContext) -> None:
    for name in _HEAVY:
        setattr(ctx, name, None)
    ctx.udc = None


_HEAVY = (
    "in_string",
    "in_document",
    "in_header_doc",
    "in_body_doc",
    "in_header",
    "in_object",
    "in_error",
    "out_object",
    "out_error",
    "out_header",
    "out_body_doc",
    "out_header_doc",
    "out_document",
    "out_string",
)


def _request_error(error: Exception) -> DynasoarError:
    code = getattr(error, "faultcode", "") or ""
    text = getattr(error, "faultstring", None) or str(error)
    if "XMLSyntaxError" in code:
        return MalformedMessage(f"the message is not well-formed XML: {text}")
    if "ResourceNotFound" in code:
        return InvalidRequest(f"the Body does not name an operation of this port: {text}")
    return InvalidRequest(f"the request does not match the port's schema: {text}")
