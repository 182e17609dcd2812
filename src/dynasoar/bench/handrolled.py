"""The relay benchmark's second floor: the cheapest forwarder Python makes on this machine, to
show what any relay written in Python costs per message at the bench's load. It is built
straight on ``asyncio.Protocol`` and httptools, both sides, on uvloop: per message it makes no
task, no future, no timer and no object of our HTTP layer, and it reads nothing of the body.
It has none of what a server must have (limits, deadlines, streaming, back-pressure, errors
answered), so it is a baseline for ``make bench`` and never a relay for anything else.

``python -m dynasoar.bench.handrolled UPSTREAM_URL`` prints ``listening on URL``; every POST it
gets goes to UPSTREAM_URL with its Content-Type and SOAPAction, and the reply comes back with its
status, Content-Type and body."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections import deque
from collections.abc import Callable

import httptools

from dynasoar.bench.passthrough import listening, run_floor

#: Request fields sent on unchanged (as the other floor, passthrough.py, does).
FORWARDED = (b"content-type", b"soapaction")
#: Reply fields sent back unchanged (framing is remade: the body is sent with its length).
RETURNED = (b"content-type",)

Reply = Callable[[int, list[tuple[bytes, bytes]], bytes], None]


class _Upstream(asyncio.Protocol):
    """One keep-alive connection to the service: one exchange at a time."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._parser = httptools.HttpResponseParser(self)
        self._fields: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.reply: Reply | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._pool.forget(self)
        if self.reply is not None:
            self.reply(502, [], b"upstream closed the connection")

    def on_message_begin(self) -> None:
        self._fields = []
        self._body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in RETURNED:
            self._fields.append((name, value))

    def on_body(self, data: bytes) -> None:
        self._body.append(data)

    def on_message_complete(self) -> None:
        reply, self.reply = self.reply, None
        self._pool.idle.append(self)
        if reply is not None:
            reply(self._parser.get_status_code(), self._fields, b"".join(self._body))


class Pool:
    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.head = b"POST %s HTTP/1.1\r\nHost: %s\r\n" % (
            (parts.path or "/").encode("ascii"),
            parts.netloc.encode("ascii"),
        )
        self.idle: deque[_Upstream] = deque()

    def send(self, data: bytes, reply: Reply) -> None:
        if self.idle:
            upstream = self.idle.pop()
            upstream.reply = reply
            assert upstream.transport is not None
            upstream.transport.write(data)
        else:
            asyncio.get_running_loop().create_task(self._connect(data, reply))

    async def _connect(self, data: bytes, reply: Reply) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await loop.create_connection(
                lambda: _Upstream(self), self.host, self.port
            )
        except OSError as exc:
            reply(502, [], str(exc).encode())
            return
        upstream.reply = reply
        assert upstream.transport is not None
        upstream.transport.write(data)

    def forget(self, upstream: _Upstream) -> None:
        if upstream in self.idle:
            self.idle.remove(upstream)


class Downstream(asyncio.Protocol):
    """One client connection; requests it pipelines are answered in order."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._parser = httptools.HttpRequestParser(self)
        self._fields: list[bytes] = []
        self._body: list[bytes] = []
        #: Requests (fields to forward, body) behind the one being answered.
        self._waiting: deque[tuple[bytes, bytes]] = deque()
        self._busy = False
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            assert self._transport is not None
            self._transport.close()

    def on_message_begin(self) -> None:
        self._fields = []
        self._body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in FORWARDED:
            self._fields.append(b"%s: %s\r\n" % (name, value))

    def on_body(self, data: bytes) -> None:
        self._body.append(data)

    def on_message_complete(self) -> None:
        body = b"".join(self._body)
        fields = b"".join(self._fields)
        if self._busy:
            self._waiting.append((fields, body))
        else:
            self._busy = True
            self._take(fields, body)

    def _take(self, fields: bytes, body: bytes) -> None:
        """Forward a request, or answer it at once if ``_admit`` says so."""
        refusal = self._admit(body)
        if refusal is not None:
            self._answer(refusal)
            return
        head = self._pool.head
        self._pool.send(
            b"%s%sContent-Length: %d\r\n\r\n%s" % (head, fields, len(body), body), self._reply
        )

    def _admit(self, body: bytes) -> bytes | None:
        """A request about to be forwarded; the whole response to send instead, if it is not
        to be. (This floor forwards all; minimal.py's checks what it must.)"""
        return None

    def _answered(self, status: int, sent: int) -> bytes:
        """A reply about to go back: the header fields to add to it (none here)."""
        return b""

    def _reply(self, status: int, fields: list[tuple[bytes, bytes]], body: bytes) -> None:
        head = b"".join(b"%s: %s\r\n" % field for field in fields)
        head += self._answered(status, len(body))
        self._answer(
            b"HTTP/1.1 %d \r\n%sContent-Length: %d\r\n\r\n%s" % (status, head, len(body), body)
        )

    def _answer(self, response: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(response)
        if self._waiting:
            self._take(*self._waiting.popleft())
        else:
            self._busy = False


async def serve(upstream: str, downstream: type[Downstream] | None = None) -> None:
    """Forward to ``upstream`` until killed; each client connection is a ``downstream``."""
    pool = Pool(upstream)
    loop = asyncio.get_running_loop()
    kind = downstream or Downstream
    server = await loop.create_server(lambda: kind(pool), "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    listening(host, port)
    await asyncio.Event().wait()


def main() -> None:
    run_floor("dynasoar.bench.handrolled", serve)


if __name__ == "__main__":
    main()
