"""The relay benchmark's floor: a bare HTTP forwarder built from the same parts as the SP (our
HTTP server, our pooled keep-alive client, the same event loop), doing none of the SP's work
per message (no envelope read, no addressing rules, no deployment, no access line). It shows
how much of the SP's CPU per message is the transport itself and how much is the SP.

``python -m dynasoar.bench.passthrough UPSTREAM_URL`` prints ``listening on URL``; every POST
it gets goes to UPSTREAM_URL as it came, and its reply comes back as it went. A benchmark
baseline, never a relay for anything else."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

from dynasoar.http import (
    ConnectionPool,
    Headers,
    HttpServer,
    Request,
    Response,
    new_event_loop,
)

#: Sent on unchanged; the rest (framing, hop-by-hop) is the HTTP layer's business.
FORWARDED = (b"content-type", b"soapaction")


async def _serve(upstream: str) -> None:
    pool = ConnectionPool(max_idle_per_origin=64)

    async def handle(request: Request) -> Response:
        headers = Headers.from_raw([f for f in request.headers.raw if f[0].lower() in FORWARDED])
        body = await request.body.read_all(1 << 20)
        reply = await pool.request(upstream, "POST", headers=headers, body=body, timeout=30.0)
        data = await reply.read_all(1 << 20)
        return Response(reply.status, reply.headers, data)

    server = HttpServer(handle)
    host, port = await server.start("127.0.0.1", 0)
    listening(host, port)
    await asyncio.Event().wait()


def run_floor(module: str, serve: Callable[[str], Awaitable[None]]) -> None:
    """A floor's main: ``python -m MODULE UPSTREAM_URL`` serves until killed."""
    if len(sys.argv) != 2:
        sys.exit(f"usage: python -m {module} UPSTREAM_URL")
    loop = new_event_loop()
    try:
        loop.run_until_complete(serve(sys.argv[1]))
    except KeyboardInterrupt:
        pass
    finally:
        loop.close()


def listening(host: str, port: int) -> None:
    """Says where the floor listens (the bench reads this line), then serves on."""
    sys.stdout.write(f"listening on http://{host}:{port}/\n")
    sys.stdout.flush()


def main() -> None:
    run_floor("dynasoar.bench.passthrough", _serve)


if __name__ == "__main__":
    main()
