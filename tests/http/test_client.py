"""ConnectionPool over real sockets: reuse, framing, interim responses, stale peers, timeouts."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from http_support import serving, url
from rawhttp import raw_server, read_request

from dynasoar.errors import PayloadTooLarge, TransportError, Unreachable
from dynasoar.http import ConnectionPool, Request, Response, ServerLimits

Run = Any


async def echo(request: Request) -> Response:
    body = await request.body.read_all(1 << 26)
    length = request.body.content_length
    return Response(
        200,
        [("X-Method", request.method), ("X-Length", str(length)), ("X-Target", request.target)],
        body,
    )


async def parts(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


def test_connections_are_reused(arun: Run) -> None:
    async def main() -> None:
        async with serving(echo) as (server, address):
            pool = ConnectionPool()
            for i in range(10):
                response = await pool.request(url(address, f"/r?i={i}"), body=b"x%d" % i, timeout=5)
                assert response.status == 200
                assert response.headers.get("x-target") == f"/r?i={i}"
                assert await response.read_all(100) == b"x%d" % i
            assert pool.connections_opened == 1
            assert server.connections_accepted == 1
            assert pool.idle_count == 1
            await pool.close()
            assert pool.idle_count == 0

    arun(main())


def test_concurrent_requests_and_the_idle_cap(arun: Run) -> None:
    async def main() -> None:
        async with serving(echo) as (_, address):
            pool = ConnectionPool(max_idle_per_origin=4)

            async def one(i: int) -> bytes:
                response = await pool.request(url(address), body=b"%d" % i, timeout=10)
                return await response.read_all(100)

            results = await asyncio.gather(*[one(i) for i in range(40)])
            assert results == [b"%d" % i for i in range(40)]
            assert pool.idle_count <= 4
            await pool.close()

    arun(main())


@pytest.mark.parametrize(
    ("headers", "expected_length"),
    [([], "None"), ([("Content-Length", "11")], "11")],
)
def test_streamed_request_body(
    arun: Run, headers: list[tuple[str, str]], expected_length: str
) -> None:
    async def main() -> None:
        async with serving(echo) as (_, address):
            pool = ConnectionPool()
            response = await pool.request(
                url(address),
                "PUT",
                headers=headers,
                body=parts(b"hello", b"", b" world"),
                timeout=5,
            )
            assert response.headers.get("x-length") == expected_length
            assert await response.read_all(100) == b"hello world"
            # Reusable afterwards: the framing was right.
            again = await pool.request(url(address), body=b"again", timeout=5)
            assert await again.read_all(100) == b"again"
            assert pool.connections_opened == 1
            await pool.close()

    arun(main())


def test_request_framing_and_headers_on_the_wire(arun: Run) -> None:
    seen = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while (request := await read_request(reader)) is not None:
            seen.append(request)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    async def main() -> None:
        async with raw_server(script) as (address, _):
            pool = ConnectionPool()
            fields = [
                ("SOAPAction", '"urn:Echo"'),
                ("Transfer-Encoding", "gzip"),
                ("Connection", "x"),
            ]
            await pool.request(url(address, "/svc"), headers=fields, body=b"<e/>", timeout=5)
            await pool.request(url(address, "/get"), "GET", timeout=5)
            await pool.request(
                url(address, "/h"), "GET", headers={"Host": "virtual.example"}, timeout=5
            )
            await pool.close()

    arun(main())
    post, get, virtual = seen
    assert post.request_line == "POST /svc HTTP/1.1"
    assert post.header("host") == f"127.0.0.1:{post.header('host').split(':')[1]}"  # type: ignore[union-attr]
    assert post.header("soapaction") == '"urn:Echo"'
    assert post.header("content-length") == "4" and post.body == b"<e/>"
    # Framing fields are the client's own: the caller's copies are not sent.
    assert post.header("transfer-encoding") is None and post.header("connection") is None
    assert get.request_line == "GET /get HTTP/1.1" and get.header("content-length") is None
    assert virtual.header("host") == "virtual.example"


RESPONSES = {
    "length": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello", True),
    "chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n",
        b"hello",
        True,
    ),
    "no content": (b"HTTP/1.1 204 No Content\r\n\r\n", b"", True),
    "until close": (b"HTTP/1.1 200 OK\r\n\r\nhello", b"hello", False),
    "connection close": (
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
        b"hello",
        False,
    ),
    "http/1.0": (b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello", False),
    "interim": (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"hello",
        True,
    ),
}


@pytest.mark.parametrize("kind", list(RESPONSES))
def test_response_framings(arun: Run, kind: str) -> None:
    raw, body, reusable = RESPONSES[kind]

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while await read_request(reader) is not None:
            writer.write(raw)
            await writer.drain()
            if not reusable:
                return

    async def main() -> None:
        async with raw_server(script) as (address, stats):
            pool = ConnectionPool()
            for _ in range(2):
                response = await pool.request(url(address), body=b"ping", timeout=5)
                assert await response.read_all(100) == body
            assert stats["accepted"] == (1 if reusable else 2)
            assert pool.connections_opened == stats["accepted"]
            await pool.close()

    arun(main())


def test_stale_pooled_connection_is_retried_once(arun: Run) -> None:
    bodies: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        first = await read_request(reader)
        assert first is not None
        bodies.append(first.body)
        if n == 1:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")
            await writer.drain()
            # Then drop the connection the client keeps in its pool, as a server whose
            # idle timeout fired just as the next request went out.
            second = await read_request(reader)
            assert second is not None
            bodies.append(second.body)
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")
        await writer.drain()
        await read_request(reader)

    async def main() -> None:
        async with raw_server(script) as (address, stats):
            pool = ConnectionPool()
            first = await pool.request(url(address), body=b"a", timeout=5)
            assert await first.read_all(10) == b"one"
            second = await pool.request(url(address), body=b"b", timeout=5)
            assert await second.read_all(10) == b"two"
            assert stats["accepted"] == 2
            await pool.close()

    arun(main())
    assert bodies == [b"a", b"b", b"b"]


def test_stale_pooled_connection_with_a_streamed_body_is_an_error(arun: Run) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # the next head: then hang up without answering

    async def main() -> None:
        async with raw_server(script) as (address, _):
            pool = ConnectionPool()
            await (await pool.request(url(address), body=b"a", timeout=5)).read_all(10)
            with pytest.raises(TransportError, match="cannot be sent again"):
                await pool.request(url(address), body=parts(b"b" * 10), timeout=5)
            await pool.close()

    arun(main())


def test_connections_closed_while_idle_are_not_used(arun: Run) -> None:
    async def main() -> None:
        limits = ServerLimits(keepalive_timeout=0.05)
        async with serving(echo, limits) as (server, address):
            pool = ConnectionPool()
            await (await pool.request(url(address), body=b"1", timeout=5)).read_all(10)
            while server.connection_count:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            response = await pool.request(url(address), body=b"2", timeout=5)
            assert await response.read_all(10) == b"2"
            assert pool.connections_opened == 2
            await pool.close()

    arun(main())


def test_no_response_times_out(arun: Run) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        await reader.read()  # never answer; wait for the client to give up

    async def main() -> None:
        async with raw_server(silent) as (address, _):
            pool = ConnectionPool()
            with pytest.raises(TransportError, match="timeout") as caught:
                await pool.request(url(address), body=b"x", timeout=0.2)
            assert isinstance(caught.value.__cause__, TimeoutError)
            await pool.close()

    arun(main())


def test_stalled_streamed_request_body_times_out(arun: Run) -> None:
    async def stalls() -> AsyncIterator[bytes]:
        yield b"start"
        await asyncio.sleep(30)
        yield b"never"

    async def main() -> None:
        async with serving(echo) as (_, address):
            pool = ConnectionPool()
            with pytest.raises(TransportError, match="timed out") as caught:
                await pool.request(url(address), body=stalls(), timeout=0.2)
            assert isinstance(caught.value.__cause__, TimeoutError)
            await pool.close()

    arun(main())


def test_stalled_response_body_times_out(arun: Run) -> None:
    async def stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await reader.read()  # never finish; wait for the client to give up

    async def main() -> None:
        async with raw_server(stalls) as (address, _):
            pool = ConnectionPool(read_timeout=0.2)
            response = await pool.request(url(address), body=b"x", timeout=5)
            with pytest.raises(TransportError):
                await response.read_all(100)
            await pool.close()

    arun(main())


def test_connection_refused(arun: Run) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def main() -> None:
        pool = ConnectionPool()
        with pytest.raises(Unreachable, match="nothing answers at") as caught:
            await pool.request(f"http://127.0.0.1:{port}/", body=b"x", timeout=5)
        assert isinstance(caught.value, TransportError)
        assert caught.value.why == "connection refused"
        assert isinstance(caught.value.__cause__, OSError)
        await pool.close()

    arun(main())


def test_truncated_and_malformed_responses(arun: Run) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        if n == 1:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        else:
            writer.write(b"HTTP/1.1 2x0 What\r\n\r\n")
        await writer.drain()

    async def main() -> None:
        async with raw_server(script) as (address, _):
            pool = ConnectionPool()
            response = await pool.request(url(address), body=b"x", timeout=5)
            with pytest.raises(TransportError, match="end of the response"):
                await response.read_all(100)
            with pytest.raises(TransportError, match="malformed"):
                await pool.request(url(address), body=b"x", timeout=5)
            await pool.close()

    arun(main())


def test_unread_or_oversized_bodies_do_not_go_back_to_the_pool(arun: Run) -> None:
    async def big(request: Request) -> Response:
        return Response(200, [], b"y" * 1_000_000)

    async def main() -> None:
        async with serving(big) as (_, address):
            pool = ConnectionPool()
            response = await pool.request(url(address), "GET", timeout=5)
            with pytest.raises(PayloadTooLarge):
                await response.read_all(1000)
            response = await pool.request(url(address), "GET", timeout=5)
            await response.aclose()
            async with await pool.request(url(address), "GET", timeout=5) as response:
                assert len(await response.read_all(2_000_000)) == 1_000_000
            assert pool.connections_opened == 3
            response = await pool.request(url(address), "GET", timeout=5)
            await response.read_all(2_000_000)
            assert pool.connections_opened == 3  # the fully read one was reused
            await pool.close()

    arun(main())


def test_head_request(arun: Run) -> None:
    async def main() -> None:
        async with serving(echo) as (_, address):
            pool = ConnectionPool()
            response = await pool.request(url(address, "/h"), "HEAD", timeout=5)
            assert response.status == 200
            assert response.headers.get("content-length") == "0"
            assert await response.read_all(10) == b""
            response = await pool.request(url(address), body=b"after", timeout=5)
            assert await response.read_all(10) == b"after"
            await pool.close()

    arun(main())


def test_early_answer_stops_the_upload(arun: Run) -> None:
    async def refuse(request: Request) -> Response:
        return Response.text(413, "no thanks")

    async def endless() -> AsyncIterator[bytes]:
        block = b"u" * 65536
        for _ in range(100_000):  # 6 GiB: only stopping early makes this test finish
            yield block

    async def main() -> None:
        async with serving(refuse) as (_, address):
            pool = ConnectionPool()
            response = await pool.request(url(address), body=endless(), timeout=30)
            assert response.status == 413
            assert await response.read_all(100) == b"no thanks"
            await pool.close()

    arun(main())


def test_environment_proxies_are_ignored(arun: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    async def main() -> None:
        async with serving(echo) as (_, address):
            pool = ConnectionPool()
            response = await pool.request(url(address), body=b"direct", timeout=5)
            assert await response.read_all(10) == b"direct"
            await pool.close()

    arun(main())


def test_only_http_urls(arun: Run) -> None:
    async def main() -> None:
        pool = ConnectionPool()
        for bad in ("ftp://x/", "/relative", "https:///no-host"):
            with pytest.raises(ValueError):
                await pool.request(bad, timeout=1)
        await pool.close()
        with pytest.raises(TransportError):
            await pool.request("http://127.0.0.1:9/", timeout=1)

    arun(main())
