"""dynasoar's HTTP/1.1 layer: a streaming server and a pooled client on asyncio + httptools.

Hand-rolled on ``asyncio.Protocol`` because the Service Provider's relay is the hot path
(see PERFORMANCE.md); :func:`run` / :func:`new_event_loop` pick uvloop when it is installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from dynasoar.http.body import BodyReader
from dynasoar.http.client import ClientResponse, ConnectionPool
from dynasoar.http.headers import Headers, HeadersLike
from dynasoar.http.server import Handler, HttpServer, Request, Response, ServerLimits

__all__ = [
    "BodyReader",
    "ClientResponse",
    "ConnectionPool",
    "Handler",
    "Headers",
    "HeadersLike",
    "HttpServer",
    "Request",
    "Response",
    "ServerLimits",
    "new_event_loop",
    "run",
    "uvloop_available",
]

_T = TypeVar("_T")

try:
    import uvloop as _uvloop
except ImportError:  # not on every platform; asyncio's own loop works, only slower
    _uvloop = None  # type: ignore[assignment]


def uvloop_available() -> bool:
    return _uvloop is not None


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop event loop when uvloop is installed, else asyncio's default one."""
    if _uvloop is not None:
        return _uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T:
    """``asyncio.run`` on the loop :func:`new_event_loop` makes."""
    with asyncio.Runner(loop_factory=new_event_loop, debug=debug) as runner:
        return runner.run(main)
