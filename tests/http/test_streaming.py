"""Large bodies stream through in chunks, and a slow consumer holds the sender back."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

from http_support import pattern, pattern_digest, rss_bytes, serving, url
from rawhttp import connect, read_head, read_response

from dynasoar.http import ConnectionPool, Request, Response, ServerLimits

Run = Any
MiB = 1024 * 1024


def test_50_mib_upload_streams_through_in_chunks(arun: Run) -> None:
    total = 50 * MiB
    seen = {"chunks": 0, "largest": 0, "bytes": 0, "rss_growth": 0}

    async def handler(request: Request) -> Response:
        digest = hashlib.sha256()
        baseline = rss_bytes()
        async for chunk in request.body:
            seen["chunks"] += 1
            seen["largest"] = max(seen["largest"], len(chunk))
            seen["bytes"] += len(chunk)
            digest.update(chunk)
            seen["rss_growth"] = max(seen["rss_growth"], rss_bytes() - baseline)
        return Response(200, [], digest.hexdigest().encode())

    async def main() -> None:
        async with serving(handler) as (_, address):
            pool = ConnectionPool()
            response = await pool.request(url(address, "/up"), body=pattern(total), timeout=60)
            assert (await response.read_all(1000)).decode() == pattern_digest(total)
            await pool.close()

    arun(main())
    assert seen["bytes"] == total
    # The handler saw the body as it came, never as one blob ...
    assert seen["chunks"] >= 50
    assert seen["largest"] <= 2 * MiB
    # ... and nothing along the way (client, server, both in this process) held it whole.
    assert seen["rss_growth"] < 25 * MiB


def test_slow_consumer_holds_the_uploader_back(arun: Run) -> None:
    total = 64 * MiB
    limits = ServerLimits(high_water=64 * 1024, low_water=16 * 1024)
    observed: dict[str, int] = {}
    progress = {"sent": 0}

    async def handler(request: Request) -> Response:
        # Read nothing for a while: the client must stall, not fill the server's memory.
        for _ in range(20):
            await asyncio.sleep(0.02)
            observed["max_buffered"] = max(observed.get("max_buffered", 0), request.body.buffered)
        observed["sent_before_reading"] = progress["sent"]
        received = 0
        async for chunk in request.body:
            received += len(chunk)
            observed["max_buffered"] = max(observed["max_buffered"], request.body.buffered)
        return Response(200, [], str(received).encode())

    async def main() -> None:
        async with serving(handler, limits) as (_, address):
            reader, writer = await connect(address)
            writer.write(b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % total)

            async def send() -> None:
                async for chunk in pattern(total):
                    writer.write(chunk)
                    await writer.drain()
                    progress["sent"] += len(chunk)

            sending = asyncio.ensure_future(send())
            got = await read_response(reader)
            await sending
            assert got.body == str(total).encode()
            writer.close()

    arun(main())
    # Socket buffers on loopback hold a few MiB at most; without back-pressure the whole
    # body would have been accepted while the handler was not reading.
    assert observed["sent_before_reading"] < total // 2
    # What the server itself buffers is bounded by the high-water mark plus one read.
    assert observed["max_buffered"] <= 64 * 1024 + 1 * MiB


def test_slow_reader_holds_a_streamed_response_back(arun: Run) -> None:
    total = 64 * MiB
    produced = {"bytes": 0}

    async def counted() -> AsyncIterator[bytes]:
        async for chunk in pattern(total):
            produced["bytes"] += len(chunk)
            yield chunk

    async def handler(request: Request) -> Response:
        return Response(200, [], counted())

    async def main() -> None:
        async with serving(handler) as (_, address):
            reader, writer = await connect(address)
            writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            head = await read_head(reader)
            assert head.header("Transfer-Encoding") == "chunked"
            await asyncio.sleep(0.3)  # not reading: the server must stop producing
            produced_while_idle = produced["bytes"]
            digest = hashlib.sha256()
            received = 0
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                data = await reader.readexactly(size)
                digest.update(data)
                received += size
                await reader.readexactly(2)
            assert received == total
            assert digest.hexdigest() == pattern_digest(total)
            assert produced_while_idle < total // 2
            writer.close()

    arun(main())


def test_client_streams_a_large_response_with_back_pressure(arun: Run) -> None:
    total = 32 * MiB
    produced = {"bytes": 0}

    async def counted() -> AsyncIterator[bytes]:
        async for chunk in pattern(total):
            produced["bytes"] += len(chunk)
            yield chunk

    async def handler(request: Request) -> Response:
        return Response(200, [("Content-Length", str(total))], counted())

    async def main() -> None:
        async with serving(handler) as (_, address):
            pool = ConnectionPool()
            response = await pool.request(url(address), "GET", timeout=10)
            assert response.body.content_length == total
            await asyncio.sleep(0.3)  # a consumer that is not reading yet
            produced_while_idle = produced["bytes"]
            assert response.body.buffered <= 256 * 1024 + 1 * MiB
            digest = hashlib.sha256()
            chunks = 0
            async for chunk in response.body:
                digest.update(chunk)
                chunks += 1
            assert digest.hexdigest() == pattern_digest(total)
            assert chunks > 10
            assert produced_while_idle < total // 2
            # Read to the end: the connection went back to the pool.
            assert pool.idle_count == 1
            await pool.close()

    arun(main())
