"""The Service Provider's routing interceptor, built in one place. Reading this file gives the
whole path of a message to ``/services/NAME``:

    read-head   the envelope up to its Body: SOAP version, header blocks (no DOM of the body)
    resolve     which advertised service: by URL, else wsa:To, else wsa:Action
    addressing  WS-Addressing rules from the service's own WSDL (faults per the spec)
    security    a signed consumer, for services whose manifest requires it (WS-Security)
    preferences the consumer's dyn:PreferredHosts, if it sent any
    accept      when no outcome goes back on the HTTP response (ReplyTo and FaultTo are
                addresses or none): keep the message, answer 202 now, go on in the background
    deploy      the least busy replica, or choose a host by policy, ship, probe, record
                (single-flight)
    relay       forward the bytes over a pooled connection; stream the reply back; a
                stateless message whose deployment vanished goes once more, elsewhere
    reply       where WS-Addressing says: the HTTP response (completed with what the service
                left out), nowhere (none: 202), or an address (kept, sent by the courier)

Each step is an interceptor with a ``phase`` name and ``handle(ctx)``, which returns None when
the step is done or an awaitable when it has to wait (most steps are done at once for most
messages: no coroutine is made for them); what one raises
becomes the SOAP fault the consumer gets, sent where its FaultTo says; each cleans up after
itself (the relay ends its count of messages in flight on every way out). One deadline covers
the whole message; the Service Provider brings it forward when it stops and its grace period is
over (dyn:ShuttingDown). (After Apache CXF's phase chain and Knative's activator handler chain.)
A message accepted with 202 goes on in a task of the chain's, with a deadline of its own; its
row in the reply store records the phase it reached, so that a stop leaves it for the next start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from dynasoar.addresses import OwnAddresses
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
from dynasoar.provider.deliveries import DeliveryStore
from dynasoar.provider.deployer import Deployer
from dynasoar.provider.detach import AcceptAsync
from dynasoar.provider.interceptors import (
    CheckAddressing,
    EnsureDeployment,
    ReadEnvelopeHead,
    ReadPreferences,
    ResolveService,
    VerifyConsumer,
)
from dynasoar.provider.relay import Relay
from dynasoar.provider.replies import ReplyRouter
from dynasoar.provider.reply_policy import ReplyDestinations
from dynasoar.provider.service_provider import ServiceProvider
from dynasoar.provider.usage import Usage
from dynasoar.soap.security import Policy

log = logging.getLogger(__name__)

PHASES = (
    "read-head",
    "resolve",
    "addressing",
    "security",
    "preferences",
    "accept",
    "deploy",
    "relay",
    "reply",
)
#: Where a message accepted with 202 (or one taken up after a restart) goes on from.
AFTER_ACCEPT = PHASES.index("accept") + 1


class Interceptor(Protocol):
    phase: str

    def handle(self, ctx: MessageContext) -> Awaitable[None] | None: ...


#: Called with each message's context and response once routed; returns the response to send.
Observer = Callable[[MessageContext, Response], Response]


class RouteReply:
    """The ``reply`` phase: the relayed reply goes where WS-Addressing says."""

    phase = "reply"

    def __init__(self, router: ReplyRouter) -> None:
        self._router = router

    def handle(self, ctx: MessageContext) -> Awaitable[None] | None:
        response = self._router.reply_now(ctx)
        if response is None:
            return self._reply(ctx)
        ctx.response = response
        return None

    async def _reply(self, ctx: MessageContext) -> None:
        ctx.response = await self._router.reply(ctx)


class Chain:
    def __init__(
        self,
        interceptors: Sequence[Interceptor],
        message_timeout: float,
        router: ReplyRouter,
        store: DeliveryStore,
        deadlines: Deadlines | None = None,
        observe: Observer | None = None,
    ) -> None:
        phases = tuple(i.phase for i in interceptors)
        if phases != PHASES:
            raise ValueError(f"interceptors out of phase order: {phases}")
        self.interceptors = tuple(interceptors)
        self.message_timeout = message_timeout
        self._router = router
        self._store = store
        self._deadlines = deadlines or Deadlines()
        #: Sees every message's context and response last (the access line, metrics).
        self.observe = observe
        #: Messages accepted with 202, going on in the background.
        self._detached: set[asyncio.Task[None]] = set()

    async def __call__(self, request: Request, base_url: str) -> Response:
        ctx = MessageContext(request, base_url, deadline=time.monotonic() + self.message_timeout)
        response = await self._run(ctx, self.interceptors)
        return response if self.observe is None else self.observe(ctx, response)

    async def run_accepted(self, ctx: MessageContext) -> None:
        """Go on with a message accepted before a restart, from its deploy phase."""
        ctx.deadline = time.monotonic() + self.message_timeout
        await self._run(ctx, self.interceptors[AFTER_ACCEPT:])

    def fail(self, ctx: MessageContext, error: DynasoarError) -> None:
        """End a message accepted before a restart with ``error``, sent where it must go."""
        self._router.fault(ctx, error)

    async def close(self) -> None:
        """Stop what goes on in the background; the reply store keeps it for the next start."""
        for task in list(self._detached):
            task.cancel()
        if self._detached:
            await asyncio.wait(self._detached, timeout=5.0)

    async def _run(self, ctx: MessageContext, interceptors: Sequence[Interceptor]) -> Response:
        phase = interceptors[0].phase if interceptors else PHASES[-1]
        # A message answered on its HTTP response is cut short when the SP stops (its grace
        # over); one accepted with 202 is not: a stop leaves it in the store, for the next start.
        scope = None if ctx.detached else self._deadlines.scope(self.message_timeout)
        try:
            async with scope if scope is not None else asyncio.timeout(self.message_timeout):
                for index, interceptor in enumerate(interceptors):
                    phase = interceptor.phase
                    if ctx.detached and ctx.job is not None:
                        self._store.reached(ctx.job, phase)
                    waiting = interceptor.handle(ctx)
                    if waiting is not None:
                        await waiting
                    if phase == "accept" and ctx.detached:
                        self._detach(ctx, interceptors[index + 1 :])  # the 202 goes out now
                        break
        except TimeoutError:
            if scope is not None and scope.reason is not None:
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
            log.exception("routing %s failed in phase %s", ctx.request.path, phase)
            return self._fault(ctx, ReceiverError("internal error in the Service Provider"))
        assert ctx.response is not None
        return ctx.response

    def _detach(self, ctx: MessageContext, rest: Sequence[Interceptor]) -> None:
        ctx.deadline = time.monotonic() + self.message_timeout
        task = asyncio.create_task(self._background(ctx, rest))
        self._detached.add(task)
        task.add_done_callback(self._detached.discard)

    async def _background(self, ctx: MessageContext, rest: Sequence[Interceptor]) -> None:
        try:
            await self._run(ctx, rest)
        except Exception:  # the 202 has gone: nobody else would hear of it
            log.exception("an accepted message for %s failed", ctx.request.path)

    def _fault(self, ctx: MessageContext, error: DynasoarError) -> Response:
        ctx.fault = error
        return self._router.fault(ctx, error)


def build_chain(
    provider: ServiceProvider,
    deployer: Deployer,
    pool: ConnectionPool,
    consumers: Policy,
    deadlines: Deadlines,
    *,
    message_timeout: float,
    call_timeout: float,
    usage: Usage,
    own: OwnAddresses,
    destinations: ReplyDestinations,
    store: DeliveryStore,
    router: ReplyRouter,
    observe: Observer | None = None,
) -> tuple[Chain, Relay]:
    relay = Relay(pool, deployer, deployer.load, deadlines, call_timeout, usage)
    chain = Chain(
        [
            ReadEnvelopeHead(),
            ResolveService(provider),
            CheckAddressing(own, destinations),
            VerifyConsumer(consumers),
            ReadPreferences(),
            AcceptAsync(store),
            EnsureDeployment(deployer),
            relay,
            RouteReply(router),
        ],
        message_timeout,
        router,
        store,
        deadlines,
        observe,
    )
    return chain, relay
