"""Where the outcome of a routed message goes (WS-Addressing 1.0 Core §3.4, SOAP Binding §5).
The chain's ``reply`` phase hands the relayed reply here, and its fault path every fault:

- anonymous (the default): the HTTP response, completed with what the deployed service left
  out (RelatesTo, Action, the reference parameters of the endpoint it goes to); nothing it
  wrote itself is added twice;
- ``.../none``: discarded; the HTTP response is an empty 202;
- an address: a message of its own, completed (To, RelatesTo, Action, reference parameters),
  kept in the reply store and sent by the courier (:mod:`dynasoar.provider.courier`); the
  HTTP response is a 202 (sent already, for a message accepted at once).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Callable

from dynasoar.errors import DynasoarError, TransportError
from dynasoar.http import Headers, Response
from dynasoar.provider.context import MessageContext
from dynasoar.provider.deliveries import DeliveryStore, Head
from dynasoar.soap import replies
from dynasoar.soap.addressing import AddressingHeaders
from dynasoar.soap.envelope import SoapVersion, parse_envelope, serialize
from dynasoar.soap.faults import fault_action, fault_reply, render_fault
from dynasoar.soap.replies import Destination, ReplyTarget

log = logging.getLogger(__name__)

#: The largest reply the SP holds whole, to complete it or to send it to an address.
REPLY_LIMIT = 16 << 20
ACCEPTED = 202
_TAG_PREFIX = b"x-dynasoar-"


class ReplyRouter:
    def __init__(
        self, store: DeliveryStore, wake: Callable[[], None], sender_status: int = 400
    ) -> None:
        self._store = store
        self._wake = wake
        self._sender_status = sender_status

    # -- a reply from the deployed service --------------------------------------------------

    def reply_now(self, ctx: MessageContext) -> Response | None:
        """The usual reply, sent on as it came (on the HTTP response, with nothing to add);
        None when :meth:`reply` has work to do."""
        response = ctx.response
        assert response is not None
        wsa = ctx.addressing
        if wsa is None or not wsa.present:
            return self._with_status(response)
        if ctx.detached:
            return None
        target = replies.select(wsa, fault=response.status >= 400)
        if target.kind is Destination.ANONYMOUS and not _needs_completing(response, wsa, target):
            return self._with_status(response)
        return None

    async def reply(self, ctx: MessageContext) -> Response:
        now = self.reply_now(ctx)
        if now is not None:
            return now
        response = ctx.response
        wsa = ctx.addressing
        assert response is not None and wsa is not None
        fault = response.status >= 400
        target = replies.select(wsa, fault=fault)
        if target.kind is Destination.ANONYMOUS and not ctx.detached:
            action = self._action(ctx, wsa, fault)
            body = await _read(response.body)
            completed = _complete(body, wsa, action, target)
            headers = Headers(response.headers)
            headers.remove("content-length")
            reply = completed[0] if completed is not None else body
            return self._with_status(Response(response.status, headers, reply))
        action = self._action(ctx, wsa, fault)
        body = await _read(response.body)
        if target.kind is not Destination.ADDRESS or not body.strip():
            self._done(ctx)  # none, or a one-way operation's empty answer: nothing to send
            return Response(ACCEPTED)
        completed = _complete(body, wsa, action, target)
        if completed is None:
            content_type = Headers(response.headers).get("content-type")
            raise TransportError(
                f"the deployed service's reply ({content_type}) is not a SOAP envelope the "
                "Service Provider can send to the ReplyTo address"
            )
        assert target.address is not None
        message, version = completed
        self._deliver(ctx, target.address, message, version, action, _tags(response))
        return Response(ACCEPTED)

    # -- a fault of the chain's --------------------------------------------------------------

    def fault(self, ctx: MessageContext, error: DynasoarError) -> Response:
        wsa = ctx.addressing
        target = replies.fault_target(wsa, error)
        if target.kind is Destination.NONE:
            self._done(ctx)
            return Response(ACCEPTED)
        if target.kind is Destination.ADDRESS and wsa is not None and target.address:
            body = render_fault(error, ctx.version, wsa, target)
            try:
                action = fault_action(wsa.namespace, error)
                self._deliver(ctx, target.address, body, ctx.version, action)
                return Response(ACCEPTED)
            except DynasoarError as exc:
                log.error("a fault for %s could not be stored: %s", target.address, exc.reason)
                target = replies.ANONYMOUS
        if ctx.detached:
            # Accepted with 202 already, and the fault has nowhere to go.
            log.warning("a fault for an accepted message was dropped: %s", error.reason)
            self._done(ctx)
            return Response(ACCEPTED)
        status, content_type, body = fault_reply(
            error, ctx.version, wsa, sender_status=self._sender_status, target=target
        )
        return Response(status, [("Content-Type", content_type)], body)

    # -- helpers ----------------------------------------------------------------------------

    def _deliver(
        self,
        ctx: MessageContext,
        address: str,
        body: bytes,
        version: SoapVersion,
        action: str,
        tags: Head | None = None,
    ) -> None:
        head: Head = [("Content-Type", version.content_type(action))]
        if version is SoapVersion.SOAP11:
            head.append(("SOAPAction", f'"{action}"'))
        head += tags or []
        wsa = ctx.addressing
        self._store.ready(
            ctx.job,
            address=address,
            head=head,
            body=body,
            message_id=wsa.message_id if wsa is not None else None,
        )
        ctx.job = None
        self._wake()

    def _done(self, ctx: MessageContext) -> None:
        if ctx.job is not None:
            try:
                self._store.discard(ctx.job)
            except DynasoarError as exc:
                log.error("could not forget accepted message %s: %s", ctx.job, exc.reason)
            ctx.job = None

    def _with_status(self, response: Response) -> Response:
        """A SOAP 1.2 Sender fault's 400 from the service, as 500 if the operator asked."""
        if response.status == 400 and self._sender_status != 400:
            content_type = Headers(response.headers).get("content-type") or ""
            if content_type.lower().startswith("application/soap+xml"):
                response.status = self._sender_status
        return response

    @staticmethod
    def _action(ctx: MessageContext, wsa: AddressingHeaders, fault: bool) -> str:
        if fault:
            return fault_action(wsa.namespace)
        operation = ctx.service.contract.operations.get(wsa.action or "") if ctx.service else None
        if operation is not None and operation.output_action:
            return operation.output_action
        return (wsa.action or "") + "Response"


