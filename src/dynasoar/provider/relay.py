"""The relay: forwards the consumer's bytes unchanged to the deployment over a pooled keep-alive
connection and streams the reply back, adding the X-Dynasoar-* headers. It never parses bodies
(the envelope head was read before, and is sent first).

Waiting for a reply is bounded by the service's call deadline (``[service] call_timeout``, else
the SP's), over all attempts of one message; and it ends at once when the deployment's host is
marked down meanwhile: a stateless message is then sent once more elsewhere, a stateful one
is answered dyn:HostLost."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from dynasoar.deadlines import Deadlines
from dynasoar.errors import (
    CallTimeout,
    DynasoarError,
    EndpointUnavailable,
    HostLost,
    ShuttingDown,
    TransportError,
)
from dynasoar.http import BodyReader, ClientResponse, ConnectionPool, Headers, Response
from dynasoar.provider.context import MessageContext
from dynasoar.provider.deployer import Deployer
from dynasoar.provider.load import LoadTracker
from dynasoar.provider.registry import DeploymentRecord
from dynasoar.provider.usage import Usage

log = logging.getLogger(__name__)

#: Not forwarded: what the next hop sets itself or must not see. Framing and hop-by-hop fields
#: (RFC 9110 §7.6.1) are dropped by the HTTP layer itself, except a streamed body's length.
#: Replies up to this size are read whole before they are sent on (one write, no stream).
SMALL_REPLY = 64 * 1024
NOT_FORWARDED = frozenset({b"host", b"expect", b"proxy-authorization", b"proxy-authenticate"})


class HostDown(Exception):
    """The call's host was marked down while the call waited for it."""


