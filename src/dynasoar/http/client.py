"""HTTP/1.1 client: a pool of keep-alive connections per origin (plain sockets, no proxies)."""

from __future__ import annotations

import asyncio
import os
import ssl
import urllib.parse
from collections.abc import AsyncIterable
from typing import NamedTuple

from dynasoar.errors import TransportError, Unreachable
from dynasoar.http.body import BodyReader
from dynasoar.http.client_connection import ClientConnection, ClientResponse, StaleConnection
from dynasoar.http.headers import HeadersLike
from dynasoar.http.wire import Bytes, encode_request_head

__all__ = ["ClientResponse", "ConnectionPool"]

_BYTES = (bytes, bytearray, memoryview)


class _Target(NamedTuple):
    origin: tuple[str, int]
    host_field: bytes
    request_target: bytes
    tls: bool


class ConnectionPool:
    """Keep-alive HTTP/1.1 connections, at most ``max_idle_per_origin`` idle per host:port.

    Shared by tasks of one event loop. ``read_timeout`` bounds each wait for response
    body bytes; ``idle_timeout`` drops connections idle for longer (servers close them).
    """

    def __init__(
        self,
        *,
        max_idle_per_origin: int = 32,
        connect_timeout: float = 5.0,
        read_timeout: float | None = 60.0,
        idle_timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``ssl_context`` verifies https:// peers (default: the system's trusted CAs)."""
        self.max_idle_per_origin = max_idle_per_origin
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self._ssl_context = ssl_context
        #: Connections opened so far (to see reuse at work).
        self.connections_opened = 0
        self._idle: dict[tuple[str, int], list[ClientConnection]] = {}
        self._targets: dict[str, _Target] = {}
        self._closed = False

    async def request(
        self,
        url: str,
        method: str = "POST",
        *,
        headers: HeadersLike = (),
        body: Bytes | AsyncIterable[bytes] = b"",
        timeout: float,
    ) -> ClientResponse:
        """Send one request; returns once the response head is in.

        ``timeout`` bounds connecting, sending the body and receiving the response head.
        A bytes body is sent with a Content-Length; an iterable one with the Content-Length
        ``headers`` declare, else chunked. Failures raise TransportError.
        """
        if self._closed:
            raise TransportError("connection pool closed")
        target = self._targets.get(url) or self._parse(url)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if isinstance(body, BodyReader) and body.complete:
            body = body._take_all()  # a relayed body that has fully arrived: replayable
        payload: Bytes | None = None
        stream: AsyncIterable[bytes] | None = None
        if isinstance(body, _BYTES):
            payload = body
        else:
            stream = body
        head, framing = encode_request_head(
            method, target.request_target, target.host_field, headers, payload
        )
        exchange = (head, payload, stream, framing, deadline, method == "HEAD")
        conn = self._take_idle(target.origin, loop.time())
        if conn is not None:
            try:
                return await conn.exchange(*exchange)
            except StaleConnection as exc:
                if payload is None:
                    raise TransportError(
                        f"{method} {url}: the pooled connection was closed by the peer "
                        "and the streamed body cannot be sent again"
                    ) from exc
        conn = await self._connect(target, deadline, loop)
        try:
            return await conn.exchange(*exchange)
        except StaleConnection as exc:  # not raised for a fresh connection; for the types
            raise TransportError(f"{method} {url}: connection closed") from exc

    async def close(self) -> None:
        """Close idle connections; those in use close when their exchange ends."""
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()

    @property
    def idle_count(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    def _parse(self, url: str) -> _Target:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http:// or https:// URL: {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        path = urllib.parse.quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
        if parts.query:
            path += "?" + urllib.parse.quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
        host_field = parts.netloc.rpartition("@")[2]
        target = _Target(
            (parts.hostname, port), host_field.encode("idna"), path.encode("ascii"), tls
        )
        if len(self._targets) >= 1024:
            self._targets.clear()
        self._targets[url] = target
        return target

    def _take_idle(self, origin: tuple[str, int], now: float) -> ClientConnection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()  # the most recently used: least likely to have been dropped
            if not conn.usable:
                continue
            if now - conn.idle_since > self.idle_timeout:
                # Newest first, so every connection left is older still.
                conn.close()
                for old in idle:
                    old.close()
                idle.clear()
                return None
            return conn
        return None

    async def _connect(
        self, target: _Target, deadline: float, loop: asyncio.AbstractEventLoop
    ) -> ClientConnection:
        host, port = target.origin
        try:
            async with asyncio.timeout_at(min(deadline, loop.time() + self.connect_timeout)):
                tls = self._tls(target)
                _, conn = await loop.create_connection(
                    lambda: ClientConnection(self, target.origin, loop),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls is not None else None,
                )
        except TimeoutError as exc:
            raise TransportError(f"connecting to {host}:{port} timed out") from exc
        except ssl.SSLError as exc:
            raise TransportError(f"TLS with {host}:{port} failed: {exc}") from exc
        except OSError as exc:
            why = (os.strerror(exc.errno) if exc.errno else str(exc)).lower()
            raise Unreachable(f"nothing answers at {host}:{port} ({why})", why=why) from exc
        self.connections_opened += 1
        return conn

    def _tls(self, target: _Target) -> ssl.SSLContext | None:
        if not target.tls:
            return None
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _release(self, conn: ClientConnection) -> None:
        if self._closed or conn.dead:
            conn.close()
            return
        idle = self._idle.setdefault(conn.origin, [])
        if len(idle) >= self.max_idle_per_origin:
            conn.close()
            return
        conn.reused = True
        conn.idle_since = conn.loop.time()
        idle.append(conn)

    def _forget(self, conn: ClientConnection) -> None:
        idle = self._idle.get(conn.origin)
        if idle and conn in idle:
            idle.remove(conn)
