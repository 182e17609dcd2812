"""Helpers shared by the HTTP layer tests (servers on 127.0.0.1 with port 0)."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import AsyncIterator

from dynasoar.http import Handler, HttpServer, ServerLimits


@contextlib.asynccontextmanager
async def serving(
    handler: Handler, limits: ServerLimits | None = None
) -> AsyncIterator[tuple[HttpServer, tuple[str, int]]]:
    server = HttpServer(handler, limits=limits)
    address = await server.start("127.0.0.1", 0)
    try:
        yield server, address
    finally:
        await server.close(grace=1.0)


def url(address: tuple[str, int], path: str = "/") -> str:
    return f"http://{address[0]}:{address[1]}{path}"


def rss_bytes() -> int:
    """Resident set size of this process now (not the peak)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def pattern(total: int, piece: int = 64 * 1024) -> AsyncIterator[bytes]:
    """``total`` bytes of a repeating pattern, made piece by piece (never held whole)."""
    block = bytes(range(256)) * (piece // 256)
    sent = 0
    while sent < total:
        chunk = block[: min(piece, total - sent)]
        sent += len(chunk)
        yield chunk


def pattern_digest(total: int, piece: int = 64 * 1024) -> str:
    block = bytes(range(256)) * (piece // 256)
    digest = hashlib.sha256()
    for start in range(0, total, piece):
        digest.update(block[: min(piece, total - start)])
    return digest.hexdigest()