def _needs_completing(response: Response, wsa: AddressingHeaders, target: ReplyTarget) -> bool:
    """Reading and parsing a reply costs: only when it must carry reference parameters, or
    may lack the RelatesTo (a reply that names it was written by a WS-Addressing stack: the
    container of code services, or a guest that does its own)."""
    epr = target.epr
    if epr is not None and (epr.reference_parameters or epr.reference_properties):
        return True
    body = response.body
    return isinstance(body, bytes) and bool(wsa.message_id) and b"RelatesTo" not in body


def _complete(
    body: bytes, wsa: AddressingHeaders, action: str, target: ReplyTarget
) -> tuple[bytes, SoapVersion] | None:
    """The reply with what it lacks added, and its SOAP version; None when it is not a SOAP
    envelope."""
    try:
        envelope = parse_envelope(body)
    except DynasoarError:  # not XML, not SOAP (a service's text/plain error page, MTOM)
        return None
    if not replies.complete(envelope, wsa, action, target):
        return body, envelope.version
    return serialize(envelope.root), envelope.version


async def _read(body: bytes | AsyncIterable[bytes]) -> bytes:
    if isinstance(body, bytes):
        return body
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in body:
            size += len(chunk)
            if size > REPLY_LIMIT:
                raise TransportError(
                    f"the deployed service's reply is larger than {REPLY_LIMIT >> 20} MiB, "
                    "the most the Service Provider holds to complete or forward it"
                )
            chunks.append(chunk)
    finally:
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()
    return b"".join(chunks)


def _tags(response: Response) -> Head:
    """The X-Dynasoar-* fields of a relayed reply, to go with it to its address."""
    return [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in Headers(response.headers).raw
        if name.lower().startswith(_TAG_PREFIX)
    ]
