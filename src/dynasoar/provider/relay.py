"""The relay: forwards the consumer's bytes unchanged to the deployment over a pooled keep-alive
connection and streams the reply back, adding the X-Dynasoar-* headers. It never parses bodies
(the envelope head was read before, and is sent first)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator

from dynasoar.errors import DynasoarError, HostLost, TransportError
from dynasoar.http import BodyReader, ClientResponse, ConnectionPool, Response
from dynasoar.provider.context import MessageContext
from dynasoar.provider.deployer import Deployer

log = logging.getLogger(__name__)

#: Not forwarded: hop-by-hop headers (RFC 9110 §7.6.1) and those the next hop sets itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
        "expect",
        "proxy-authorization",
        "proxy-authenticate",
    }
)
REPLY_DROPPED = HOP_BY_HOP | {"date", "server"}


class Relay:
    phase = "relay"

    def __init__(self, pool: ConnectionPool, deployer: Deployer) -> None:
        self._pool = pool
        self._deployer = deployer
        #: Requests in flight per deployment (the basis for spreading over replicas).
        self.outstanding: Counter[str] = Counter()

    async def handle(self, ctx: MessageContext) -> None:
        deployment = ctx.deployment
        assert deployment is not None
        request = ctx.request
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        body: bytes | AsyncIterator[bytes]
        if request.body.at_eof:
            body = ctx.prefix
        else:
            body = _body_stream(ctx.prefix, request.body)
            if request.body.content_length is not None:
                headers.append(("Content-Length", str(request.body.content_length)))
        self.outstanding[deployment.id] += 1
        try:
            upstream = await self._pool.request(
                deployment.endpoint, "POST", headers=headers, body=body, timeout=ctx.remaining
            )
        except TransportError as exc:
            self._done(deployment.id)
            raise await self._lost(ctx, exc) from exc
        reply_headers = [
            (k, v) for k, v in upstream.headers.items() if k.lower() not in REPLY_DROPPED
        ]
        reply_body: bytes | AsyncIterator[bytes]
        if upstream.body.complete:
            reply_body = await upstream.read_all(upstream.body.buffered)
            self._done(deployment.id)
        else:
            reply_body = self._reply_stream(upstream, deployment.id)
            if upstream.body.content_length is not None:
                reply_headers.append(("Content-Length", str(upstream.body.content_length)))
        reply_headers += [
            ("X-Dynasoar-Host", deployment.host),
            ("X-Dynasoar-Deployment", deployment.id),
            ("X-Dynasoar-Cold", "1" if ctx.cold else "0"),
        ]
        ctx.response = Response(upstream.status, reply_headers, reply_body)

    async def _reply_stream(
        self, upstream: ClientResponse, deployment_id: str
    ) -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.body:
                yield chunk
        finally:
            self._done(deployment_id)
            await upstream.aclose()

    def _done(self, deployment_id: str) -> None:
        self.outstanding[deployment_id] -= 1
        if self.outstanding[deployment_id] <= 0:
            del self.outstanding[deployment_id]

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
            await self._deployer.forget(deployment)
            return HostLost(
                f"the deployment of {deployment.service} on {deployment.host} stopped answering "
                f"({exc.reason}); the next message deploys it again"
            )
        return exc


async def _body_stream(prefix: bytes, rest: BodyReader) -> AsyncIterator[bytes]:
    if prefix:
        yield prefix
    async for chunk in rest:
        yield chunk
