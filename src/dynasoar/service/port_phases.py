"""The management ports' steps, one concern each; the order they run in is set in
:mod:`dynasoar.service.port_chain`. Each has a ``phase`` name and ``async handle(call)``; one
that holds something (a slot, spooled files) lets go of it in ``close(call)``, which runs
however the call ends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynasoar.errors import Busy, InvalidRequest, MalformedMessage, MustUnderstand
from dynasoar.http import Request, Response
from dynasoar.service.mtom_reply import mtom_response
from dynasoar.service.spyne_port import CallState, SpynePort
from dynasoar.soap import addressing, replies
from dynasoar.soap.addressing_rules import EndpointRules, check_request, soap_action_of
from dynasoar.soap.envelope import Envelope, SoapVersion, not_understood, parse_envelope, serialize
from dynasoar.soap.mime import parse_content_type
from dynasoar.soap.mtom import Attachment, MtomLimits, MtomMessage
from dynasoar.soap.mtom_feed import read_mtom
from dynasoar.soap.security import Policy
from dynasoar.wsdl import Operation, ServiceContract

log = logging.getLogger(__name__)


@dataclass
class PortCall:
    """Everything one call to a management port carries from phase to phase."""

    request: Request
    #: The SOAP version a fault must be in: the media type's until the envelope says.
    version: SoapVersion
    envelope_bytes: bytes = b""
    #: The action the transport carried (SOAPAction, or the media type's action parameter).
    soap_action: str | None = None
    message: MtomMessage | None = None
    inline: list[Attachment] = field(default_factory=list)
    envelope: Envelope | None = None
    addressing: addressing.AddressingHeaders | None = None
    signer: str | None = None
    operation: Operation | None = None
    state: CallState | None = None
    reply: bytes = b""
    response: Response | None = None


def version_hint(request: Request) -> SoapVersion:
    """Until the envelope is read, its media type (for MTOM, the start-info's) says which SOAP
    version a fault must be in."""
    content_type = request.headers.get("content-type") or ""
    media_type = content_type.partition(";")[0].strip()
    if media_type.lower() == "multipart/related":
        try:
            start_info = parse_content_type(content_type).get("start-info") or ""
        except MalformedMessage:
            start_info = ""
        media_type = start_info.partition(";")[0]
    return SoapVersion.from_media_type(media_type) or SoapVersion.SOAP11


class Admit:
    """A bounded number of calls at once; one more is refused with dyn:Busy, not queued."""

    phase = "admit"

    def __init__(self, path: str, max_calls: int) -> None:
        self._path = path
        self._max = max_calls
        self._slots = asyncio.Semaphore(max_calls)
        self._held: set[int] = set()

    async def handle(self, call: PortCall) -> None:
        if self._slots.locked():
            raise Busy(f"{self._path} is handling {self._max} calls already; retry shortly")
        await self._slots.acquire()
        self._held.add(id(call))

    def close(self, call: PortCall) -> None:
        if id(call) in self._held:
            self._held.discard(id(call))
            self._slots.release()


class ReadMessage:
    """The request's bytes: a plain envelope (bounded), or an MTOM message whose attachments
    are spooled to disk."""

    phase = "read"

    def __init__(self, spool_dir: Path, max_envelope_bytes: int, limits: MtomLimits) -> None:
        self._spool = spool_dir
        self._max = max_envelope_bytes
        self._limits = limits

    async def handle(self, call: PortCall) -> None:
        content_type = call.request.headers.get("content-type") or ""
        media_type = content_type.partition(";")[0].strip().lower()
        soap_action = soap_action_of(None, call.request.headers.get("soapaction"))
        if media_type == "multipart/related":
            call.message = await read_mtom(
                call.request.body, content_type, self._spool, self._limits
            )
            call.envelope_bytes = call.message.root
            call.soap_action = soap_action or call.message.action
        elif SoapVersion.from_media_type(media_type) is not None:
            call.envelope_bytes = await call.request.body.read_all(self._max)
            call.soap_action = soap_action or soap_action_of(content_type, None)
        else:
            raise InvalidRequest(
                f"Content-Type {media_type or '(none)'!r} is not SOAP: use text/xml (1.1), "
                "application/soap+xml (1.2) or multipart/related (MTOM)"
            )

    def close(self, call: PortCall) -> None:
        if call.message is not None:
            call.message.close()
        for attachment in call.inline:
            attachment.delete()


class ParseEnvelope:
    """The envelope (hardened parser), its SOAP version and its WS-Addressing headers."""

    phase = "parse"

    async def handle(self, call: PortCall) -> None:
        call.envelope = parse_envelope(call.envelope_bytes)
        call.version = call.envelope.version
        call.addressing = addressing.read_headers(call.envelope.header_blocks)


class CheckMustUnderstand:
    """SOAP's processing model: a mandatory header block for us that nothing here processes is
    env:MustUnderstand."""

    phase = "must-understand"

    def __init__(self, understood: Iterable[str]) -> None:
        self._understood = tuple(understood)

    async def handle(self, call: PortCall) -> None:
        assert call.envelope is not None
        missed = not_understood(call.envelope, self._understood)
        if missed:
            names = ", ".join("{%s}%s" % q for q in missed)
            raise MustUnderstand(
                f"{names} must be understood, and this endpoint does not process it",
                not_understood=tuple(missed),
            )


class VerifySignature:
    """With a trust store, only messages signed by a trusted peer go further (WS-Security)."""

    phase = "security"

    def __init__(self, security: Policy) -> None:
        self._security = security

    async def handle(self, call: PortCall) -> None:
        assert call.envelope is not None
        verified = self._security.check(call.envelope.root)
        call.signer = verified.subject if verified is not None else None


class CheckAddressing:
    """Every WS-Addressing rule of these ports, in one place: the headers are required, well
    formed and not repeated; SOAPAction agrees with wsa:Action; wsa:To names this actor (its
    scheme, host, port and path: a message meant for another actor is not taken); the Action is
    an operation here; a request-response carries a MessageID; replies go back on the HTTP
    response (anonymous) or nowhere (none)."""

    phase = "addressing"

    def __init__(self, rules: EndpointRules) -> None:
        self._rules = rules

    async def handle(self, call: PortCall) -> None:
        assert call.addressing is not None
        check_request(call.addressing, call.soap_action, self._rules)


class SelectOperation:
    """The operation wsa:Action names, and a Body that holds its input."""

    phase = "operation"

    def __init__(self, contract: ServiceContract) -> None:
        self._contract = contract

    async def handle(self, call: PortCall) -> None:
        assert call.addressing is not None and call.addressing.action is not None
        assert call.envelope is not None
        operation = self._contract.operations[call.addressing.action]
        if operation.input_element and call.envelope.body_qname != operation.input_element:
            raise InvalidRequest(
                f"wsa:Action {call.addressing.action} names {operation.name}, but the Body holds "
                f"{call.envelope.body_qname or 'nothing'}"
            )
        call.operation = operation


class Invoke:
    """Runs the operation (spyne) on a worker thread: operations block (a Deploy starts a
    process or a VM). An SP operation that needs the SP's event loop hops back to it through
    ``ctx.udc.run``, waiting with a deadline."""

    phase = "invoke"

    def __init__(
        self,
        port: SpynePort,
        executor: Executor,
        spool_dir: Path,
        state: Callable[[], dict[str, Any]],
    ) -> None:
        self._port = port
        self._executor = executor
        self._spool = spool_dir
        self._state = state

    async def handle(self, call: PortCall) -> None:
        call.state = CallState(
            attachments=call.message.attachments if call.message else {},
            addressing=call.addressing,
            request=call.request,
            spool_dir=self._spool,
            inline_spooled=call.inline,
            signer=call.signer,
            **self._state(),
        )
        loop = asyncio.get_running_loop()
        call.reply = await loop.run_in_executor(
            self._executor, self._port.dispatch, call.envelope_bytes, call.version, call.state
        )


class UndoIfGone:
    """After the operation ran: a requester whose connection is gone before the reply could be
    written hears nothing of what was done, so what the operation registered to undo it
    (``CallState.undo``: a Deploy nobody will use) runs now. The HTTP layer's
    ``Request.disconnected()`` says whether the requester is gone; without one, it is there."""

    phase = "undo-if-gone"

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    async def handle(self, call: PortCall) -> None:
        disconnected = getattr(call.request, "disconnected", None)
        state = call.state
        if state is None or not state.undo or disconnected is None or not disconnected():
            return
        action = call.addressing.action if call.addressing is not None else "?"
        log.warning("%s: the requester left before the reply; undoing", action)
        await asyncio.get_running_loop().run_in_executor(self._executor, _run_all, state.undo)


def _run_all(steps: list[Callable[[], object]]) -> None:
    for step in steps:
        try:
            step()
        except Exception:
            log.exception("undoing a call whose requester left")


class AddressReply:
    """The reply is a reply (Core §3.4): RelatesTo, Action, a MessageID and the ReplyTo's
    reference parameters; to a ReplyTo of none it is discarded (an empty 202)."""

    phase = "reply"

    async def handle(self, call: PortCall) -> None:
        assert call.addressing is not None and call.operation is not None
        target = replies.select(call.addressing, fault=False)
        if target.kind is not replies.Destination.ANONYMOUS:
            call.response = Response(202)  # none: the operation ran; nobody hears of it
            return
        try:
            envelope = parse_envelope(call.reply)
        except MalformedMessage as exc:
            raise MalformedMessage(f"the service produced an invalid reply: {exc.reason}") from exc
        replies.complete(envelope, call.addressing, call.operation.output_action or "", target)
        call.reply = serialize(envelope.root)


class SignReply:
    """Last, since nothing may change a signed reply: sign it (with credentials) and send."""

    phase = "sign"

    def __init__(self, security: Policy) -> None:
        self._security = security

    async def handle(self, call: PortCall) -> None:
        if call.response is not None:
            return
        assert call.operation is not None
        if call.state is not None and call.state.outgoing:  # files go along: MTOM
            call.response = mtom_response(
                self._security.sign_envelope(call.reply),
                call.state.outgoing,
                call.version,
                call.operation.output_action,
                getattr(call.state, "spool_dir", Path("/nonexistent")),
            )
            return
        call.response = Response(
            200,
            [("Content-Type", call.version.content_type(call.operation.output_action))],
            self._security.sign_envelope(call.reply),
        )
