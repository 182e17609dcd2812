"""A relay built from HttpServer + ConnectionPool, as the Service Provider's: bytes unchanged,
streamed both ways, many consumers at once."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import Any

from http_support import pattern, pattern_digest, rss_bytes, serving, url

from dynasoar.errors import TransportError
from dynasoar.http import ConnectionPool, Handler, Request, Response

Run = Any
MiB = 1024 * 1024

ENVELOPE = (
    b'<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
    b"<soap:Body><echo>%d</echo></soap:Body></soap:Envelope>"
)


def make_relay(pool: ConnectionPool, backend: str, complete: list[bool] | None = None) -> Handler:
    async def relay(request: Request) -> Response:
        if complete is not None:
            complete.append(request.body.complete)
        # Hop-by-hop and framing fields are dropped by the pool; Host must name the backend.
        request.headers.remove("host")
        try:
            upstream = await pool.request(
                backend + request.target,
                request.method,
                headers=request.headers,
                body=request.body,
                timeout=30,
            )
        except TransportError:
            return Response.text(502, "backend unreachable")
        return Response(upstream.status, upstream.headers, upstream.body)

    return relay


async def soap_backend(request: Request) -> Response:
    if request.path == "/upload":
        digest = hashlib.sha256()
        async for chunk in request.body:
            digest.update(chunk)
        return Response(200, [("Content-Type", "text/plain")], digest.hexdigest().encode())
    if request.path == "/download":
        size = int(request.query)
        return Response(200, [("Content-Type", "application/octet-stream")], pattern(size))
    if request.path == "/fault":
        await request.body.read_all(1 << 20)
        return Response(500, [("Content-Type", "text/xml")], b"<soap:Fault/>")
    body = await request.body.read_all(1 << 20)
    action = request.headers.get("soapaction", "")
    return Response(
        200,
        [("Content-Type", "text/xml; charset=utf-8"), ("X-Echo-Action", action)],
        body.replace(b"<echo>", b"<echoed>").replace(b"</echo>", b"</echoed>"),
    )


@contextlib.asynccontextmanager
async def relay_chain(
    complete: list[bool] | None = None,
) -> AsyncIterator[tuple[str, ConnectionPool, Any]]:
    async with serving(soap_backend) as (backend, backend_address):
        # Room for every concurrent exchange to stay idle afterwards: reuse is then exact.
        pool = ConnectionPool(max_idle_per_origin=64)
        relay = make_relay(pool, url(backend_address, ""), complete)
        async with serving(relay) as (_, relay_address):
            try:
                yield url(relay_address, ""), pool, backend
            finally:
                await pool.close()


def test_fifty_concurrent_consumers(arun: Run) -> None:
    async def main() -> None:
        async with relay_chain() as (relay_url, pool, backend):

            async def consumer(i: int) -> None:
                client = ConnectionPool()
                for round_ in range(3):
                    n = i * 10 + round_
                    response = await client.request(
                        relay_url + "/services/Echo",
                        headers=[("Content-Type", "text/xml"), ("SOAPAction", f'"urn:echo:{n}"')],
                        body=ENVELOPE % n,
                        timeout=30,
                    )
                    assert response.status == 200
                    assert response.headers.get("x-echo-action") == f'"urn:echo:{n}"'
                    assert response.headers.get("content-type") == "text/xml; charset=utf-8"
                    body = await response.read_all(1 << 20)
                    assert body == (ENVELOPE % n).replace(b"<echo>", b"<echoed>").replace(
                        b"</echo>", b"</echoed>"
                    )
                await client.close()

            await asyncio.gather(*[consumer(i) for i in range(50)])
            # Upstream connections were kept alive and reused, not opened per message.
            assert pool.connections_opened <= 50
            assert backend.connections_accepted == pool.connections_opened
            before = pool.connections_opened
            for i in range(20):
                client_response = await ConnectionPool().request(
                    relay_url + "/services/Echo", body=ENVELOPE % i, timeout=30
                )
                await client_response.read_all(1 << 20)
            assert pool.connections_opened == before

    arun(main())


def test_large_bodies_stream_through_the_relay_both_ways(arun: Run) -> None:
    total = 64 * MiB
    complete: list[bool] = []

    async def main() -> None:
        async with relay_chain(complete) as (relay_url, _, _):
            client = ConnectionPool()
            baseline = rss_bytes()
            growth = 0

            async def watched() -> AsyncIterator[bytes]:
                nonlocal growth
                async for chunk in pattern(total):
                    growth = max(growth, rss_bytes() - baseline)
                    yield chunk

            response = await client.request(
                relay_url + "/upload", "PUT", body=watched(), timeout=60
            )
            assert (await response.read_all(100)).decode() == pattern_digest(total)
            # The relay started forwarding the body while it was still arriving.
            assert complete == [False]

            response = await client.request(relay_url + f"/download?{total}", "GET", timeout=60)
            assert complete == [False, True]
            digest = hashlib.sha256()
            received = 0
            async for chunk in response.body:
                digest.update(chunk)
                received += len(chunk)
                growth = max(growth, rss_bytes() - baseline)
            assert received == total
            assert response.headers.get("transfer-encoding") == "chunked"
            assert digest.hexdigest() == pattern_digest(total)
            # Consumer, relay and backend all live in this process: none held a body whole.
            assert growth < 40 * MiB
            await client.close()

    arun(main())


def test_status_and_errors_pass_through(arun: Run) -> None:
    async def main() -> None:
        async with relay_chain() as (relay_url, _, _):
            client = ConnectionPool()
            response = await client.request(relay_url + "/fault", body=ENVELOPE % 1, timeout=10)
            assert response.status == 500
            assert await response.read_all(100) == b"<soap:Fault/>"
            await client.close()

        # A relay whose backend is gone answers 502 and keeps serving.
        pool = ConnectionPool(connect_timeout=2)
        async with serving(make_relay(pool, "http://127.0.0.1:9")) as (_, address):
            client = ConnectionPool()
            for _ in range(2):
                response = await client.request(url(address, "/x"), body=b"x", timeout=10)
                assert response.status == 502
                await response.read_all(100)
            await client.close()
        await pool.close()

    arun(main())


def test_consumer_leaving_mid_download_releases_the_backend(arun: Run) -> None:
    async def main() -> None:
        closed = asyncio.Event()

        async def endless() -> AsyncIterator[bytes]:
            try:
                async for chunk in pattern(1 << 40):
                    yield chunk
            finally:
                closed.set()

        async def backend(request: Request) -> Response:
            return Response(200, [], endless())

        async with serving(backend) as (_, backend_address):
            pool = ConnectionPool()
            relay = make_relay(pool, url(backend_address, ""))
            async with serving(relay) as (_, relay_address):
                reader, writer = await asyncio.open_connection(*relay_address)
                writer.write(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
                await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(100_000)
                writer.transport.abort()
                # The relay stops reading upstream and drops that connection, so the
                # backend's stream ends instead of running on for ever.
                await closed.wait()
                assert pool.idle_count == 0
            await pool.close()

    arun(main())
