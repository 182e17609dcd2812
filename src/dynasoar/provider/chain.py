"""The Service Provider's routing interceptor, built in one place. Reading this file gives the
whole path of a message to ``/services/NAME``:

    read-head   the envelope up to its Body: SOAP version, header blocks (no DOM of the body)
    resolve     which advertised service: by URL, else wsa:To, else wsa:Action
    addressing  WS-Addressing rules from the service's own WSDL (faults per the spec)
    security    a signed consumer, for services whose manifest requires it (WS-Security)
    preferences the consumer's dyn:PreferredHosts, if it sent any
    deploy      the least busy replica, or choose a host by policy, ship, probe, record
                (single-flight)
    relay       forward the bytes over a pooled connection; stream the reply back; a
                stateless message whose deployment vanished goes once more, elsewhere

Once answered, every message is observed (``observe``, built in :mod:`.access`): its access
line and metrics come from what its ``MessageContext`` holds by then.

Each step is an interceptor with a ``phase`` name and ``async handle(ctx)``; what one raises
becomes the SOAP fault the consumer gets; each cleans up after itself (the relay ends its count
of messages in flight on every way out). One deadline covers the whole message; the Service
Provider brings it forward when it stops and its grace period is over (dyn:ShuttingDown).
(After Apache CXF's phase chain and Knative's activator handler chain.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from dynasoar.deadlines import Deadlines
from dynasoar.errors import (
    DeploymentTimeout,
    DynasoarError,
    ReceiverError,
    ShuttingDown,
    TransportError,
)
from dynasoar.http import ConnectionPool, Request, Response
from dynasoar.provider.context import MessageContext
from dynasoar.provider.deployer import Deployer
from dynasoar.provider.interceptors import (
    CheckAddressing,
    EnsureDeployment,
    ReadEnvelopeHead,
    ReadPreferences,
    ResolveService,
    VerifyConsumer,
)
from dynasoar.provider.relay import Relay
from dynasoar.provider.service_provider import ServiceProvider
from dynasoar.soap.faults import fault_reply
from dynasoar.soap.security import Policy

log = logging.getLogger(__name__)

PHASES = ("read-head", "resolve", "addressing", "security", "preferences", "deploy", "relay")


class Interceptor(Protocol):
    phase: str

    async def handle(self, ctx: MessageContext) -> None: ...


#: Called with each message's context and response once routed; returns the response to send.
Observer = Callable[[MessageContext, Response], Response]


class Chain:
    def __init__(
        self,
        interceptors: Sequence[Interceptor],
        message_timeout: float,
        deadlines: Deadlines | None = None,
        observe: Observer | None = None,
    ) -> None:
        phases = tuple(i.phase for i in interceptors)
        if phases != PHASES:
            raise ValueError(f"interceptors out of phase order: {phases}")
        self.interceptors = tuple(interceptors)
        self.message_timeout = message_timeout
        self._deadlines = deadlines or Deadlines()
        #: Sees every message's context and response last (the access line, metrics).
        self.observe = observe

    async def __call__(self, request: Request, base_url: str) -> Response:
        ctx = MessageContext(request, base_url, deadline=time.monotonic() + self.message_timeout)
        response = await self._route(ctx)
        return response if self.observe is None else self.observe(ctx, response)

    async def _route(self, ctx: MessageContext) -> Response:
        request = ctx.request
        phase = PHASES[0]
        scope = self._deadlines.scope(self.message_timeout)
        try:
            async with scope:
                for interceptor in self.interceptors:
                    phase = interceptor.phase
                    await interceptor.handle(ctx)
        except TimeoutError:
            if scope.reason is not None:
                return self._fault(
                    ctx,
                    ShuttingDown(
                        f"{scope.reason} before this message was answered (phase {phase}); "
                        "send it again"
                    ),
                )
            late = f"no reply within {self.message_timeout:.0f} s (phase {phase})"
            error = DeploymentTimeout(late) if phase == "deploy" else TransportError(late)
            return self._fault(ctx, error)
        except DynasoarError as exc:
            return self._fault(ctx, exc)
        except Exception:
            log.exception("routing %s failed in phase %s", request.path, phase)
            return self._fault(ctx, ReceiverError("internal error in the Service Provider"))
        assert ctx.response is not None
        return ctx.response

    def _fault(self, ctx: MessageContext, error: DynasoarError) -> Response:
        ctx.fault = error
        status, content_type, body = fault_reply(error, ctx.version, ctx.addressing)
        return Response(status, [("Content-Type", content_type)], body)


def build_chain(
    provider: ServiceProvider,
    deployer: Deployer,
    pool: ConnectionPool,
    consumers: Policy,
    deadlines: Deadlines,
    *,
    message_timeout: float,
    call_timeout: float,
    observe: Observer | None = None,
) -> tuple[Chain, Relay]:
    relay = Relay(pool, deployer, deployer.load, deadlines, call_timeout)
    chain = Chain(
        [
            ReadEnvelopeHead(),
            ResolveService(provider),
            CheckAddressing(),
            VerifyConsumer(consumers),
            ReadPreferences(),
            EnsureDeployment(deployer),
            relay,
        ],
        message_timeout,
        deadlines,
        observe,
    )
    return chain, relay
