"""Bytes on the wire: message heads, body framing and streaming a body out with flow control."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING

from dynasoar.errors import TransportError
from dynasoar.http.body import BodyReader
from dynasoar.http.headers import HAS_DATE, HAS_HOST, WANTS_CLOSE, HeadersLike, encode_fields

if TYPE_CHECKING:
    from dynasoar.http.server import Request, Response

#: Framing of a streamed body, besides a declared length (>= 0).
CHUNKED = -1
UNTIL_CLOSE = -2
#: The body must not be sent (HEAD, 204, 304): the iterable is only closed.
DISCARD = -3

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

#: Bodies up to this size are copied into the head's buffer: one write, one segment.
COALESCE_BYTES = 64 * 1024
#: A streamed body gives other tasks a turn at least once per this many bytes.
_YIELD_EVERY = 1024 * 1024

_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}
_BYTES = (bytes, bytearray, memoryview)
Bytes = bytes | bytearray | memoryview


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        if not 100 <= status <= 999:
            raise ValueError(f"invalid HTTP status {status}")
        line = b"HTTP/1.1 %d \r\n" % status
    return line


class _DateField:
    """The Date field, formatted once per second rather than per response."""

    second = 0
    line = b""

    @classmethod
    def get(cls) -> bytes:
        now = int(time.time())
        if now != cls.second:
            cls.second = now
            cls.line = b"Date: %s\r\n" % formatdate(now, usegmt=True).encode()
        return cls.line


def encode_response(
    request: Request, response: Response, keep: bool
) -> tuple[bytes, Bytes, AsyncIterable[bytes] | None, int, bool]:
    """Frame a response.

    Returns the bytes to write first, a bytes body to write after them (b"" when it was
    coalesced into the first), the iterable to stream after that (or None) with its
    framing, and whether the connection stays open afterwards.
    """
    status = response.status
    fields, declared, flags = encode_fields(response.headers)
    if flags & WANTS_CLOSE:
        keep = False
    body = response.body
    if isinstance(body, BodyReader) and body.complete:
        # A relayed body that has fully arrived already: send it with a length, at once.
        body = body._take_all()
    no_body = status < 200 or status == 204 or status == 304
    parts: list[Bytes] = [status_line(status)]
    if not flags & HAS_DATE:
        parts.append(_DateField.get())
    parts.append(fields)
    payload: Bytes = b""
    stream: AsyncIterable[bytes] | None = None
    framing = DISCARD
    if isinstance(body, _BYTES):
        if not no_body:
            parts.append(b"Content-Length: %d\r\n" % len(body))
            if request.method != "HEAD":
                payload = body
    else:
        stream = body
        if no_body or request.method == "HEAD":
            if declared is not None and not no_body:
                parts.append(b"Content-Length: %d\r\n" % declared)
        elif declared is not None:
            framing = declared
            parts.append(b"Content-Length: %d\r\n" % declared)
        elif request.http_version == "1.1":
            framing = CHUNKED
            parts.append(b"Transfer-Encoding: chunked\r\n")
        else:
            framing = UNTIL_CLOSE
            keep = False
    if not keep:
        parts.append(b"Connection: close\r\n")
    elif request.http_version == "1.0":
        parts.append(b"Connection: keep-alive\r\n")
    parts.append(b"\r\n")
    if payload and len(payload) <= COALESCE_BYTES:
        parts.append(payload)
        payload = b""
    return b"".join(parts), payload, stream, framing, keep


def error_response(status: int, reason: str) -> bytes:
    """A complete short plain-text response that closes the connection."""
    text = reason.encode() + b"\n"
    return b"".join(
        (
            status_line(status),
            _DateField.get(),
            b"Content-Type: text/plain; charset=utf-8\r\n",
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(text),
            text,
        )
    )


def encode_request_head(
    method: str, target: bytes, host: bytes, headers: HeadersLike, body: Bytes | None
) -> tuple[bytes, int]:
    """Frame a request: the head, and the framing of its body.

    ``body`` is the whole body when it is bytes, None when it will be streamed: then the
    Content-Length the caller declared is used, or chunked.
    """
    fields, declared, flags = encode_fields(headers)
    parts = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    if not flags & HAS_HOST:
        parts += (b"Host: ", host, b"\r\n")
    parts.append(fields)
    if body is not None:
        framing = len(body)
        if framing or method not in _NO_BODY_METHODS:
            parts.append(b"Content-Length: %d\r\n" % framing)
    elif declared is not None:
        framing = declared
        parts.append(b"Content-Length: %d\r\n" % declared)
    else:
        framing = CHUNKED
        parts.append(b"Transfer-Encoding: chunked\r\n")
    if flags & WANTS_CLOSE:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts), framing


_NO_BODY_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})


async def stream_body(
    transport: asyncio.WriteTransport,
    body: AsyncIterable[bytes],
    framing: int,
    writable: Callable[[], Awaitable[None]],
) -> None:
    """Write ``body`` with ``framing``.

    ``writable`` is awaited before each chunk: it waits out a full socket buffer and
    raises when the exchange is over (the peer left, or answered). Raises ValueError when
    the body does not match a declared length (the connection must then be aborted: the
    peer cannot tell where the message ends).
    """
    if framing == DISCARD:
        await close_body(body)
        return
    sent = 0
    unyielded = 0
    finished = False
    try:
        async for chunk in body:
            if not chunk:
                continue
            await writable()
            if transport.is_closing():
                raise TransportError("the connection closed while sending a body")
            sent += len(chunk)
            if framing == CHUNKED:
                transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
            elif framing >= 0 and sent > framing:
                raise ValueError(f"body longer than its declared {framing} bytes")
            else:
                transport.write(chunk)
            unyielded += len(chunk)
            if unyielded >= _YIELD_EVERY:
                # A source that never waits, written to a socket that never fills (or
                # that died unnoticed), would otherwise hold the event loop for good.
                unyielded = 0
                await asyncio.sleep(0)
        finished = True
    finally:
        if not finished:
            await close_body(body)
    if transport.is_closing():
        raise TransportError("the connection closed while sending a body")
    if framing == CHUNKED:
        transport.write(b"0\r\n\r\n")
    elif framing >= 0 and sent != framing:
        raise ValueError(f"body of {sent} bytes, {framing} declared")


async def close_body(body: Bytes | AsyncIterable[bytes]) -> None:
    """Release a body that will not be sent (a relayed one holds its upstream connection)."""
    aclose: Callable[[], Awaitable[object]] | None = getattr(body, "aclose", None)
    if aclose is not None:
        await aclose()
