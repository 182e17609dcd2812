"""A management port's processing, built in one place. Reading this file gives the whole path
of a message to ``/dynasoar/ServiceProvider`` or ``/dynasoar/HostProvider``:

    admit           a slot among the port's concurrent calls (else dyn:Busy)
    read            the bytes: a plain envelope, or MTOM with its attachments spooled
    parse           the envelope, its SOAP version, its WS-Addressing headers
    must-understand mandatory header blocks nothing here processes (env:MustUnderstand)
    security        a signature by a trusted peer, where the port requires one
    addressing      every WS-Addressing rule: required, well formed, wsa:To names this actor,
                    a known Action, a MessageID for a reply, replies anonymous or none
    operation       the operation the Action names, and a Body holding its input
    invoke          the operation, on a worker thread
    undo-if-gone    what the operation registered to undo, if the requester has left
    reply           the reply headers (RelatesTo, Action, reference parameters); none: 202
    sign            the reply signed, last

A phase that raises ends the call with the fault, sent where WS-Addressing says (the FaultTo's
none: an empty 202) and signed; ``close`` runs for every phase that ran, however it ended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Protocol

from dynasoar import ns
from dynasoar.errors import WSSE, DynasoarError
from dynasoar.http import Request, Response
from dynasoar.service.port_phases import (
    AddressReply,
    Admit,
    CheckAddressing,
    CheckMustUnderstand,
    Invoke,
    ParseEnvelope,
    PortCall,
    ReadMessage,
    SelectOperation,
    SignReply,
    UndoIfGone,
    VerifySignature,
    version_hint,
)
from dynasoar.service.spyne_port import SpynePort
from dynasoar.soap import replies
from dynasoar.soap.addressing_rules import EndpointRules
from dynasoar.soap.faults import fault_reply
from dynasoar.soap.mtom import MtomLimits
from dynasoar.soap.security import Policy
from dynasoar.wsdl import ServiceContract

log = logging.getLogger(__name__)

PHASES = (
    "admit",
    "read",
    "parse",
    "must-understand",
    "security",
    "addressing",
    "operation",
    "invoke",
    "undo-if-gone",
    "reply",
    "sign",
)


class Phase(Protocol):
    phase: str

    async def handle(self, call: PortCall) -> None: ...


class PortChain:
    def __init__(
        self, phases: Sequence[Phase], path: str, security: Policy, sender_status: int
    ) -> None:
        names = tuple(p.phase for p in phases)
        if names != PHASES:
            raise ValueError(f"port phases out of order: {names}")
        self.phases = tuple(phases)
        self._path = path
        self._security = security
        self._sender_status = sender_status

    async def __call__(self, request: Request) -> Response:
        call = PortCall(request, version_hint(request))
        ran: list[Phase] = []
        try:
            for phase in self.phases:
                ran.append(phase)
                await phase.handle(call)
        except DynasoarError as exc:
            return self._fault(call, exc)
        finally:
            for phase in reversed(ran):
                close = getattr(phase, "close", None)
                if close is not None:
                    close(call)
        assert call.response is not None
        return call.response

    def _fault(self, call: PortCall, error: DynasoarError) -> Response:
        if not error.sender:
            log.warning("%s %s: %s", self._path, type(error).__name__, error.reason)
        target = replies.fault_target(call.addressing, error)
        if target.kind is replies.Destination.NONE:
            return Response(202)  # the FaultTo (or ReplyTo) is none: the fault is discarded
        if target.kind is replies.Destination.ADDRESS:
            # These ports answer on the HTTP response only (a ReplyTo elsewhere is refused by
            # the addressing phase; a fault raised before it still comes back here).
            target = replies.ANONYMOUS
        status, content_type, body = fault_reply(
            error, call.version, call.addressing, sender_status=self._sender_status, target=target
        )
        return Response(
            status, [("Content-Type", content_type)], self._security.sign_envelope(body)
        )


def build_port_chain(
    *,
    path: str,
    contract: ServiceContract,
    rules: EndpointRules,
    port: SpynePort,
    executor: Executor,
    state: Callable[[], dict[str, Any]],
    spool_dir: Path,
    max_envelope_bytes: int,
    mtom_limits: MtomLimits,
    security: Policy,
    max_concurrent_calls: int,
    sender_status: int,
) -> PortChain:
    # Addressing is ours; dyn: headers are the ports' own; wsse:Security where we verify it.
    understood = [ns.WSA, ns.WSA_2004, ns.DYN, *([WSSE] if security.verifies else [])]
    return PortChain(
        [
            Admit(path, max_concurrent_calls),
            ReadMessage(spool_dir, max_envelope_bytes, mtom_limits),
            ParseEnvelope(),
            CheckMustUnderstand(understood),
            VerifySignature(security),
            CheckAddressing(rules),
            SelectOperation(contract),
            Invoke(port, executor, spool_dir, state),
            UndoIfGone(executor),
            AddressReply(),
            SignReply(security),
        ],
        path,
        security,
        sender_status,
    )
