"""The relay bench's floors (our HTTP parts; a hand-rolled forwarder) forward what they get, as
it came, and bring the reply back."""

from __future__ import annotations

import asyncio
import sys

import pytest

from dynasoar.http import ConnectionPool, HttpServer, Request, Response, new_event_loop


async def _forwarded(
    module: str,
) -> tuple[list[tuple[bytes, bytes, bytes]], list[tuple[int, bytes, str]]]:
    seen: list[tuple[bytes, bytes, bytes]] = []

    async def upstream(request: Request) -> Response:
        body = await request.body.read_all(1 << 20)
        seen.append(
            (
                body,
                (request.headers.get("content-type") or "").encode(),
                (request.headers.get("soapaction") or "").encode(),
            )
        )
        return Response(200, [("Content-Type", "text/xml; charset=utf-8")], b"<r>" + body + b"</r>")

    server = HttpServer(upstream)
    host, port = await server.start("127.0.0.1", 0)
    floor = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        f"http://{host}:{port}/service",
        stdout=asyncio.subprocess.PIPE,
    )
    pool = ConnectionPool()
    try:
        assert floor.stdout is not None
        line = (await asyncio.wait_for(floor.stdout.readline(), 30)).decode()
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.split()[-1]
        replies = []
        for text in (b"<a/>", b"<b>" + b"x" * 100_000 + b"</b>"):
            reply = await pool.request(
                url,
                "POST",
                headers=[("Content-Type", "text/xml; charset=utf-8"), ("SOAPAction", '"urn:x"')],
                body=text,
                timeout=10,
            )
            data = await reply.read_all(1 << 20)
            replies.append((reply.status, data, reply.headers.get("content-type") or ""))
        return seen, replies
    finally:
        await pool.close()
        floor.kill()
        await floor.wait()
        await server.close(grace=1.0)


@pytest.mark.parametrize("module", ["dynasoar.bench.passthrough", "dynasoar.bench.handrolled"])
def test_the_floor_forwards_bodies_and_fields_unchanged(module: str) -> None:
    loop = new_event_loop()
    try:
        seen, replies = loop.run_until_complete(_forwarded(module))
    finally:
        loop.close()
    big = b"<b>" + b"x" * 100_000 + b"</b>"
    assert seen == [
        (b"<a/>", b"text/xml; charset=utf-8", b'"urn:x"'),
        (big, b"text/xml; charset=utf-8", b'"urn:x"'),
    ]
    assert replies == [
        (200, b"<r><a/></r>", "text/xml; charset=utf-8"),
        (200, b"<r>" + big + b"</r>", "text/xml; charset=utf-8"),
    ]
