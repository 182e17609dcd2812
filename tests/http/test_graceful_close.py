"""Stopping an HttpServer: stop accepting, finish in-flight requests (answered with
``Connection: close``), close idle keep-alive connections once nothing is in flight, cut what
outlives the grace; and a listening socket handed to a new server loses no connection."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from rawhttp import closed_by_peer, connect, read_response

from dynasoar.http import HttpServer, Request, Response

Run = Any


def test_close_waits_for_in_flight_requests(arun: Run) -> None:
    state: dict[str, Any] = {}

    async def handler(request: Request) -> Response:
        if request.path == "/slow":
            state["entered"].set()
            await state["release"].wait()
            return Response(200, [], b"finished")
        return Response(200, [], b"quick")

    async def main() -> None:
        state["entered"] = asyncio.Event()
        state["release"] = asyncio.Event()
        server = HttpServer(handler)
        address = await server.start("127.0.0.1", 0)
        busy_reader, busy_writer = await connect(address)
        busy_writer.write(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
        idle_reader, idle_writer = await connect(address)
        idle_writer.write(b"GET /quick HTTP/1.1\r\nHost: h\r\n\r\n")
        assert (await read_response(idle_reader)).body == b"quick"
        await state["entered"].wait()

        closing = asyncio.ensure_future(server.close(grace=30))
        await asyncio.sleep(0.05)
        # No new connection is accepted ...
        with pytest.raises(OSError):
            await connect(address)
        # ... the idle keep-alive connection stays open while a request is in flight: its
        # client may be about to use it, and a request then gets an answer, not a reset ...
        idle_writer.write(b"GET /quick HTTP/1.1\r\nHost: h\r\n\r\n")
        again = await read_response(idle_reader)
        assert again.body == b"quick"
        assert again.header("Connection") == "close"
        assert await closed_by_peer(idle_reader)
        # ... and the request in flight still completes, told the connection will close.
        assert not closing.done()
        state["release"].set()
        got = await read_response(busy_reader)
        assert got.body == b"finished"
        assert got.header("Connection") == "close"
        await closing
        assert await closed_by_peer(busy_reader)
        busy_writer.close()
        idle_writer.close()

    arun(main())


def test_close_cuts_requests_that_outlive_the_grace(arun: Run) -> None:
    cancelled = []

    async def stuck(request: Request) -> Response:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(request.path)
            raise
        return Response(200)

    async def main() -> None:
        server = HttpServer(stuck)
        address = await server.start("127.0.0.1", 0)
        reader, writer = await connect(address)
        writer.write(b"GET /forever HTTP/1.1\r\nHost: h\r\n\r\n")
        await asyncio.sleep(0.05)
        await server.close(grace=0.2)
        assert await closed_by_peer(reader)
        writer.close()

    arun(main())
    assert cancelled == ["/forever"]


def test_close_lets_a_half_received_head_finish(arun: Run) -> None:
    async def handler(request: Request) -> Response:
        return Response(200, [], b"late but served")

    async def main() -> None:
        server = HttpServer(handler)
        address = await server.start("127.0.0.1", 0)
        reader, writer = await connect(address)
        writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n")
        await asyncio.sleep(0.05)
        closing = asyncio.ensure_future(server.close(grace=30))
        await asyncio.sleep(0.05)
        writer.write(b"\r\n")
        got = await read_response(reader)
        assert got.body == b"late but served"
        assert got.header("Connection") == "close"
        await closing
        writer.close()

    arun(main())


def test_close_waits_for_handlers_whose_client_left(arun: Run) -> None:
    finished = []

    async def main() -> None:
        entered, release = asyncio.Event(), asyncio.Event()

        async def handler(request: Request) -> Response:
            entered.set()
            await release.wait()
            finished.append(request.path)
            return Response(200)

        server = HttpServer(handler)
        address = await server.start("127.0.0.1", 0)
        _, writer = await connect(address)
        writer.write(b"GET /orphan HTTP/1.1\r\nHost: h\r\n\r\n")
        await entered.wait()
        writer.close()
        await asyncio.sleep(0.05)  # let the server see the client go
        closing = asyncio.ensure_future(server.close(grace=30))
        await asyncio.sleep(0.05)
        assert not closing.done()  # a handler is still at work
        release.set()
        await closing

    arun(main())
    assert finished == ["/orphan"]


def test_an_idle_connection_is_closed_once_nothing_is_in_flight(arun: Run) -> None:
    async def handler(request: Request) -> Response:
        return Response(200, [], b"ok")

    async def main() -> None:
        server = HttpServer(handler)
        address = await server.start("127.0.0.1", 0)
        reader, writer = await connect(address)
        writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert (await read_response(reader)).header("Connection") is None  # kept alive
        server.stop_accepting()
        assert await server.drain(grace=10, quiet=0.2)
        # A clean close (FIN): the client reads the end of the stream, not a reset.
        assert await reader.read(100) == b""
        writer.close()
        await server.abort()

    arun(main())


def test_a_kept_listening_socket_hands_waiting_connections_to_the_next_server(
    arun: Run,
) -> None:
    """What a graceful re-exec relies on: the old server stops accepting but the socket stays
    open (another descriptor of it is held), connections made meanwhile wait in its backlog,
    and the next server accepting on that socket answers them. None is refused."""

    def answer(text: bytes) -> Any:
        async def handler(request: Request) -> Response:
            return Response(200, [], text)

        return handler

    async def main() -> None:
        listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        kept = listener.dup()
        old = HttpServer(answer(b"old"))
        address = await old.start(sock=listener)
        reader, writer = await connect(address)
        writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert (await read_response(reader)).body == b"old"

        old.stop_accepting()
        # Connected while nobody accepts: the kernel completes the handshake and queues it.
        waiting = [await connect(address) for _ in range(3)]
        for _, w in waiting:
            w.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert await old.drain(grace=10, quiet=0.1)
        await old.abort()
        assert await closed_by_peer(reader)

        new = HttpServer(answer(b"new"))
        await new.start(sock=kept)
        for r, w in waiting:
            assert (await read_response(r)).body == b"new"
            w.close()
        writer.close()
        await new.close(grace=1)

    arun(main())
