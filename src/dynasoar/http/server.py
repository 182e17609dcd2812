"""The HTTP/1.1 server: listening, the request/response types handlers see, graceful close."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl as ssl_module
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dynasoar.http.body import HIGH_WATER, LOW_WATER, BodyReader
from dynasoar.http.headers import Headers, HeadersLike

if TYPE_CHECKING:
    from dynasoar.http.connection import ServerConnection


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Bounds on what one peer can make the server hold or wait for."""

    #: Request line + header fields, in bytes (431 above it).
    max_head_bytes: int = 64 * 1024
    #: Header fields per request (431 above it).
    max_headers: int = 100
    #: Seconds from a request's first byte to the end of its head (408; slow-loris guard).
    head_timeout: float = 10.0
    #: Seconds an idle keep-alive connection is kept open.
    keepalive_timeout: float = 75.0
    #: Open connections; further ones are answered 503 and closed.
    max_connections: int = 1024
    #: Request bodies above this are refused with 413: up front when the length is declared,
    #: else reading the body raises PayloadTooLarge (None: handlers decide, per read_all).
    max_body_bytes: int | None = None
    #: Seconds a handler may wait for the next bytes of a request body (None: forever).
    body_timeout: float | None = 60.0
    #: Unread request body the server reads and drops to keep a connection; above, it closes.
    max_drain_bytes: int = 1024 * 1024
    #: Buffered request-body bytes above which the socket stops being read, and below
    #: which it is read again.
    high_water: int = HIGH_WATER
    low_water: int = LOW_WATER
    #: After a request whose body was at least this big, free heap pages go back to the
    #: system (see :mod:`dynasoar.http.memory`); None: never.
    give_back_after: int | None = 1024 * 1024

    def __post_init__(self) -> None:
        if not 0 <= self.low_water <= self.high_water:
            raise ValueError("ServerLimits needs 0 <= low_water <= high_water")
        if min(self.max_head_bytes, self.max_headers, self.max_connections) <= 0:
            raise ValueError("ServerLimits sizes and counts must be positive")


@dataclass(slots=True)
class Request:
    """One request as a handler sees it. ``path`` and ``query`` are not percent-decoded."""

    method: str
    target: str
    path: str
    query: str
    headers: Headers
    body: BodyReader
    client: tuple[str, int] | None
    http_version: str
    #: Whether the client has gone (closed its side of the connection, even if only half):
    #: an answer would most likely reach no one.
    disconnected: Callable[[], bool] = field(default=lambda: False)


@dataclass(slots=True)
class Response:
    """A handler's answer.

    A bytes body is sent with a Content-Length. An iterable body is streamed: with the
    Content-Length the headers declare, if any, else chunked (or, to an HTTP/1.0 peer,
    delimited by closing the connection). Framing and hop-by-hop fields in ``headers``
    (Connection, Transfer-Encoding, Content-Length of a bytes body ...) are the server's
    business and are replaced; ``Connection: close`` is honoured.
    """

    status: int
    headers: HeadersLike = field(default_factory=list)
    body: bytes | AsyncIterable[bytes] = b""

    @classmethod
    def text(cls, status: int, text: str) -> Response:
        return cls(status, [("Content-Type", "text/plain; charset=utf-8")], text.encode())


Handler = Callable[[Request], Awaitable[Response]]


class HttpServer:
    """Serves ``handler`` over HTTP/1.1 on one listening socket."""

    def __init__(self, handler: Handler, *, limits: ServerLimits | None = None) -> None:
        self.handler = handler
        self.limits = limits or ServerLimits()
        self.closing = False
        #: Connections accepted so far (to see keep-alive at work).
        self.connections_accepted = 0
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[ServerConnection] = set()
        self._address: tuple[str, int] | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("server not started")
        return self._address

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def start(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl: ssl_module.SSLContext | None = None,
        *,
        sock: socket.socket | None = None,
    ) -> tuple[str, int]:
        """Listen on ``host:port`` (port 0 picks a free one), or accept on ``sock``, a socket
        already listening (bound by the caller or inherited); over TLS when ``ssl`` is given.
        Returns the bound address."""
        # Imported here: the connection module builds the types defined above.
        from dynasoar.http.connection import ServerConnection

        loop = asyncio.get_running_loop()
        factory = functools.partial(ServerConnection, self, loop)
        handshake = self.limits.head_timeout if ssl is not None else None
        if sock is not None:
            self._server = await loop.create_server(
                factory, sock=sock, ssl=ssl, ssl_handshake_timeout=handshake
            )
        else:
            self._server = await loop.create_server(
                factory,
                host,
                port,
                backlog=1024,
                reuse_address=True,
                ssl=ssl,
                ssl_handshake_timeout=handshake,
            )
        name = self._server.sockets[0].getsockname()
        self._address = (name[0], name[1])
        return self._address

    def stop_accepting(self) -> None:
        """Accept no more connections. The listening socket closes with it, unless the caller
        holds another descriptor of it (then new connections wait in its backlog)."""
        self.closing = True
        if self._server is not None:
            self._server.close()

    @property
    def busy(self) -> bool:
        """Whether any connection is serving a request or in the middle of receiving one."""
        return any(conn.busy for conn in self._connections)

    async def drain(self, grace: float, quiet: float = 1.0) -> bool:
        """Let the open connections finish what they serve; every response from now on says
        ``Connection: close``. A connection that stays idle is closed once no request has been
        in flight anywhere for ``quiet`` seconds (its client may still be about to send one,
        which is then answered). Returns whether every connection was gone within ``grace``."""
        self.closing = True
        for conn in list(self._connections):
            conn.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        calm_since: float | None = None
        while any(conn.busy or not conn.closing for conn in self._connections):
            now = loop.time()
            if now >= deadline:
                return False
            if self.busy:
                calm_since = None
            elif calm_since is None:
                calm_since = now
            elif now - calm_since >= quiet:
                for conn in list(self._connections):
                    conn.close_idle()
            await asyncio.sleep(min(0.05, deadline - now))
        return True

    async def abort(self) -> None:
        """Cut every connection still open and wait for its handler to end."""
        tasks = [task for conn in list(self._connections) if (task := conn.abort()) is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        server = self._server
        if server is not None:
            # Bounded: what wait_closed waits for differs between Python versions and loops.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    async def close(self, grace: float = 5.0) -> None:
        """Stop accepting; let in-flight requests finish within ``grace`` s, then cut the rest."""
        self.stop_accepting()
        if self._server is None:
            return
        await self.drain(grace, quiet=0.0)
        await self.abort()

    # ---- connection bookkeeping (called by ServerConnection) -----------------------------

    def _admit(self, conn: ServerConnection) -> bool:
        self._connections.add(conn)
        self.connections_accepted += 1
        return not self.closing and len(self._connections) <= self.limits.max_connections

    def _forget(self, conn: ServerConnection) -> None:
        self._connections.discard(conn)
