"""Running an actor as a server process: the event loop, the HTTP server, the one
``dynasoar X listening on URL`` line on stdout, and a clean stop on SIGTERM / SIGINT."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable

from dynasoar.http import Handler, HttpServer, Response, ServerLimits

log = logging.getLogger(__name__)


def base_url_of(host_header: str | None, fallback: str) -> str:
    """The server's URL as the client addressed it (for addresses written into WSDLs)."""
    if host_header and all(c not in host_header for c in "/\\@ \t"):
        return f"{fallback.partition('://')[0]}://{host_header}"
    return fallback


def wants_wsdl(query: str) -> bool:
    """``?wsdl`` (any case, with or without ``=``), as every SOAP stack asks for a contract."""
    return query.lower().split("=", 1)[0] == "wsdl"


def text(status: int, body: str) -> Response:
    return Response(status, [("Content-Type", "text/plain; charset=utf-8")], body.encode())


async def serve(
    role: str,
    host: str,
    port: int,
    make_handler: Callable[[str], Awaitable[Handler]],
    on_stop: Callable[[], Awaitable[None]],
    limits: ServerLimits | None = None,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Start, announce, serve until a stop signal, then stop in order: listener, hooks."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    handler_box: list[Handler] = []

    async def dispatch(request):  # type: ignore[no-untyped-def]
        return await handler_box[0](request)

    server = HttpServer(dispatch, limits=limits or ServerLimits())
    bound_host, bound_port = await server.start(host, port, ssl=tls)
    url = f"{'https' if tls is not None else 'http'}://{bound_host}:{bound_port}"
    try:
        handler_box.append(await make_handler(url))
    except BaseException:
        await server.close(grace=0.5)
        raise
    # Everything loaded so far (spyne, zeep, lxml, contracts) lives as long as the process:
    # keep it out of the cyclic collector, whose full passes would otherwise walk it again
    # and again as messages allocate (the per-message cost triples without this).
    gc.collect()
    gc.freeze()
    sys.stdout.write(f"dynasoar {role} listening on {url}\n")
    sys.stdout.flush()
    await stop.wait()
    log.info("%s stopping", role)
    await server.close(grace=5.0)
    await on_stop()
