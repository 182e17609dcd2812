"""Turn the bytes of one server connection into requests (httptools callbacks), within limits."""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING

import httptools

from dynasoar.errors import PayloadTooLarge, TransportError
from dynasoar.http.body import BodyReader
from dynasoar.http.headers import Headers, RawFields
from dynasoar.http.server import Request, ServerLimits

if TYPE_CHECKING:
    from dynasoar.http.connection import ServerConnection

_METHODS = {m.encode(): m for m in ("GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH")}
_EMPTY_BODY = BodyReader(0)


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; the answer is in ``refusal``."""


class Exchange:
    """A parsed request waiting for, or getting, its response; or a refusal to write."""

    __slots__ = ("continue_sent", "expect_continue", "keep_alive", "refusal", "request")

    def __init__(self, keep_alive: bool, expect_continue: bool) -> None:
        self.request: Request | None = None
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.continue_sent = False
        self.refusal: tuple[int, str] | None = None


class RequestParser:
    """httptools' callbacks for one connection: builds each Request and feeds its body.

    Each request is handed to ``conn.dispatch`` as soon as its head is complete, so a
    handler can stream the body while it arrives. Limit violations and parse errors go to
    ``conn.refuse`` (an answer, then close) or, once the head was dispatched, fail the body.
    """

    def __init__(
        self,
        conn: ServerConnection,
        limits: ServerLimits,
        loop: asyncio.AbstractEventLoop,
        peer: tuple[str, int] | None,
    ) -> None:
        self._conn = conn
        self._limits = limits
        self._loop = loop
        self._peer = peer
        self._parser = httptools.HttpRequestParser(self)
        #: Between a request's first byte and the end of its head / of its body.
        self.in_head = True
        self.mid_message = False
        # Bytes read while in a head: whole reads, so it can overshoot (see on_headers_complete).
        self._head_size = 0
        self._url = b""
        self._fields: RawFields = []
        self._length: int | None = 0
        self._expect: bytes | None = None
        self._coding: bytes | None = None  # Transfer-Encoding, as sent
        self._refusal: tuple[int, str] | None = None
        # An upgrade request's body follows a synthetic head (see _resume_after_upgrade).
        self._resync = False
        #: The body being received.
        self.body: BodyReader | None = None
        self._drain_left = 0
        self._drained: asyncio.Future[bool] | None = None

    def feed(self, data: bytes) -> None:
        if self.in_head:
            self._head_size += len(data)
        while True:
            try:
                self._parser.feed_data(data)
                break
            except httptools.HttpParserUpgrade as exc:
                data = self._resume_after_upgrade(data, exc.args[0])
                if not data:
                    break
            except httptools.HttpParserError:
                self._failed()
                return
        if self.in_head and self.mid_message and self._head_size > self._limits.max_head_bytes:
            self._conn.refuse(431, "request head too large")

    def fail_body(self, error: BaseException) -> None:
        """The connection broke: the body being received will not complete."""
        body = self.body
        if body is not None:
            self.body = None
            body._fail(error)
        self._end_drain(False)

    # ---- dropping an unread body -------------------------------------------------------------

    @property
    def draining(self) -> bool:
        return self._drained is not None

    async def drain(self, limit: int) -> bool:
        """Read and drop the rest of the body being received; False past ``limit`` bytes."""
        if self.body is None:
            return False  # it broke off already
        self._drain_left = limit
        drained: asyncio.Future[bool] = self._loop.create_future()
        self._drained = drained
        try:
            return await drained
        finally:
            self._drained = None

    def _end_drain(self, ok: bool) -> None:
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(ok)

    # ---- httptools callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.mid_message = True
        self._url = b""
        self._fields = []
        self._length = 0
        self._expect = None
        self._coding = None
        if not self._resync:
            self._conn.request_begins()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        fields = self._fields
        fields.append((name, value))
        size = len(name)
        if size == 14 and name.lower() == b"content-length":
            self._length = int(value)
        elif size == 17 and name.lower() == b"transfer-encoding":
            self._length = None
            self._coding = value
        elif size == 6 and name.lower() == b"expect":
            self._expect = value.lower()
        if len(fields) > self._limits.max_headers:
            self._refusal = (431, "too many header fields")
            raise _Refused

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self._resync:
            self._resync = False
            return
        parser = self._parser
        limits = self._limits
        length = self._length
        if self._head_size > limits.max_head_bytes and _head_bytes(self._url, self._fields) > (
            limits.max_head_bytes
        ):
            self._refuse(431, "request head too large")
        if self._coding is not None and self._coding.strip().lower() != b"chunked":
            # The parser only fails such a request after this callback, with its head already
            # dispatched: refuse it here. Chunked not last: no length (RFC 9112 6.3, 400);
            # chunked after another coding: one we do not decode (RFC 9112 6.1, 501).
            if self._coding.rpartition(b",")[2].strip().lower() == b"chunked":
                self._refuse(501, "unsupported transfer coding")
            self._refuse(400, "the request body has no determinable length")
        if length is not None and limits.max_body_bytes is not None:
            if length > limits.max_body_bytes:
                self._refuse(413, "request body too large")
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("ascii")
        version = parser.get_http_version()
        expect_continue = False
        if self._expect is not None:
            if self._expect != b"100-continue":
                self._refuse(417, "unsupported expectation")
            expect_continue = version == "1.1" and length != 0
        if parser.should_upgrade():
            # We ignore Upgrade offers (RFC 9110 section 7.8); CONNECT would need a tunnel.
            if method == "CONNECT":
                self._refuse(405, "CONNECT is not supported")
            self._resync = length != 0
        exchange = Exchange(parser.should_keep_alive(), expect_continue)
        if length == 0:
            body = _EMPTY_BODY
        else:
            body = BodyReader(
                length,
                loop=self._loop,
                flow=self._conn,
                read_timeout=limits.body_timeout,
                high_water=limits.high_water,
                low_water=limits.low_water,
                on_first_wait=(
                    functools.partial(self._conn.send_continue, exchange)
                    if expect_continue
                    else None
                ),
            )
            self.body = body
        target = self._url.decode("latin-1")
        if target[:1] == "/":
            path, _, query = target.partition("?")
        else:
            path, query = _split_target(target)
        headers = Headers.from_raw(self._fields)
        exchange.request = Request(
            method, target, path, query, headers, body, self._peer, version, self._conn.peer_gone
        )
        self._conn.dispatch(exchange)

    def on_body(self, data: bytes) -> None:
        body = self.body
        if self._drained is not None:
            self._drain_left -= len(data)
            if self._drain_left < 0:
                self._end_drain(False)
        elif body is not None:
            body._feed(data)
            limit = self._limits.max_body_bytes
            if limit is not None and body.received > limit:
                # Only a chunked body gets here (a declared length was checked up front).
                self.fail_body(PayloadTooLarge(f"request body over {limit} bytes"))
                self._conn.stop_reading()

    def on_message_complete(self) -> None:
        if self._resync:
            return  # the parser skipped an upgrade request's body; it comes next
        self.mid_message = False
        self.in_head = True
        self._head_size = 0
        body = self.body
        if body is not None:
            self.body = None
            body._feed_eof()
        self._end_drain(True)

    # ---- failures ------------------------------------------------------------------------------

    def _refuse(self, status: int, reason: str) -> None:
        self._refusal = (status, reason)
        raise _Refused

    def _failed(self) -> None:
        body = self.body
        if body is not None:
            # The head was fine and its request dispatched: the body is the broken part.
            self.fail_body(TransportError("malformed request body"))
            self._conn.stop_reading()
            return
        self._conn.refuse(*(self._refusal or (400, "malformed request")))

    def _resume_after_upgrade(self, data: bytes, offset: int) -> bytes:
        """The parser stopped after a request offering Upgrade: carry on in HTTP/1.1.

        httptools skips the body of such a request. When it has one, a synthetic head with
        the same framing is fed first, so that the parser reads the body which follows into
        the request's reader (``_resync`` makes the callbacks swallow that head).
        """
        if self._resync:
            length = self.body.content_length if self.body is not None else 0
            if length is None:
                synthetic = b"PUT / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
            else:
                synthetic = b"PUT / HTTP/1.1\r\ncontent-length: %d\r\n\r\n" % length
            self._parser.feed_data(synthetic)
        return data[offset:]


def _head_bytes(url: bytes, fields: RawFields) -> int:
    return len(url) + sum(len(name) + len(value) + 4 for name, value in fields)


def _split_target(target: str) -> tuple[str, str]:
    """Path and query of an absolute-form ("http://h/p?q") or asterisk-form target."""
    if target == "*":
        return "*", ""
    parsed = httptools.parse_url(target.encode("latin-1"))
    return (parsed.path or b"/").decode("latin-1"), (parsed.query or b"").decode("latin-1")
