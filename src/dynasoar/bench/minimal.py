"""The relay benchmark's third floor: the hand-rolled forwarder of ``handrolled.py`` (callbacks
only: no task, no future, no object of our HTTP layer) doing the least that every relayed
message asks of a Service Provider, with the SP's own parts:

- the envelope parsed and its WS-Addressing headers read and checked; a message that breaks
  them is answered with its SOAP fault, not forwarded;
- a deadline armed when the message is taken and disarmed when its reply comes (a reply that
  does not come in time closes the connection);
- the message counted in the SP's per-service metrics and written as its access line.

It routes nothing and deploys nothing: one upstream, no usage book, no reply routing. So its
CPU per message is what a relay that reads WS-Addressing costs in Python here, however it is
built. A baseline for ``make bench`` and never a relay for anything else.

``python -m dynasoar.bench.minimal UPSTREAM_URL`` prints ``listening on URL``; access lines go to
standard error."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import cast

from dynasoar.bench.handrolled import Downstream, Pool, serve
from dynasoar.bench.passthrough import run_floor
from dynasoar.errors import DynasoarError
from dynasoar.logsetup import ACCESS_LOGGER, access, configure
from dynasoar.provider.access import MessageLine, fault_code
from dynasoar.provider.load import LoadTracker
from dynasoar.provider.metrics import ProviderMetrics, SpState
from dynasoar.provider.registry import Registry
from dynasoar.soap import addressing
from dynasoar.soap.addressing_rules import EndpointRules, check_request
from dynasoar.soap.envelope import SoapVersion, parse_envelope
from dynasoar.soap.faults import fault_reply

#: The one service behind this floor, as its access lines and metrics name it.
SERVICE = "Echo"
#: The SP's message deadline (its default).
DEADLINE = 150.0
#: Any action, to any address: the SP checks these against the service's WSDL and its own
#: addresses (a look-up each); here only the rules themselves run.
RULES = EndpointRules(
    required=False,
    actions=None,
    expects_reply=lambda action: True,
    is_destination=lambda to: True,
)

log = logging.getLogger(ACCESS_LOGGER)
# Metrics are only counted here, never scraped: the gauges' sources are never read.
metrics = ProviderMetrics(
    SpState(cast(Registry, None), cast(LoadTracker, None), lambda: 1, lambda: (0, 0))
)


class Minimal(Downstream):
    def __init__(self, pool: Pool) -> None:
        super().__init__(pool)
        self._started = 0.0
        self._received = 0
        self._message_id: str | None = None
        self._version = SoapVersion.SOAP11
        self._deadline: asyncio.TimerHandle | None = None

    def _admit(self, body: bytes) -> bytes | None:
        self._started = time.monotonic()
        self._received = len(body)
        wsa = None
        try:
            envelope = parse_envelope(body)
            self._version = envelope.version
            wsa = addressing.read_headers(envelope.header_blocks)
            check_request(wsa, None, RULES)
        except DynasoarError as error:
            status, content_type, fault = fault_reply(error, self._version, wsa)
            self._done(status, len(fault), fault_code(error))
            return b"HTTP/1.1 %d \r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (
                status,
                content_type.encode("latin-1"),
                len(fault),
                fault,
            )
        self._message_id = wsa.message_id
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_at(loop.time() + DEADLINE, self._late)
        return None

    def _answered(self, status: int, sent: int) -> bytes:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._done(status, sent, None)
        return b""

    def _late(self) -> None:
        self._deadline = None
        if self._transport is not None:
            self._transport.close()

    def _done(self, status: int, sent: int, fault: str | None) -> None:
        seconds = time.monotonic() - self._started
        outcome = fault or ("ok" if status < 400 else "service_fault")
        metrics.message(SERVICE, outcome, seconds, self._received, sent)
        line = MessageLine(
            self._message_id or "-",
            f"service={SERVICE} version=1.0 deployment=- host=-",
            (SERVICE, "1.0", None, None),
            self._version.value,
            status,
            fault,
            self._received,
            sent,
            seconds * 1000,
            False,
            False,
            "127.0.0.1",
        )
        access(log, line)


async def _serve(upstream: str) -> None:
    configure(stream=sys.stderr)
    await serve(upstream, Minimal)


def main() -> None:
    run_floor("dynasoar.bench.minimal", _serve)


if __name__ == "__main__":
    main()
