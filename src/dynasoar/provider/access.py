"""Per message at the Service Provider, once it is answered: one access line, its metrics, and
(for a fault the SP answered itself) an entry among the status page's recent faults.

Everything comes from what the chain's ``MessageContext`` already holds: no parsing, and the
part of the line that names the deployment is made once per deployment. An access line::

    id=urn:uuid:… service=Echo version=1.0 deployment=3f2a… host=http://10.0.0.7:8081
    soap=1.2 status=200 fault=- in=512 out=498 ms=3.120 cold=0 retried=0 client=127.0.0.1

``id`` is the message's wsa:MessageID, or one made up here (``dyn-…``) for a message without;
``fault`` is the fault code the SP answered with (``-``: none; a relayed reply's status says
whether the service itself answered with a fault); ``ms`` runs until the reply's head is ready
(for a streamed reply, until its last byte was handed on).
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import AsyncIterable, AsyncIterator
from urllib.parse import unquote

from dynasoar.errors import DynasoarError
from dynasoar.http import Response
from dynasoar.logsetup import ACCESS_LOGGER, access, logfmt
from dynasoar.provider.activity import Activity
from dynasoar.provider.context import MessageContext
from dynasoar.provider.interceptors import SERVICES
from dynasoar.provider.metrics import NO_SERVICE, ProviderMetrics

log = logging.getLogger(ACCESS_LOGGER)

#: Deployments whose line part is kept (made again after a clear).
KEPT_PARTS = 4096
#: What an access line says of where a message went: service, version, deployment, host.
Values = tuple[str, str, str | None, str | None]


def fault_code(error: DynasoarError) -> str:
    """The name a fault goes by in logs and metrics: its (SOAP 1.2) subcode, else its kind."""
    return error.subcode[1] if error.subcode else type(error).__name__


class MessageLine:
    """One access line; its text and its fields are only made if the line is written."""

    __slots__ = (
        "client",
        "cold",
        "fault",
        "message_id",
        "ms",
        "part",
        "received",
        "retried",
        "sent",
        "soap",
        "status",
        "values",
    )

    def __init__(
        self,
        message_id: str,
        part: str,
        values: Values,
        soap: str,
        status: int,
        fault: str | None,
        received: int | None,
        sent: int | None,
        ms: float,
        cold: bool,
        retried: bool,
        client: str | None,
    ) -> None:
        self.message_id = message_id
        self.part = part
        self.values = values
        self.soap = soap
        self.status = status
        self.fault = fault
        self.received = received
        self.sent = sent
        self.ms = ms
        self.cold = cold
        self.retried = retried
        self.client = client

    def __str__(self) -> str:
        # Byte counts are ints or None: written as logfmt would, without a call each.
        received = "-" if self.received is None else self.received
        sent = "-" if self.sent is None else self.sent
        return (
            f"id={logfmt(self.message_id)} {self.part} soap={self.soap} status={self.status} "
            f"fault={self.fault or '-'} in={received} out={sent} "
            f"ms={self.ms:.3f} cold={int(self.cold)} retried={int(self.retried)} "
            f"client={self.client or '-'}"
        )

    def fields(self) -> dict[str, object]:
        service, version, deployment, host = self.values
        return {
            "id": self.message_id,
            "service": service,
            "version": version,
            "deployment": deployment,
            "host": host,
            "soap": self.soap,
            "status": self.status,
            "fault": self.fault,
            "in": self.received,
            "out": self.sent,
            "ms": round(self.ms, 3),
            "cold": self.cold,
            "retried": self.retried,
            "client": self.client,
        }


class MessageObserver:
    """The chain's observer (see :mod:`dynasoar.provider.chain`)."""

    def __init__(self, metrics: ProviderMetrics, activity: Activity) -> None:
        self._metrics = metrics
        self._activity = activity
        self._parts: dict[str, tuple[str, Values]] = {}
        self._ids = itertools.count(1)
        self._prefix = f"dyn-{os.urandom(4).hex()}-"

    def __call__(self, ctx: MessageContext, response: Response) -> Response:
        body = response.body
        if isinstance(body, bytes):
            self._done(ctx, response.status, len(body))
            return response
        response.body = self._counted(ctx, response.status, body)
        return response

    async def _counted(
        self, ctx: MessageContext, status: int, body: AsyncIterable[bytes]
    ) -> AsyncIterator[bytes]:
        sent = 0
        try:
            async for chunk in body:
                sent += len(chunk)
                yield chunk
        finally:
            self._done(ctx, status, sent)

    def _done(self, ctx: MessageContext, status: int, sent: int) -> None:
        seconds = time.monotonic() - ctx.started
        request = ctx.request
        received = request.body.content_length
        if received is None:
            received = request.body.received
        fault = ctx.fault
        code = fault_code(fault) if fault is not None else None
        if ctx.service is not None:
            service = ctx.service.record.name
            outcome = code or ("ok" if status < 400 else "service_fault")
        else:
            service = NO_SERVICE
            outcome = code or "ok"
        self._metrics.message(service, outcome, seconds, received, sent, ctx.cold, ctx.retried)
        wsa = ctx.addressing
        message_id = (wsa.message_id if wsa is not None else None) or self._new_id()
        if fault is not None:
            named = service if ctx.service is not None else _named(ctx)
            self._activity.fault(named, code or "", fault.reason, message_id)
        part, values = self._part(ctx)
        line = MessageLine(
            message_id,
            part,
            values,
            ctx.version.value,
            status,
            code,
            received,
            sent,
            seconds * 1000,
            ctx.cold,
            ctx.retried,
            request.client[0] if request.client else None,
        )
        # The SP's own failures (no host, a deployment that failed) are worth a look; a
        # consumer's mistakes and services' own faults are the consumer's business.
        level = logging.WARNING if fault is not None and not fault.sender else logging.INFO
        access(log, line, level)

    def _part(self, ctx: MessageContext) -> tuple[str, Values]:
        deployment = ctx.deployment
        if deployment is not None:
            cached = self._parts.get(deployment.id)
            if cached is None:
                if len(self._parts) >= KEPT_PARTS:
                    self._parts.clear()
                named: Values = (
                    deployment.service,
                    deployment.version,
                    deployment.id,
                    deployment.host,
                )
                cached = self._parts[deployment.id] = (_text(named), named)
            return cached
        values: Values
        if ctx.service is not None:
            values = (ctx.service.record.name, ctx.service.record.version, None, None)
        else:
            values = (_named(ctx), "", None, None)
        return _text(values), values

    def _new_id(self) -> str:
        return f"{self._prefix}{next(self._ids)}"


def _named(ctx: MessageContext) -> str:
    """The service a message's URL names (the consumer's words: escaped when written)."""
    path = ctx.request.path
    return unquote(path[len(SERVICES) :].strip("/")) if path.startswith(SERVICES) else path


def _text(values: Values) -> str:
    service, version, deployment, host = values
    return (
        f"service={logfmt(service or None)} version={logfmt(version or None)} "
        f"deployment={logfmt(deployment)} host={logfmt(host)}"
    )
