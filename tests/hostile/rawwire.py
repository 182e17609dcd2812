"""HTTP/1.1 over a bare socket, for the cases http.client would refuse to send: lying lengths,
smuggling, broken chunking, oversized heads, trickled bytes. Every read has a deadline."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

from integration.wire import Reply

Address = tuple[str, int]


@dataclass
class Exchange:
    """What came back on one connection: the responses in order, and how it ended."""

    replies: list[Reply] = field(default_factory=list)
    closed: bool = False  # the server closed (or reset) the connection
    leftover: bytes = b""  # bytes that did not make a whole response

    @property
    def first(self) -> Reply:
        assert self.replies, f"no response at all (leftover {self.leftover[:200]!r})"
        return self.replies[0]


def request(
    path: str,
    body: bytes = b"",
    *,
    method: str = "POST",
    content_type: str | None = "text/xml; charset=utf-8",
    length: int | str | None = "auto",
    headers: list[tuple[str, str]] | None = None,
) -> bytes:
    """A request head (and body) exactly as given; ``length="auto"`` is the true length."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    if length == "auto":
        length = len(body)
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{name}: {value}" for name, value in headers or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def send(
    address: Address,
    data: bytes,
    *,
    half_close: bool = False,
    expect: int = 1,
    timeout: float = 15.0,
) -> Exchange:
    """Send ``data`` on a fresh connection and read until ``expect`` responses arrived and
    the server closed, or nothing more came for a moment, or ``timeout`` ran out."""
    sock = socket.create_connection(address, timeout=timeout)
    try:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may refuse (and close) before it has read everything
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return _read(sock, expect, time.monotonic() + timeout)
    finally:
        sock.close()


def _read(sock: socket.socket, expect: int, deadline: float) -> Exchange:
    out = Exchange()
    buffer = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        # Once every expected response is in, wait only briefly for the close (or more).
        sock.settimeout(min(remaining, 0.5 if len(out.replies) >= expect else remaining))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if len(out.replies) >= expect:
                break
            continue
        except ConnectionResetError:
            out.closed = True
            break
        if not chunk:
            out.closed = True
            break
        buffer += chunk
        while (parsed := _parse(buffer)) is not None:
            reply, buffer = parsed
            out.replies.append(reply)
    out.leftover = buffer
    return out


def _parse(buffer: bytes) -> tuple[Reply, bytes] | None:
    """One whole response off the front of ``buffer``, or None if it is not all there."""
    end = buffer.find(b"\r\n\r\n")
    if end == -1:
        return None
    lines = buffer[:end].decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    rest = buffer[end + 4 :]
    if 100 <= status < 200:
        return _parse(rest)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while True:
            eol = rest.find(b"\r\n")
            if eol == -1:
                return None
            size = int(rest[:eol].split(b";")[0], 16)
            if len(rest) < eol + 2 + size + 2:
                return None
            body += rest[eol + 2 : eol + 2 + size]
            rest = rest[eol + 2 + size + 2 :]
            if size == 0:
                break
        return Reply(status, headers, body), rest
    length = int(headers.get("content-length", "0"))
    if len(rest) < length:
        return None
    return Reply(status, headers, rest[:length]), rest[length:]


def trickle_head(
    address: Address, every: float, deadline: float, stop: threading.Event
) -> tuple[Exchange, float]:
    """A slow-loris: a request line, then a header byte now and then, never the end of the
    head. Returns what the server answered and how long it put up with it."""
    sock = socket.create_connection(address, timeout=5.0)
    started = time.monotonic()
    try:
        sock.sendall(b"POST /services/Echo HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        sock.settimeout(every)
        buffer = b""
        while time.monotonic() < deadline and not stop.is_set():
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                try:
                    sock.sendall(b"z")
                except (BrokenPipeError, ConnectionResetError):
                    break
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            buffer += chunk
        took = time.monotonic() - started
        exchange = Exchange(closed=True)
        while (parsed := _parse(buffer)) is not None:
            reply, buffer = parsed
            exchange.replies.append(reply)
        exchange.leftover = buffer
        return exchange, took
    finally:
        sock.close()
