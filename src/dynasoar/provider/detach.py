"""Accepting a message at once, with ``202 Accepted``, when no outcome of it goes back on the
HTTP response (WS-Addressing 1.0 SOAP Binding §5.2): its ReplyTo and FaultTo are addresses or
none, or it is one-way and its faults go elsewhere. The message is kept in the reply store
before the 202 goes out, and the chain runs the rest of its phases (deploy, relay, reply) in
the background; the reply, or the fault, is then sent to its address by the courier. This is
what a consumer wants for a cold VM deploy: no HTTP connection held through a boot.

After a restart, :func:`resume` takes up the messages accepted and not finished: from their
deploy phase again, unless one had already gone to a stateful service (it may have run
there): that one's answer is the fault dyn:Interrupted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from dynasoar.errors import DestinationUnreachable, DynasoarError, Interrupted
from dynasoar.http import BodyReader, Headers, Request, Response
from dynasoar.provider.catalog import Advertised
from dynasoar.provider.context import MessageContext
from dynasoar.provider.deliveries import DeliveryStore, Job
from dynasoar.provider.interceptors import service_path
from dynasoar.provider.service_provider import ServiceProvider
from dynasoar.soap import addressing, replies
from dynasoar.soap.addressing_rules import soap_action_of
from dynasoar.soap.envelope import parse_envelope
from dynasoar.soap.replies import Destination

log = logging.getLogger(__name__)

#: The largest message accepted for an asynchronous reply (the store keeps it whole).
MAX_MESSAGE = 16 << 20
#: Messages taken up again at once after a restart.
RESUME_PARALLEL = 8
#: The phases from which a restart runs an accepted message again without asking.
BEFORE_THE_SERVICE = ("accept", "deploy")


def answered_elsewhere(service: Advertised, wsa: addressing.AddressingHeaders) -> bool:
    """No outcome of this message goes back on the HTTP response."""
    if replies.select(wsa, fault=True).kind is Destination.ANONYMOUS:
        return False
    if not service.contract.expects_reply(wsa.action or ""):
        return True  # one-way: the only outcome it may have is a fault
    return replies.select(wsa, fault=False).kind is not Destination.ANONYMOUS


class AcceptAsync:
    """The chain's ``accept`` phase: keep the message and answer 202 now, when nobody waits
    on the HTTP response for its outcome."""

    phase = "accept"

    def __init__(self, store: DeliveryStore, max_message: int = MAX_MESSAGE) -> None:
        self._store = store
        self._max_message = max_message

    def handle(self, ctx: MessageContext) -> Awaitable[None] | None:
        wsa = ctx.addressing
        if wsa is None or not wsa.present or ctx.service is None:
            return None
        if wsa.reply_to is None and wsa.fault_to is None:
            return None  # both default to anonymous: the outcome goes back on the HTTP response
        if not answered_elsewhere(ctx.service, wsa):
            return None
        return self._accept(ctx, wsa)

    async def _accept(self, ctx: MessageContext, wsa: addressing.AddressingHeaders) -> None:
        assert ctx.service is not None
        self._store.check_room()
        if not ctx.request.body.at_eof:  # kept whole, so that a restart can send it again
            ctx.prefix += await ctx.request.body.read_all(self._max_message - len(ctx.prefix))
        ctx.job = self._store.accept(
            service=ctx.service.record.name,
            consumer=ctx.consumer,
            preferred=ctx.preferred,
            message_id=wsa.message_id,
            request_head=ctx.request.headers.items(),
            request=ctx.prefix,
        )
        ctx.detached = True
        ctx.response = Response(202)


Continue = Callable[[MessageContext], Awaitable[None]]
Fail = Callable[[MessageContext, DynasoarError], None]


async def resume(
    store: DeliveryStore,
    provider: ServiceProvider,
    base_url: str,
    message_timeout: float,
    run_rest: Continue,
    fail: Fail,
) -> int:
    """Take up the messages accepted before a restart, a few at a time; returns how many."""
    job_ids = store.job_ids()
    slots = asyncio.Semaphore(RESUME_PARALLEL)

    async def take_up(job_id: str) -> None:
        async with slots:
            job = store.job(job_id)
            if job is not None:
                await _take_up(job, store, provider, base_url, message_timeout, run_rest, fail)

    await asyncio.gather(*(take_up(job_id) for job_id in job_ids))
    return len(job_ids)


async def _take_up(
    job: Job,
    store: DeliveryStore,
    provider: ServiceProvider,
    base_url: str,
    message_timeout: float,
    run_rest: Continue,
    fail: Fail,
) -> None:
    try:
        ctx = _context(job, provider, base_url, message_timeout)
    except DynasoarError as exc:
        log.error("accepted message %s cannot be taken up again: %s", job.id, exc.reason)
        store.discard(job.id)
        return
    if ctx.service is None:
        fail(ctx, DestinationUnreachable(f"{job.service} is no longer advertised here"))
    elif job.phase not in BEFORE_THE_SERVICE and not ctx.service.record.stateless:
        fail(
            ctx,
            Interrupted(
                f"the Service Provider restarted while this message was with {job.service}, "
                "a stateful service; it was not sent again, since it may have run there: "
                "send it again if it did not"
            ),
        )
    else:
        log.info("taking up accepted message %s for %s again", job.id, job.service)
        await run_rest(ctx)


def _context(
    job: Job, provider: ServiceProvider, base_url: str, message_timeout: float
) -> MessageContext:
    headers = Headers(job.request_head)
    path = service_path(job.service)
    request = Request(
        method="POST",
        target=path,
        path=path,
        query="",
        headers=headers,
        body=BodyReader.from_bytes(b""),
        client=None,
        http_version="1.1",
    )
    envelope = parse_envelope(job.request)
    ctx = MessageContext(request, base_url, deadline=time.monotonic() + message_timeout)
    ctx.prefix = job.request
    ctx.envelope = envelope
    ctx.version = envelope.version
    ctx.addressing = addressing.read_headers(envelope.header_blocks)
    ctx.soap_action = soap_action_of(headers.get("content-type"), headers.get("soapaction"))
    ctx.service = provider.advertised(job.service)
    ctx.consumer = job.consumer
    ctx.preferred = job.preferred
    ctx.job = job.id
    ctx.detached = True
    return ctx
