"""One server-side HTTP/1.1 connection: run the handler per request, answer strictly in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from typing import TYPE_CHECKING, cast

from dynasoar.errors import MalformedMessage, PayloadTooLarge, TransportError
from dynasoar.http.memory import give_back_after
from dynasoar.http.request_parser import Exchange, RequestParser
from dynasoar.http.server import Request, Response
from dynasoar.http.timer import DRAIN, HEAD, IDLE, LINGER, OFF, LazyTimer
from dynasoar.http.wire import (
    COALESCE_BYTES,
    CONTINUE,
    Bytes,
    close_body,
    encode_response,
    error_response,
    stream_body,
)

if TYPE_CHECKING:
    from dynasoar.http.server import HttpServer

log = logging.getLogger("dynasoar.http.server")

#: After refusing a request, how long to keep reading (and dropping) what the peer still
#: sends, so that closing does not reset the connection before the peer read the answer.
_LINGER_SECONDS = 2.0


class ServerConnection(asyncio.Protocol):
    """Requests are served one after the other, each answer written before the next starts.

    httptools parses a whole read at once, so requests pipelined in the same read are
    queued; reading then stops until the queue has drained to the request being parsed.
    """

    def __init__(self, server: HttpServer, loop: asyncio.AbstractEventLoop) -> None:
        self._server = server
        self._limits = server.limits
        self._loop = loop
        self._parser: RequestParser | None = None
        self._transport: asyncio.Transport | None = None
        self._queue: deque[Exchange] = deque()
        self._task: asyncio.Task[None] | None = None
        # Reading is paused while _pauses > 0; _held is the pipelining reason.
        self._pauses = 0
        self._held = False
        self._stopped = False
        self._write_paused = False
        self._writable: asyncio.Future[None] | None = None
        self._close_after = False
        self._closed = False
        self._peer_eof = False
        self._timer = LazyTimer(loop, self._on_timer)

    # ---- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._parser = RequestParser(
            self, self._limits, self._loop, (peer[0], peer[1]) if isinstance(peer, tuple) else None
        )
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self._server._admit(self):
            self._refuse_now(503, "too many connections")
            return
        # Until its first request starts, a connection is held to the head timeout.
        self._timer.arm(IDLE, self._limits.head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._task is None:
            # Otherwise a handler still runs: the server counts it in flight until it ends.
            self._server._forget(self)
        self._timer.cancel()
        if self._parser is not None:
            self._parser.fail_body(TransportError("the client closed the connection mid-body"))
        self._wake_writer()

    def eof_received(self) -> bool | None:
        self._peer_eof = True
        if self._parser is not None:
            # The client's own doing, and it can still read the answer: a Sender fault.
            self._parser.fail_body(
                MalformedMessage(
                    "the request ended before its body did: the client stopped sending "
                    "before the length it declared (or the last chunk)"
                )
            )
        if self._queue:
            # The peer half-closed after sending: answer what it asked, then close.
            self._close_after = True
            return True
        return None

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if self._stopped or parser is None:
            return  # refused, or lingering before the close: drop it
        if self._timer.kind == IDLE:
            self._timer.kind = OFF
        parser.feed(data)
        if parser.in_head and parser.mid_message and self._timer.kind == OFF and not self._queue:
            self._timer.arm(HEAD, self._limits.head_timeout)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writer()

    # ---- called by the RequestParser and the request bodies --------------------------------

    def request_begins(self) -> None:
        if self._queue and not self._held:
            # A pipelined request: read no further until the ones before it are answered.
            self._held = True
            self._pause()

    def dispatch(self, exchange: Exchange) -> None:
        if self._timer.kind == HEAD:
            self._timer.kind = OFF
        self._queue.append(exchange)
        if self._task is None:
            self._task = self._loop.create_task(self._serve_queue())

    def refuse(self, status: int, reason: str) -> None:
        """Answer ``status`` after the requests before this one, then close."""
        self.stop_reading()
        exchange = Exchange(False, False)
        exchange.refusal = (status, reason)
        self.dispatch(exchange)

    def stop_reading(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._pause()

    def send_continue(self, exchange: Exchange) -> None:
        if not exchange.continue_sent and not self._closed:
            exchange.continue_sent = True
            self._write(CONTINUE)

    def pause_body(self) -> None:
        self._pause()

    def resume_body(self) -> None:
        self._resume()

    def abandon_body(self) -> None:
        """Nothing to do now: after the response the rest is drained or the connection closed."""

    # ---- serving ---------------------------------------------------------------------------

    async def _serve_queue(self) -> None:
        queue = self._queue
        try:
            while queue:
                exchange = queue[0]
                if self._held and exchange is queue[-1]:
                    # The request being parsed is next: its body must be readable.
                    self._held = False
                    self._resume()
                keep = await self._serve(exchange)
                if queue and queue[0] is exchange:  # closing empties the queue
                    queue.popleft()
                give_back_after(self._loop, exchange.request, self._limits)
                if not keep or self._closed:
                    request = exchange.request
                    self._close(linger=request is None or not request.body.complete)
                    return
                if self._write_paused:
                    await self._wait_writable()
        except TransportError as exc:
            # Worth a warning when our side broke (the body's source), not when the client left.
            if self._transport is not None and not self._transport.is_closing():
                log.warning("response cut short: %s", exc)
            self._abort_transport()
            return
        finally:
            self._task = None
            if self._closed:
                self._server._forget(self)
        if self._held:
            self._held = False
            self._resume()
        parser = self._parser
        if self._close_after:
            self._close(linger=False)
        elif parser is not None and parser.mid_message:
            self._timer.arm(HEAD, self._limits.head_timeout)
        else:
            self._timer.arm(IDLE, self._limits.keepalive_timeout)

    async def _serve(self, exchange: Exchange) -> bool:
        """Answer one request; whether the connection may carry another."""
        request = exchange.request
        if request is None:
            assert exchange.refusal is not None
            self._write(error_response(*exchange.refusal))
            return False
        try:
            response = await self._server.handler(request)
        except PayloadTooLarge as exc:
            log.info("%s %s: %s", request.method, request.target, exc)
            response = Response.text(413, "payload too large")
        except Exception:
            if self._closed:
                return False  # the client left; what the handler then tripped over is moot
            log.exception("handler failed on %s %s", request.method, request.target)
            response = Response.text(500, "internal server error")
        if self._closed:
            await close_body(response.body)
            return False
        keep = exchange.keep_alive and not self._close_after and self._reusable(exchange)
        try:
            keep = await self._respond(request, response, keep)
        except TransportError:
            raise
        except Exception:
            log.exception("failed writing the response to %s %s", request.method, request.target)
            self._abort_transport()
            await close_body(response.body)
            return False
        body = request.body
        if body.complete:
            body._discard()
            return keep
        if not keep:
            return False
        # The handler left some of the body unread: drop it to keep the connection.
        body._discard()
        assert self._parser is not None
        self._timer.arm(DRAIN, self._limits.head_timeout)
        try:
            return await self._parser.drain(self._limits.max_drain_bytes)
        finally:
            if self._timer.kind == DRAIN:
                self._timer.kind = OFF

    async def _respond(self, request: Request, response: Response, keep: bool) -> bool:
        head, payload, stream, framing, keep = encode_response(request, response, keep)
        if payload and len(payload) <= COALESCE_BYTES:
            self._write(head + payload)  # one send, one segment: the usual SOAP reply
        else:
            self._write(head)
            if payload:
                self._write(payload)
        if stream is not None:
            assert self._transport is not None
            await stream_body(self._transport, stream, framing, self._writable_or_closed)
        return keep

    def _reusable(self, exchange: Exchange) -> bool:
        """Whether the rest of the request body (if any) can be drained to keep the connection."""
        assert exchange.request is not None
        body = exchange.request.body
        if body.complete:
            return True
        if body._error is not None or self._stopped:
            return False
        if exchange.expect_continue and not exchange.continue_sent:
            return False  # the client may never send the body it offered
        length = body.content_length
        return length is None or length - body.received <= self._limits.max_drain_bytes

    # ---- writing ---------------------------------------------------------------------------

    def _write(self, data: Bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    async def _writable_or_closed(self) -> None:
        if self._write_paused:
            await self._wait_writable()
        elif self._closed:
            raise TransportError("the client closed the connection")

    async def _wait_writable(self) -> None:
        while self._write_paused and not self._closed:
            waiter = self._writable = self._loop.create_future()
            await waiter
        if self._closed:
            raise TransportError("the client closed the connection")

    def _wake_writer(self) -> None:
        waiter = self._writable
        if waiter is not None:
            self._writable = None
            if not waiter.done():
                waiter.set_result(None)

    # ---- reading, closing ------------------------------------------------------------------

    def _pause(self) -> None:
        self._pauses += 1
        if self._pauses == 1 and self._transport is not None and not self._closed:
            self._transport.pause_reading()

    def _resume(self) -> None:
        self._pauses -= 1
        if self._pauses == 0 and self._transport is not None and not self._closed:
            self._transport.resume_reading()

    def _refuse_now(self, status: int, reason: str) -> None:
        self.stop_reading()
        self._write(error_response(status, reason))
        self._close(linger=True)

    def _close(self, *, linger: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._queue.clear()
        if linger and not self._peer_eof and transport.can_write_eof():
            # Half-close, and read and drop what the peer still sends for a moment: closing
            # with unread input would reset the connection, which can destroy our answer
            # before the peer has read it. The peer's EOF or the timer ends it.
            self._stopped = True
            if self._pauses:
                self._pauses = 0
                transport.resume_reading()
            try:
                transport.write_eof()
            except OSError:  # the peer is gone already
                transport.abort()
                return
            self._timer.arm(LINGER, _LINGER_SECONDS)
            return
        transport.close()

    def _abort_transport(self) -> None:
        self._queue.clear()
        if self._transport is not None:
            self._transport.abort()

    def peer_gone(self) -> bool:
        """The client closed its side (as nginx judges a client abort: a half-close counts)."""
        return self._closed or self._peer_eof

    @property
    def busy(self) -> bool:
        """Serving a request, or in the middle of receiving one."""
        parser = self._parser
        return self._task is not None or (
            parser is not None and (parser.mid_message or parser.draining)
        )

    @property
    def closing(self) -> bool:
        """Closed, or half-closed and only reading what the peer still sends."""
        transport = self._transport
        return (
            self._closed
            or transport is None
            or transport.is_closing()
            or self._timer.kind == LINGER
        )

    def shutdown(self) -> None:
        """The server is closing: every response from now on closes the connection."""
        self._close_after = True

    def close_idle(self) -> None:
        """Close now if idle: half-close, so a request crossing our FIN is no reset."""
        if not self.busy:
            self._close(linger=True)

    def abort(self) -> asyncio.Task[None] | None:
        """Cut the connection now; returns the handler task to wait for, if one runs. One
        already half-closed (lingering) is closed, not reset: its peer has our FIN."""
        if self._timer.kind == LINGER and self._transport is not None:
            self._queue.clear()
            self._transport.close()
        else:
            self._abort_transport()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            return task
        return None

    def _on_timer(self, kind: int) -> None:
        if self._closed:
            return
        if kind == HEAD:
            self._refuse_now(408, "request head not received in time")
        elif kind == DRAIN and self._parser is not None:
            self._parser.fail_body(TransportError("the rest of the body did not come"))
        elif self._transport is not None:
            self._transport.close()
