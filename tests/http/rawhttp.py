"""A deliberately separate, minimal HTTP/1.1 peer for tests: raw bytes over asyncio streams.

It shares no code with dynasoar.http, so the tests check the wire, not the implementation
against itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    chunked: bool = False

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None


async def connect(address: tuple[str, int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(address[0], address[1], limit=1 << 20)


async def read_head(reader: asyncio.StreamReader) -> RawResponse:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    _, status, reason = ([*lines[0].split(" ", 2), ""])[:3]
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return RawResponse(int(status), reason, headers)


async def read_response(
    reader: asyncio.StreamReader, *, head_request: bool = False, skip_interim: bool = True
) -> RawResponse:
    """One response; close-delimited bodies are read to EOF."""
    while True:
        response = await read_head(reader)
        if not (skip_interim and 100 <= response.status < 200):
            break
    if head_request or response.status in (204, 304):
        return response
    length = response.header("content-length")
    te = response.header("transfer-encoding")
    if te is not None and "chunked" in te.lower():
        response.chunked = True
        parts = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        response.body = b"".join(parts)
    elif length is not None:
        response.body = await reader.readexactly(int(length))
    else:
        response.body = await reader.read()
    return response


async def exchange(address: tuple[str, int], raw: bytes) -> RawResponse:
    """Send raw bytes on a fresh connection and read one response."""
    reader, writer = await connect(address)
    try:
        writer.write(raw)
        await writer.drain()
        return await read_response(reader)
    finally:
        writer.close()


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    """True when the peer has closed (EOF or reset) with nothing more to read."""
    try:
        data = await reader.read(65536)
    except ConnectionError:
        return True
    return data == b""


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


@dataclass
class RawRequest:
    request_line: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None


async def read_request(reader: asyncio.StreamReader) -> RawRequest | None:
    """One request (Content-Length or chunked body); None at a clean EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    request = RawRequest(lines[0], headers, b"")
    te = request.header("transfer-encoding")
    if te and "chunked" in te.lower():
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        request.body = b"".join(parts)
    elif request.header("content-length"):
        request.body = await reader.readexactly(int(request.header("content-length") or 0))
    return request


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(script: Script) -> AsyncIterator[tuple[tuple[str, int], dict[str, int]]]:
    """A server running ``script(reader, writer, n)`` for its n-th connection (from 1).

    On exit every connection is closed and its script left to finish (scripts should
    wait on their reader, not sleep, so that closing ends them).
    """
    stats = {"accepted": 0}
    writers: list[asyncio.StreamWriter] = []
    done: list[asyncio.Future[None]] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stats["accepted"] += 1
        writers.append(writer)
        finished = asyncio.get_running_loop().create_future()
        done.append(finished)
        try:
            await script(reader, writer, stats["accepted"])
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            finished.set_result(None)

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    address = server.sockets[0].getsockname()[:2]
    try:
        yield (address[0], address[1]), stats
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()
        await asyncio.gather(*done)
