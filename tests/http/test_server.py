"""HttpServer over real sockets: keep-alive, pipelining, framing, 100-continue, draining."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from http_support import serving
from rawhttp import chunked, closed_by_peer, connect, exchange, read_head, read_response

from dynasoar.http import Request, Response, ServerLimits

Run = Any


async def echo(request: Request) -> Response:
    body = await request.body.read_all(1 << 30)
    summary = f"{request.method} {request.path} {request.query} {request.http_version} "
    return Response(200, [("Content-Type", "text/plain")], summary.encode() + body)


def test_get_and_post(arun: Run) -> None:
    seen: list[Request] = []

    async def handler(request: Request) -> Response:
        seen.append(request)
        return await echo(request)

    async def main() -> None:
        async with serving(handler) as (_, address):
            got = await exchange(
                address, b"GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: h\r\nX-Thing: v\r\n\r\n"
            )
            assert got.status == 200
            assert got.body == b"GET /a/b x=1&y=2 1.1 "
            assert got.header("Content-Length") == str(len(got.body))
            assert got.header("Date") is not None
            got = await exchange(
                address, b"POST /svc HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
            )
            assert got.body == b"POST /svc  1.1 hello"
        first = seen[0]
        assert first.target == "/a/b?x=1&y=2"
        assert first.headers.get("x-thing") == "v"
        assert first.client is not None and first.client[0] == "127.0.0.1"
        assert seen[1].body.content_length == 5

    arun(main())


def test_keep_alive_serves_many_requests_on_one_connection(arun: Run) -> None:
    async def main() -> None:
        async with serving(echo) as (server, address):
            reader, writer = await connect(address)
            for i in range(5):
                writer.write(
                    b"POST /%d HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n%d" % (i, i)
                )
                got = await read_response(reader)
                assert got.body == b"POST /%d  1.1 %d" % (i, i)
                assert got.header("Connection") is None
            writer.close()
            assert server.connections_accepted == 1

    arun(main())


def test_http10_closes_unless_asked_to_keep_alive(arun: Run) -> None:
    async def main() -> None:
        async with serving(echo) as (_, address):
            reader, writer = await connect(address)
            writer.write(b"GET /x HTTP/1.0\r\n\r\n")
            got = await read_response(reader)
            assert got.header("Connection") == "close"
            assert await closed_by_peer(reader)
            writer.close()

            reader, writer = await connect(address)
            for _ in range(2):
                writer.write(b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                got = await read_response(reader)
                assert got.header("Connection") == "keep-alive"
                assert got.body == b"GET /x  1.0 "
            writer.close()

    arun(main())


def test_pipelined_requests_are_answered_in_order_one_at_a_time(arun: Run) -> None:
    active = 0
    most_active = 0

    async def handler(request: Request) -> Response:
        nonlocal active, most_active
        active += 1
        most_active = max(most_active, active)
        # The first request is the slowest: a server running them concurrently, or
        # writing answers as they finish, would get the order wrong.
        await asyncio.sleep(0.05 * (4 - int(request.path[1:])))
        body = await request.body.read_all(1 << 20)
        active -= 1
        return Response(200, [], request.path.encode() + b":" + body)

    async def main() -> None:
        async with serving(handler) as (server, address):
            reader, writer = await connect(address)
            writer.write(
                b"POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\none"
                b"GET /2 HTTP/1.1\r\nHost: h\r\n\r\n"
                b"POST /3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                + chunked(b"th", b"ree")
                + b"GET /4 HTTP/1.1\r\nHost: h\r\n\r\n"
            )
            bodies = [(await read_response(reader)).body for _ in range(4)]
            assert bodies == [b"/1:one", b"/2:", b"/3:three", b"/4:"]
            assert most_active == 1
            assert server.connections_accepted == 1
            writer.close()

    arun(main())


def test_pipelined_requests_with_large_bodies(arun: Run) -> None:
    """Bodies bigger than one read: the held-back request must still get its body."""
    size = 700 * 1024

    async def handler(request: Request) -> Response:
        body = await request.body.read_all(1 << 24)
        return Response(200, [], b"%s:%d:%d" % (request.path.encode(), len(body), body.count(b"x")))

    async def main() -> None:
        async with serving(handler) as (_, address):
            reader, writer = await connect(address)

            async def send() -> None:
                for i in range(3):
                    writer.write(
                        b"PUT /%d HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % (i, size)
                    )
                    writer.write(b"x" * size)
                    await writer.drain()

            sending = asyncio.ensure_future(send())
            bodies = [(await read_response(reader)).body for _ in range(3)]
            await sending
            assert bodies == [b"/%d:%d:%d" % (i, size, size) for i in range(3)]
            writer.close()

    arun(main())


def test_chunked_request_body(arun: Run) -> None:
    lengths: list[int | None] = []

    async def handler(request: Request) -> Response:
        lengths.append(request.body.content_length)
        return await echo(request)

    async def main() -> None:
        async with serving(handler) as (_, address):
            got = await exchange(
                address,
                b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                + chunked(b"<soap:", b"Envelope/>"),
            )
            assert got.body == b"POST /c  1.1 <soap:Envelope/>"
            assert lengths == [None]

    arun(main())


@pytest.mark.parametrize(
    ("request_line", "declared", "framing"),
    [
        (b"GET / HTTP/1.1", None, "chunked"),
        (b"GET / HTTP/1.1", 11, "length"),
        (b"GET / HTTP/1.0", None, "close"),
    ],
)
def test_streamed_response_framing(
    arun: Run, request_line: bytes, declared: int | None, framing: str
) -> None:
    async def parts() -> Any:
        for piece in (b"hello", b" ", b"", b"world"):
            yield piece

    async def handler(request: Request) -> Response:
        headers = [("Content-Length", str(declared))] if declared is not None else []
        return Response(200, headers, parts())

    async def main() -> None:
        async with serving(handler) as (_, address):
            reader, writer = await connect(address)
            writer.write(request_line + b"\r\nHost: h\r\n\r\n")
            got = await read_response(reader)
            assert got.body == b"hello world"
            assert got.chunked == (framing == "chunked")
            assert (got.header("Content-Length") == "11") == (framing == "length")
            if framing == "close":
                assert got.header("Connection") == "close"
            writer.close()

    arun(main())


def test_head_request_gets_the_length_but_no_body(arun: Run) -> None:
    async def main() -> None:
        async with serving(echo) as (_, address):
            reader, writer = await connect(address)
            writer.write(b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n")
            got = await read_response(reader, head_request=True)
            assert got.header("Content-Length") == str(len(b"HEAD /x  1.1 "))
            # Had a body been sent, it would now be read as the next response's head.
            writer.write(b"GET /y HTTP/1.1\r\nHost: h\r\n\r\n")
            got = await read_response(reader)
            assert got.status == 200 and got.body == b"GET /y  1.1 "
            writer.close()

    arun(main())


def test_expect_100_continue_is_sent_when_the_handler_reads(arun: Run) -> None:
    async def main() -> None:
        async with serving(echo) as (_, address):
            reader, writer = await connect(address)
            writer.write(
                b"POST /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
            )
            interim = await read_head(reader)
            assert interim.status == 100
            writer.write(b"data")
            got = await read_response(reader)
            assert got.status == 200 and got.body.endswith(b"data")
            # The connection stays usable.
            writer.write(b"GET /n HTTP/1.1\r\nHost: h\r\n\r\n")
            assert (await read_response(reader)).status == 200
            writer.close()

    arun(main())


def test_expect_100_continue_not_sent_when_the_handler_refuses(arun: Run) -> None:
    async def refuse(request: Request) -> Response:
        return Response.text(413, "too big for us")

    async def main() -> None:
        async with serving(refuse) as (_, address):
            reader, writer = await connect(address)
            writer.write(
                b"POST /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                b"Content-Length: 9999\r\n\r\n"
            )
            got = await read_response(reader, skip_interim=False)
            assert got.status == 413
            # The client may never send the body it offered: the server must not wait for it.
            assert got.header("Connection") == "close"
            assert await closed_by_peer(reader)
            writer.close()

    arun(main())


def test_unread_small_body_is_drained_and_the_connection_kept(arun: Run) -> None:
    async def ignore_body(request: Request) -> Response:
        return Response(204)

    async def main() -> None:
        async with serving(ignore_body) as (server, address):
            reader, writer = await connect(address)
            body = b"z" * 200_000
            for _ in range(3):
                writer.write(b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(body))
                writer.write(body)
                got = await read_response(reader)
                assert got.status == 204 and got.header("Connection") is None
            writer.write(b"PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
            writer.write(chunked(b"a" * 1000, b"b" * 1000))
            assert (await read_response(reader)).status == 204
            writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            assert (await read_response(reader)).status == 204
            assert server.connections_accepted == 1
            writer.close()

    arun(main())


def test_unread_large_body_closes_the_connection(arun: Run) -> None:
    async def ignore_body(request: Request) -> Response:
        return Response.text(200, "ignored")

    async def main() -> None:
        limits = ServerLimits(max_drain_bytes=10_000)
        async with serving(ignore_body, limits) as (_, address):
            reader, writer = await connect(address)
            size = 20 * 1024 * 1024  # far more than the server reads ahead of its handler

            async def send() -> None:
                writer.write(b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % size)
                for _ in range(size // 65536):
                    writer.write(b"q" * 65536)
                    await writer.drain()

            sending = asyncio.ensure_future(send())
            got = await read_response(reader)
            assert got.status == 200 and got.header("Connection") == "close"
            assert await closed_by_peer(reader)
            sending.cancel()
            writer.close()

    arun(main())


def test_upgrade_offers_are_ignored_and_bodies_kept(arun: Run) -> None:
    async def main() -> None:
        async with serving(echo) as (_, address):
            reader, writer = await connect(address)
            writer.write(
                b"POST /u HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n"
                b"Content-Length: 6\r\n\r\nbody-1"
                b"GET /after HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                b"POST /chunks HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: x\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b"body", b"-3")
            )
            bodies = [(await read_response(reader)).body for _ in range(3)]
            assert bodies == [
                b"POST /u  1.1 body-1",
                b"GET /after  1.1 ",
                b"POST /chunks  1.1 body-3",
            ]
            writer.close()

    arun(main())


def test_peer_half_close_still_gets_its_answer(arun: Run) -> None:
    async def main() -> None:
        async with serving(echo) as (_, address):
            reader, writer = await connect(address)
            writer.write(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi")
            writer.write_eof()
            got = await read_response(reader)
            assert got.body.endswith(b"hi")
            assert await closed_by_peer(reader)
            writer.close()

    arun(main())


def test_a_handler_can_tell_that_its_client_left(arun: Run) -> None:
    """What lets a Host Provider undo a Deploy nobody is waiting for any more."""
    seen: list[tuple[bool, bool]] = []

    async def main() -> None:
        entered, release = asyncio.Event(), asyncio.Event()

        async def handler(request: Request) -> Response:
            before = request.disconnected()
            entered.set()
            await release.wait()
            seen.append((before, request.disconnected()))
            return Response(200, [], b"too late")

        async with serving(handler) as (_, address):
            _, writer = await connect(address)
            writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            await entered.wait()
            writer.close()
            await asyncio.sleep(0.1)
            release.set()
            await asyncio.sleep(0.1)

    arun(main())
    assert seen == [(False, True)]