class Relay:
    phase = "relay"

    def __init__(
        self,
        pool: ConnectionPool,
        deployer: Deployer,
        load: LoadTracker,
        calls: Deadlines,
        call_timeout: float,
        usage: Usage,
    ) -> None:
        self._usage = usage
        self._pool = pool
        self._deployer = deployer
        self._load = load
        self._calls = calls
        self._call_timeout = call_timeout
        self._tags: dict[tuple[str, bool], list[tuple[bytes, bytes]]] = {}

    async def handle(self, ctx: MessageContext) -> None:
        request = ctx.request
        record = ctx.record
        assert record is not None
        # Header fields travel as the bytes they arrived as: no decoding on the hot path.
        headers = Headers.from_raw(
            [f for f in request.headers.raw if f[0].lower() not in NOT_FORWARDED]
        )
        # A message that has fully arrived can be sent again if its deployment vanishes.
        replayable = request.body.at_eof
        call_deadline = time.monotonic() + (record.call_timeout or self._call_timeout)
        while True:
            deployment = ctx.deployment
            assert deployment is not None
            gate = self._deployer.gates.get(deployment.id)
            if gate is not None and not gate.stayed:  # moving, or moved: wait, go where it went
                ctx.deployment = await gate.passage(ctx.remaining)
                continue
            # No await from here to load.begin: a move waits for what was counted.
            body = ctx.prefix if replayable else _body_stream(ctx.prefix, request.body)
            seconds = min(call_deadline - time.monotonic(), ctx.remaining)
            self._load.begin(deployment.id)
            try:
                upstream, reply_body = await self._exchange(ctx, deployment, headers, body, seconds)
                break
            except HostDown as exc:
                error: DynasoarError = HostLost(
                    f"the deployment of {deployment.service} on {deployment.host} was lost "
                    f"while this message waited for it ({exc})"
                )
            except TransportError as exc:
                error = await self._lost(ctx, exc)
            if not (
                isinstance(error, HostLost) and replayable and not ctx.retried and record.stateless
            ):
                raise _for_consumer(ctx, error)
            # Stateless, and nothing of a reply has gone to the consumer yet: once more,
            # on another deployment.
            ctx.retried = True
            ctx.deployment, ctx.cold = await self._deployer.ensure(
                record, ctx.remaining, ctx.preferred
            )
        reply_headers = Headers.from_raw([*upstream.headers.raw, *self._tag(deployment, ctx.cold)])
        ctx.response = Response(upstream.status, reply_headers, reply_body)

    async def _exchange(
        self,
        ctx: MessageContext,
        deployment: DeploymentRecord,
        headers: Headers,
        body: bytes | AsyncIterator[bytes],
        seconds: float,
    ) -> tuple[ClientResponse, bytes | AsyncIterator[bytes]]:
        """Send the message; a small reply is read whole (sent on in one piece), a large or
        open-ended one is streamed. Every way out ends the deployment's count but a stream,
        which ends it when done."""
        scope = self._calls.scope(seconds, deployment.host)
        try:
            async with scope:
                # The pool's own bound is a backstop: the scope ends the wait first.
                upstream = await self._pool.request(
                    deployment.endpoint, "POST", headers=headers, body=body, timeout=seconds + 1
                )
                length = upstream.body.content_length
                if upstream.body.complete or (length is not None and length <= SMALL_REPLY):
                    reply = await upstream.read_all(SMALL_REPLY)
                    self._load.end(deployment.id)
                    self._counted(ctx, deployment, len(reply))
                    return upstream, reply
        except TimeoutError:
            self._load.end(deployment.id)
            raise self._late(ctx, deployment, scope.reason, seconds) from None
        except BaseException:
            self._load.end(deployment.id)
            raise
        return upstream, self._reply_stream(ctx, upstream, deployment)

    def _late(
        self, ctx: MessageContext, deployment: DeploymentRecord, reason: str | None, seconds: float
    ) -> Exception:
        """Why a call stopped waiting: its own deadline, its host marked down, or the SP
        stopping."""
        if reason is None:
            self._deployer.check_later(deployment)
            return CallTimeout(
                f"{deployment.service} did not answer within {max(seconds, 0):.1f} s (its call "
                "deadline, [service] call_timeout); the message may or may not have been processed"
            )
        if self._calls.closed is not None:
            return ShuttingDown(f"{reason} before {deployment.service} answered; send it again")
        return HostDown(reason)

    def _tag(self, deployment: DeploymentRecord, cold: bool) -> list[tuple[bytes, bytes]]:
        """The X-Dynasoar-* fields of a reply from ``deployment`` (made once per deployment)."""
        key = (deployment.id, cold)
        fields = self._tags.get(key)
        if fields is None:
            if len(self._tags) > 4096:
                self._tags.clear()
            fields = [
                (b"X-Dynasoar-Host", deployment.host.encode("latin-1")),
                (b"X-Dynasoar-Deployment", deployment.id.encode("latin-1")),
                (b"X-Dynasoar-Cold", b"1" if cold else b"0"),
                (b"X-Dynasoar-Version", deployment.version.encode("utf-8")),
            ]
            self._tags[key] = fields
        return fields

    async def _reply_stream(
        self, ctx: MessageContext, upstream: ClientResponse, deployment: DeploymentRecord
    ) -> AsyncIterator[bytes]:
        sent = 0
        try:
            async for chunk in upstream.body:
                sent += len(chunk)
                yield chunk
        finally:
            self._load.end(deployment.id)
            self._counted(ctx, deployment, sent)
            await upstream.aclose()

    def _counted(self, ctx: MessageContext, deployment: DeploymentRecord, bytes_out: int) -> None:
        """The message was answered: into the usage book."""
        self._usage.message(
            ctx.billed_to,
            deployment,
            ctx.request.body.received,
            bytes_out,
            time.monotonic() - ctx.started,
            ctx.cold,
        )

    async def _lost(self, ctx: MessageContext, exc: TransportError) -> DynasoarError:
        """The deployment did not answer: if its endpoint is gone, forget it (the next message
        deploys again) and say so; a slow answer is only a timeout."""
        deployment = ctx.deployment
        assert deployment is not None and ctx.service is not None
        try:
            await self._deployer.probe(deployment.endpoint, timeout=2.0)
        except DynasoarError:
            log.warning(
                "deployment %s of %s on %s is gone: %s",
                deployment.id,
                deployment.service,
                deployment.host,
                exc.reason,
            )
            self._deployer.lose(deployment, f"it stopped answering: {exc.reason}")
            await self._deployer.check_host(deployment.host)
            return HostLost(
                f"the deployment of {deployment.service} on {deployment.host} stopped answering "
                f"({exc.reason})"
            )
        return exc


def _for_consumer(ctx: MessageContext, error: DynasoarError) -> DynasoarError:
    """A lost deployment, told the consumer's way. A stateless service is deployed again by the
    next message: WS-Addressing's EndpointUnavailable (with RetryAfter) says so when the message
    used addressing. A stateful one is lost, and says dyn:HostLost whatever the message."""
    assert ctx.record is not None
    if (
        isinstance(error, HostLost)
        and ctx.record.stateless
        and ctx.addressing is not None
        and ctx.addressing.present
    ):
        return EndpointUnavailable(
            f"dyn:HostLost: {error.reason}; the next message deploys it again",
            retry_after_ms=1000,
        )
    return error


async def _body_stream(prefix: bytes, rest: BodyReader) -> AsyncIterator[bytes]:
    if prefix:
        yield prefix
    async for chunk in rest:
        yield chunk
