"""What an operator watches on every actor: ``/metrics`` (the Prometheus text format, from the
actor's own registry), ``/healthz`` (the process answers: liveness) and ``/readyz`` (it is
ready for work; 503 with the reasons while it is not: stopping, draining, or an actor's own
checks, such as an HP whose libvirt connection is gone)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from prometheus_client import (
    CollectorRegistry,
    Info,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder

from dynasoar import __version__
from dynasoar.http import Request, Response

METRICS_PATH = "/metrics"
READY_PATH = "/readyz"
HEALTH_PATH = "/healthz"
#: How long /readyz waits for an actor's own checks.
CHECK_SECONDS = 5.0

# No *_created series next to every counter and histogram: they double what is scraped and
# say only when this process started (process_start_time_seconds says it once).
disable_created_metrics()  # type: ignore[no-untyped-call]


def build_info(registry: CollectorRegistry, role: str) -> None:
    """``dynasoar_build_info{version, role}``, and the process's CPU, memory and descriptors."""
    Info("dynasoar_build", "The dynasoar version of this process", registry=registry).info(
        {"version": __version__, "role": role}
    )
    ProcessCollector(registry=registry)


def metrics_response(registry: CollectorRegistry, request: Request) -> Response:
    """The registry in the format the scraper asked for (Prometheus text, or OpenMetrics)."""
    encode, content_type = choose_encoder(request.headers.get("accept") or "")
    return Response(200, [("Content-Type", content_type)], encode(registry))


Checks = Callable[[], Awaitable[list[str]]]


class Readiness:
    """An actor's readiness: ``starting`` until it has restored its state, ``ready``, then
    ``stopping`` from SIGTERM on (so that a load balancer stops sending before the drain)."""

    def __init__(self, checks: Checks | None = None) -> None:
        self.state = "starting"
        self._checks = checks

    def ready(self) -> None:
        if self.state == "starting":
            self.state = "ready"

    def stopping(self) -> None:
        self.state = "stopping"

    async def response(self) -> Response:
        if self.state != "ready":
            return _text(503, f"not ready: {self.state}")
        if self._checks is not None:
            try:
                reasons = await asyncio.wait_for(self._checks(), CHECK_SECONDS)
            except TimeoutError:
                reasons = [f"its readiness checks took over {CHECK_SECONDS:.0f} s"]
            if reasons:
                return _text(503, "not ready: " + "; ".join(reasons))
        return _text(200, "ready")


def _text(status: int, body: str) -> Response:
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store")]
    return Response(status, headers, (body + "\n").encode())
