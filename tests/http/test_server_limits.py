"""HttpServer's limits and failures: refusals, slow peers, handler errors, body limits."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from http_support import serving
from rawhttp import chunked, closed_by_peer, connect, exchange, read_head, read_response

from dynasoar.errors import TransportError
from dynasoar.http import Request, Response, ServerLimits

Run = Any


async def echo(request: Request) -> Response:
    body = await request.body.read_all(1 << 30)
    summary = f"{request.method} {request.path} {request.query} {request.http_version} "
    return Response(200, [("Content-Type", "text/plain")], summary.encode() + body)


@pytest.mark.parametrize(
    ("limits", "raw", "status"),
    [
        (
            ServerLimits(max_headers=10),
            b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(11)) + b"\r\n",
            431,
        ),
        (
            ServerLimits(max_head_bytes=1024),
            b"GET / HTTP/1.1\r\nX-Big: " + b"v" * 2000 + b"\r\n\r\n",
            431,
        ),
        (ServerLimits(max_head_bytes=1024), b"GET /" + b"p" * 2000 + b" HTTP/1.1\r\n\r\n", 431),
        (
            ServerLimits(max_body_bytes=100),
            b"POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000,
            413,
        ),
        (ServerLimits(), b"POST / HTTP/1.1\r\nExpect: teapot\r\nContent-Length: 1\r\n\r\nx", 417),
        (ServerLimits(), b"GARBAGE\r\n\r\n", 400),
        (ServerLimits(), b"GET / HTTP/1.1\r\nBad Header: v\r\n\r\n", 400),
        (ServerLimits(), b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400),
        (
            ServerLimits(),
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunked(b"abc"),
            400,
        ),
        (ServerLimits(), b"GET / HTTP/9.9\r\n\r\n", 400),
        (ServerLimits(), b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n", 405),
    ],
)
def test_refusals_answer_and_close(
    arun: Run, limits: ServerLimits, raw: bytes, status: int
) -> None:
    called = False

    async def handler(request: Request) -> Response:
        nonlocal called
        called = True
        return Response(200)

    async def main() -> None:
        async with serving(handler, limits) as (_, address):
            reader, writer = await connect(address)
            writer.write(raw)
            got = await read_response(reader)
            assert got.status == status
            assert got.header("Connection") == "close"
            assert got.header("Content-Type") == "text/plain; charset=utf-8"
            assert await closed_by_peer(reader)
            writer.close()
        assert not called

    arun(main())


def test_head_too_large_when_trickled(arun: Run) -> None:
    async def main() -> None:
        async with serving(echo, ServerLimits(max_head_bytes=1024)) as (_, address):
            reader, writer = await connect(address)
            writer.write(b"GET / HTTP/1.1\r\nX-Slow: ")
            try:
                for _ in range(30):
                    writer.write(b"v" * 100)
                    await writer.drain()
                    await asyncio.sleep(0.001)
            except ConnectionError:
                pass
            got = await read_response(reader)
            assert got.status == 431
            writer.close()

    arun(main())


def test_slow_loris_head_is_cut_off_with_408(arun: Run) -> None:
    async def main() -> None:
        async with serving(echo, ServerLimits(head_timeout=0.3)) as (_, address):
            reader, writer = await connect(address)
            writer.write(b"GET / HTTP/1.1\r\n")

            async def trickle() -> None:
                # A byte now and then must not keep the head timer from running out.
                for _ in range(1000):
                    await asyncio.sleep(0.05)
                    if writer.is_closing():
                        return
                    writer.write(b"X")

            trickling = asyncio.ensure_future(trickle())
            got = await read_response(reader)
            trickling.cancel()
            assert got.status == 408
            assert await closed_by_peer(reader)
            writer.close()

    arun(main())


def test_idle_connections_are_closed_silently(arun: Run) -> None:
    async def main() -> None:
        limits = ServerLimits(keepalive_timeout=0.2, head_timeout=0.2)
        async with serving(echo, limits) as (_, address):
            reader, writer = await connect(address)
            writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            assert (await read_response(reader)).status == 200
            assert await reader.read() == b""  # idle after a response: closed, no 408
            writer.close()
            reader, writer = await connect(address)
            assert await reader.read() == b""  # never said anything: closed too
            writer.close()

    arun(main())


def test_connections_over_the_limit_get_503(arun: Run) -> None:
    async def main() -> None:
        async with serving(echo, ServerLimits(max_connections=2)) as (_, address):
            held = []
            for _ in range(2):
                reader, writer = await connect(address)
                writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
                assert (await read_response(reader)).status == 200
                held.append(writer)
            got = await exchange(address, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            assert got.status == 503
            held.pop().close()
            await asyncio.sleep(0.05)
            got = await exchange(address, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            assert got.status == 200
            for writer in held:
                writer.close()

    arun(main())


def test_handler_exception_is_a_500_without_details(
    arun: Run, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(request: Request) -> Response:
        if request.path == "/boom":
            raise RuntimeError("secret internals")
        return Response(200, [], b"fine")

    async def main() -> None:
        async with serving(handler) as (_, address):
            reader, writer = await connect(address)
            writer.write(b"GET /boom HTTP/1.1\r\nHost: h\r\n\r\n")
            got = await read_response(reader)
            assert got.status == 500
            assert b"secret" not in got.body and b"Traceback" not in got.body
            writer.write(b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\n")
            assert (await read_response(reader)).body == b"fine"
            writer.close()

    with caplog.at_level(logging.ERROR, logger="dynasoar.http.server"):
        arun(main())
    assert "secret internals" in caplog.text


def test_failing_streamed_response_aborts_only_that_connection(arun: Run) -> None:
    async def broken() -> Any:
        yield b"partial"
        raise RuntimeError("source broke")

    async def handler(request: Request) -> Response:
        if request.path == "/broken":
            return Response(200, [], broken())
        return Response(200, [], b"ok")

    async def main() -> None:
        async with serving(handler) as (_, address):
            reader, writer = await connect(address)
            writer.write(b"GET /broken HTTP/1.1\r\nHost: h\r\n\r\n")
            head = await read_head(reader)
            assert head.status == 200
            rest = b""
            with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
                while True:
                    rest += await reader.readexactly(1)
            assert b"0\r\n\r\n" not in rest  # never looks complete to the client
            writer.close()
            assert (await exchange(address, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")).body == b"ok"

    arun(main())


def test_stalled_body_times_out_in_the_handler(arun: Run) -> None:
    errors: list[BaseException] = []

    async def handler(request: Request) -> Response:
        try:
            await request.body.read_all(1 << 20)
        except TransportError as exc:
            errors.append(exc)
            return Response.text(400, "body stalled")
        return Response(200)

    async def main() -> None:
        async with serving(handler, ServerLimits(body_timeout=0.2)) as (_, address):
            reader, writer = await connect(address)
            writer.write(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
            got = await read_response(reader)
            assert got.status == 400 and got.header("Connection") == "close"
            writer.close()
        assert len(errors) == 1

    arun(main())


def test_chunked_body_over_the_limit_is_a_413(arun: Run) -> None:
    async def main() -> None:
        async with serving(echo, ServerLimits(max_body_bytes=1000)) as (_, address):
            reader, writer = await connect(address)
            writer.write(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
            writer.write(chunked(*[b"c" * 600] * 3))
            got = await read_response(reader)
            assert got.status == 413
            assert got.header("Connection") == "close"
            writer.close()

    arun(main())


def test_handler_left_read_all_limit_is_a_413(arun: Run) -> None:
    async def strict(request: Request) -> Response:
        await request.body.read_all(10)  # PayloadTooLarge, left to the server
        return Response(200)

    async def main() -> None:
        async with serving(strict) as (_, address):
            got = await exchange(
                address, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n01234567890"
            )
            assert got.status == 413

    arun(main())
