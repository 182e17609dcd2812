"""One client-side HTTP/1.1 connection: send a request, parse its response, back to the pool."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterable
from types import TracebackType
from typing import TYPE_CHECKING, cast

import httptools

from dynasoar.errors import TransportError
from dynasoar.http.body import BodyReader
from dynasoar.http.headers import Headers, RawFields
from dynasoar.http.wire import COALESCE_BYTES, Bytes, stream_body

if TYPE_CHECKING:
    from dynasoar.http.client import ConnectionPool

_MAX_FIELDS = 256
_EMPTY_BODY = BodyReader(0)


class ClientResponse:
    """A response whose head has arrived; the body streams in ``body``.

    The connection goes back to its pool once the whole body has come off the socket
    (and the response allows keep-alive); ``aclose()`` before that closes the connection.
    """

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Headers, body: BodyReader) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    async def read_all(self, limit: int) -> bytes:
        """The whole body (PayloadTooLarge above ``limit`` bytes, the connection then closed)."""
        try:
            return await self.body.read_all(limit)
        except BaseException:
            await self.body.aclose()
            raise

    async def aclose(self) -> None:
        await self.body.aclose()

    async def __aenter__(self) -> ClientResponse:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<ClientResponse {self.status}>"


class StaleConnection(Exception):
    """A reused connection closed before any byte of the response: the peer dropped it idle."""


class _ResponseArrived(Exception):
    """The final response came while the request body was still being sent."""


class ClientConnection(asyncio.Protocol):
    """One client connection: one exchange at a time, then back to the pool or closed."""

    def __init__(
        self, pool: ConnectionPool, origin: tuple[str, int], loop: asyncio.AbstractEventLoop
    ) -> None:
        self.origin = origin
        self.loop = loop
        self.dead = False
        self.reused = False
        self.idle_since = 0.0
        self._pool = pool
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._in_use = False
        self._waiter: asyncio.Future[ClientResponse] | None = None
        self._fields: RawFields = []
        self._length: int | None = None
        self._chunked = False
        self._interim = False
        self._head_only = False
        self._got_bytes = False
        self._until_close = False
        self._keep_alive = False
        self._request_sent = False
        self._answered = False
        self._timed_out = False
        self._body: BodyReader | None = None
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0

    # ---- one exchange ------------------------------------------------------------------

    async def exchange(
        self,
        head: bytes,
        payload: Bytes | None,
        stream: AsyncIterable[bytes] | None,
        framing: int,
        deadline: float,
        head_only: bool,
    ) -> ClientResponse:
        """Send a request and wait for the final response head (until ``deadline``).

        Raises StaleConnection when a reused connection turns out to have been closed by
        the peer before it sent anything, TransportError for any other failure.
        """
        transport = self._transport
        assert transport is not None
        waiter: asyncio.Future[ClientResponse] = self.loop.create_future()
        self._waiter = waiter
        self._in_use = True
        self._got_bytes = False
        self._head_only = head_only
        self._request_sent = False
        self._answered = False
        self._timed_out = False
        self._until_close = False
        self._deadline = deadline
        timer = self._timer
        if timer is None or timer.when() > deadline:
            # One timer per connection, moved only when a deadline comes sooner: with the
            # same timeout on every request it is created once, not once per request.
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(deadline, self._on_timer)
        try:
            if payload is not None:
                if len(payload) <= COALESCE_BYTES:
                    transport.write(head + payload)
                else:
                    transport.write(head)
                    transport.write(payload)
                self._request_sent = True
            else:
                assert stream is not None
                transport.write(head)
                try:
                    # Bounds waiting on the body's source, too, not only on the socket.
                    async with asyncio.timeout_at(deadline):
                        with contextlib.suppress(_ResponseArrived):
                            await stream_body(transport, stream, framing, self._writable)
                            self._request_sent = True
                except TimeoutError as exc:
                    raise self._error("timed out sending the request body") from exc
            return await waiter
        except BaseException:
            if not waiter.done():
                waiter.cancel()  # nobody awaits it now: the close below must not fail it
            elif not waiter.cancelled():
                waiter.exception()  # seen: the error raised here is the one that counts
            if self._waiter is waiter:
                # Still this exchange's connection (not yet back in the pool): unusable now.
                self._in_use = False
                self.close(abort=True)
            raise

    def _error(self, what: str) -> TransportError:
        return TransportError(f"HTTP to {self.origin[0]}:{self.origin[1]}: {what}")

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done() or self.dead:
            return  # no exchange waiting for a head: nothing to time
        if self.loop.time() < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._on_timer)
            return
        self._timed_out = True
        error = self._error("no response before the timeout")
        error.__cause__ = TimeoutError()
        waiter.set_exception(error)
        self.close(abort=True)

    async def _writable(self) -> None:
        """Between body chunks: wait out a full socket buffer; stop if an answer came."""
        while self._write_paused and not self.dead and not self._answered:
            self._drain_waiter = self.loop.create_future()
            await self._drain_waiter
        waiter = self._waiter
        if self._answered or (waiter is not None and waiter.done()):
            raise _ResponseArrived  # the answer, or what went wrong, is in the waiter
        if self.dead:
            raise self._error("connection lost while sending the request body")

    @property
    def usable(self) -> bool:
        """Open, as far as this side knows (the peer may have closed it unnoticed)."""
        transport = self._transport
        return not self.dead and transport is not None and not transport.is_closing()

    def close(self, *, abort: bool = False) -> None:
        self.dead = True
        transport = self._transport
        if transport is not None and not transport.is_closing():
            if abort:
                transport.abort()
            else:
                transport.close()

    def _done(self, reuse: bool) -> None:
        if not self._in_use:
            return
        self._in_use = False
        self._waiter = None
        if reuse and not self.dead:
            self._pool._release(self)
        else:
            self.close()

    # ---- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._write_paused = False
        self._wake_writer()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if self.reused and not self._got_bytes:
                waiter.set_exception(StaleConnection())
            else:
                error = self._error("connection closed before a response")
                error.__cause__ = exc
                waiter.set_exception(error)
        body = self._body
        if body is not None:
            self._body = None
            if self._until_close and exc is None and not self._timed_out:
                body._feed_eof()
            else:
                error = self._error("connection closed before the end of the response")
                error.__cause__ = exc
                body._fail(error)
        if not self._in_use:
            self._pool._forget(self)
        self._in_use = False

    def data_received(self, data: bytes) -> None:
        if not self._in_use:
            self.close()  # bytes nobody asked for: this connection cannot be trusted
            return
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            error = self._error(f"malformed response ({exc})")
            error.__cause__ = exc.__context__ if isinstance(exc.__context__, Exception) else exc
            self._fail(error)

    def eof_received(self) -> bool | None:
        return None  # close: a response delimited by EOF ends in connection_lost

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writer()

    def _wake_writer(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _fail(self, error: TransportError) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        body = self._body
        if body is not None:
            self._body = None
            body._fail(error)
        self.close(abort=True)

    # ---- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._fields = []
        self._length = None
        self._chunked = False

    def on_header(self, name: bytes, value: bytes) -> None:
        fields = self._fields
        fields.append((name, value))
        size = len(name)
        if size == 14 and name.lower() == b"content-length":
            self._length = int(value)
        elif size == 17 and name.lower() == b"transfer-encoding":
            self._chunked = value.lower().rstrip().endswith(b"chunked")
        if len(fields) > _MAX_FIELDS:
            raise ValueError("too many header fields")

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if status < 200:
            if status == 101:
                raise ValueError("unexpected 101 Switching Protocols")
            self._interim = True  # 100 Continue, 103 Early Hints ...: the real one follows
            return
        length: int | None
        if self._head_only or status == 204 or status == 304:
            length = 0
        elif self._chunked:
            length = None
        elif self._length is not None:
            length = self._length
        else:
            length = None
            self._until_close = True
        self._keep_alive = parser.should_keep_alive() and not self._until_close
        if length == 0:
            body = _EMPTY_BODY
        else:
            body = BodyReader(
                length, loop=self.loop, flow=self, read_timeout=self._pool.read_timeout
            )
            self._body = body
        response = ClientResponse(status, Headers.from_raw(self._fields), body)
        self._answered = True
        self._wake_writer()  # a body still being sent stops: the server has answered
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(response)
        if self._head_only:
            # httptools cannot be told that a HEAD response has no body: end the exchange
            # here and do not reuse the connection, whose parser state is now unknown.
            self._done(reuse=False)

    def on_body(self, data: bytes) -> None:
        if self._body is not None:
            self._body._feed(data)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        body = self._body
        if body is not None:
            self._body = None
            body._feed_eof()
        self._done(reuse=self._keep_alive and self._request_sent)

    # ---- FlowControl, for the response body ----------------------------------------------

    def pause_body(self) -> None:
        if self._transport is not None and not self.dead:
            self._transport.pause_reading()

    def resume_body(self) -> None:
        if self._transport is not None and not self.dead:
            self._transport.resume_reading()

    def abandon_body(self) -> None:
        # The rest of the response will not be read, so the connection cannot be reused.
        self._in_use = False
        self.close(abort=True)
