"""Per control message at a management port (the SP's ``/dynasoar/ServiceProvider``, the HP's
``/dynasoar/HostProvider``): one access line and its metrics, taken around the port's handler
from the request's head and the reply (control messages are few: reading the reply costs
nothing that matters). A line::

    id=urn:uuid:… op=Deploy soap=1.2 status=200 fault=- in=73210 out=1650 ms=812.004
    client=127.0.0.1

``id`` is the request's wsa:MessageID as the reply relates to it; ``op`` the operation the
action names (``-`` when it named none of the port's); ``fault`` the fault's code. Routine
operations that answer fine (heartbeats: the SP's RegisterHost and the Status it asks each
host in turn) are written at debug level (``-v``), lest they drown the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Histogram

from dynasoar.errors import DynasoarError
from dynasoar.http import Request, Response
from dynasoar.logsetup import ACCESS_LOGGER, access, logfmt
from dynasoar.soap import addressing
from dynasoar.soap.addressing_rules import soap_action_of
from dynasoar.soap.envelope import parse_envelope
from dynasoar.soap.faults import read_fault
from dynasoar.wsdl import ServiceContract

log = logging.getLogger(ACCESS_LOGGER)
#: Receiver faults that are no failure of the port's: it is full, or stopping.
EXPECTED = frozenset({"Busy", "ShuttingDown"})


class ControlLine:
    __slots__ = (
        "client",
        "fault",
        "message_id",
        "ms",
        "operation",
        "received",
        "sent",
        "soap",
        "status",
    )

    def __init__(
        self,
        message_id: str | None,
        operation: str,
        soap: str | None,
        status: int,
        fault: str | None,
        received: int | None,
        sent: int,
        ms: float,
        client: str | None,
    ) -> None:
        self.message_id = message_id
        self.operation = operation
        self.soap = soap
        self.status = status
        self.fault = fault
        self.received = received
        self.sent = sent
        self.ms = ms
        self.client = client

    def __str__(self) -> str:
        return (
            f"id={logfmt(self.message_id)} op={self.operation} soap={logfmt(self.soap)} "
            f"status={self.status} fault={self.fault or '-'} in={logfmt(self.received)} "
            f"out={self.sent} ms={self.ms:.3f} client={self.client or '-'}"
        )

    def fields(self) -> dict[str, object]:
        return {
            "id": self.message_id,
            "op": self.operation,
            "soap": self.soap,
            "status": self.status,
            "fault": self.fault,
            "in": self.received,
            "out": self.sent,
            "ms": round(self.ms, 3),
            "client": self.client,
        }


class PortLog:
    """Wraps a management port's handler: ``await port_log(port.handle, request)``."""

    def __init__(
        self,
        contract: ServiceContract,
        messages: Counter,
        seconds: Histogram,
        routine: frozenset[str] = frozenset(),
    ) -> None:
        #: Operations that come every few seconds (heartbeats): their lines are debug lines.
        self._routine = routine
        self._by_action = {action: op.name for action, op in contract.operations.items()}
        self._by_reply = {
            op.output_action: op.name for op in contract.operations.values() if op.output_action
        }
        self._messages = messages
        self._seconds = seconds

    async def __call__(
        self, handle: Callable[[Request], Awaitable[Response]], request: Request
    ) -> Response:
        started = time.monotonic()
        response = await handle(request)
        seconds = time.monotonic() - started
        headers = request.headers
        action = soap_action_of(headers.get("content-type"), headers.get("soapaction"))
        operation = self._by_action.get(action or "")
        message_id: str | None = None
        soap: str | None = None
        fault: str | None = None
        ours = False  # a Receiver fault: the port itself failed
        body = response.body
        if isinstance(body, bytes):
            try:
                envelope = parse_envelope(body)
            except DynasoarError:
                envelope = None
            if envelope is not None and envelope.body is not None:
                soap = envelope.version.value
                wsa = addressing.read_headers(envelope.header_blocks)
                message_id = next((rel for rel, _ in wsa.relates_to), None)
                if operation is None and wsa.action:
                    operation = self._by_reply.get(wsa.action)
                info = read_fault(envelope.body, envelope.version)
                if info is not None:
                    fault = (info.subcodes or [info.code])[-1][1]
                    ours = info.code[1] in ("Receiver", "Server") and fault not in EXPECTED
        name = operation or "-"
        self._messages.labels(name, fault or "ok").inc()
        self._seconds.labels(name).observe(seconds)
        received = request.body.content_length
        line = ControlLine(
            message_id,
            name,
            soap,
            response.status,
            fault,
            received if received is not None else request.body.received,
            len(body) if isinstance(body, bytes) else 0,
            seconds * 1000,
            request.client[0] if request.client else None,
        )
        level = logging.DEBUG if name in self._routine and fault is None else logging.INFO
        access(log, line, logging.WARNING if ours else level)
        return response
