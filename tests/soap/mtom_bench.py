"""MTOM throughput on a 512 MiB payload: reader, writer, and both against curl on loopback.

Not collected by pytest (no ``test_`` prefix). Run: ``.venv/bin/python tests/soap/mtom_bench.py``
(``--mib N`` for another size). The HTTP figures put a bare asyncio server on 127.0.0.1 with
three body consumers — discard, store to a file, ``read_mtom`` — and upload the same body with
``curl --data-binary``; "vs raw" divides by the discard sink's rate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import BinaryIO, cast

from dynasoar.soap.mtom import (
    GiB,
    MiB,
    MtomLimits,
    MtomReader,
    read_mtom,
)
from dynasoar.soap.mtom_writer import MtomWriter, OutgoingAttachment

BIG = MtomLimits(max_parts=4)
Consumer = Callable[[AsyncIterator[bytes], str, Path], Awaitable[None]]


def rate(nbytes: int, seconds: float) -> str:
    return f"{nbytes / seconds / 1e6:8.0f} MB/s"


def make_payload(path: Path, size: int) -> None:
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for _ in range(size // MiB):
            f.write(block)


def bench_writer(writer: MtomWriter, chunk_size: int) -> float:
    start = time.perf_counter()
    for _ in writer.iter_chunks(chunk_size):
        pass
    return time.perf_counter() - start


def bench_async_writer(writer: MtomWriter, chunk_size: int) -> float:
    async def drain() -> None:
        async for _ in writer.aiter_chunks(chunk_size):
            pass

    start = time.perf_counter()
    asyncio.run(drain())
    return time.perf_counter() - start


def synthetic_body(body: Path, payload_size: int, chunk_size: int) -> Iterator[bytes]:
    """The body's framing around an in-memory payload: the reader's cost alone, no file reads."""
    with open(body, "rb") as f:
        head_size = body.stat().st_size - payload_size - _tail_size(f)
        f.seek(0)
        head = f.read(head_size)
        f.seek(head_size + payload_size)
        tail = f.read()
    block = os.urandom(chunk_size)
    yield head
    for _ in range(payload_size // chunk_size):
        yield block
    yield tail


def _tail_size(f: BinaryIO) -> int:
    f.seek(-200, os.SEEK_END)
    end = f.read()
    return len(end) - end.rindex(b"\r\n--")


def bench_reader(
    body: Path, payload_size: int, content_type: str, chunk_size: int, spool: Path
) -> float:
    chunks = list(synthetic_body(body, payload_size, chunk_size))
    reader = MtomReader(content_type, spool, BIG)
    start = time.perf_counter()
    for chunk in chunks:
        reader.feed(chunk)
    message = reader.finish()
    elapsed = time.perf_counter() - start
    message.close()
    return elapsed


# -- a bare HTTP/1.1 upload server -------------------------------------------------------


class _Upload(asyncio.Protocol):
    """One POST with Content-Length; the body goes to ``consume`` with back-pressure."""

    def __init__(self, consume: Consumer, spool: Path) -> None:
        self._consume = consume
        self._spool = spool
        self._head = b""
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._remaining = -1
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._remaining < 0:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end == -1:
                return
            headers = _headers(self._head[:end])
            data, self._remaining = self._head[end + 4 :], int(headers["content-length"])
            self._serving = asyncio.ensure_future(self._serve(headers["content-type"]))
        if data:
            self._remaining -= len(data)
            self._queue.put_nowait(data)
        if self._remaining == 0:
            self._queue.put_nowait(None)
        elif self._queue.qsize() > 16 and not self._paused:
            self._paused = True
            self._transport.pause_reading()

    async def _body(self) -> AsyncIterator[bytes]:
        while (chunk := await self._queue.get()) is not None:
            if self._paused and self._queue.qsize() < 4:
                self._paused = False
                self._transport.resume_reading()
            yield chunk

    async def _serve(self, content_type: str) -> None:
        status = b"200 OK"
        try:
            await self._consume(self._body(), content_type, self._spool)
        except Exception as exc:  # reported to curl as a 500, which fails the benchmark
            print(f"server: {exc!r}")
            status = b"500 Internal Server Error"
        self._transport.write(
            b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        self._transport.close()


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}


async def discard(body: AsyncIterator[bytes], content_type: str, spool: Path) -> None:
    async for _ in body:
        pass


async def store(body: AsyncIterator[bytes], content_type: str, spool: Path) -> None:
    """A raw upload to disk, batched off the loop the same way read_mtom batches."""
    spool.mkdir(parents=True, exist_ok=True)
    path = spool / "raw.bin"
    with open(path, "wb") as f:
        batch: list[bytes] = []
        size = 0
        async for chunk in body:
            batch.append(chunk)
            size += len(chunk)
            if size >= MiB:
                await asyncio.to_thread(f.write, b"".join(batch))
                batch, size = [], 0
        f.write(b"".join(batch))
    path.unlink()


async def parse_mtom(body: AsyncIterator[bytes], content_type: str, spool: Path) -> None:
    message = await read_mtom(body, content_type, spool, BIG)
    message.close()


async def serve(consume: Consumer, spool: Path) -> tuple[asyncio.AbstractServer, int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Upload(consume, spool), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def curl_upload(consume: Consumer, body: Path, content_type: str, spool: Path) -> float:
    server, port = await serve(consume, spool)
    command = [
        "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", "-H", "Expect:",
        "-H", f"Content-Type: {content_type}", "--data-binary", f"@{body}",
        f"http://127.0.0.1:{port}/",
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE)
    out, _ = await process.communicate()
    server.close()
    status, seconds = out.split()
    if status != b"200":
        raise SystemExit(f"curl upload failed: HTTP {status.decode()}")
    return float(seconds)


async def writer_upload(consume: Consumer, writer: MtomWriter, spool: Path) -> float:
    server, port = await serve(consume, spool)
    start = time.perf_counter()
    reader, stream = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {writer.content_length}\r\n"
    head += f"Content-Type: {writer.content_type}\r\n\r\n"
    stream.write(head.encode())
    async for chunk in writer.aiter_chunks():
        stream.write(chunk)
        await stream.drain()
    await reader.read()
    elapsed = time.perf_counter() - start
    stream.close()
    server.close()
    return elapsed


def run(coro: Awaitable[float]) -> float:
    os.sync()  # start each measurement without the previous one's dirty pages to write back
    try:
        import uvloop  # the servers run on uvloop when present

        return uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]


def measure(case: Callable[[], float], repeat: int) -> tuple[float, float]:
    """Best wall time of ``repeat`` runs, and the least CPU this process used in one of them.

    CPU is the steadier figure on a shared machine: other tenants move wall times around.
    """
    walls, cpus = [], []
    for _ in range(repeat):
        cpu = time.process_time()
        walls.append(case())
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def bench_in_process(writer: MtomWriter, body: Path, size: int, spools: list[Path]) -> None:
    total = writer.content_length
    for chunk_size in (64 * 1024, MiB):
        label = f"{chunk_size // 1024:4d} KiB chunks"
        elapsed = bench_writer(writer, chunk_size)
        print(f"writer iter_chunks   {label}: {rate(total, elapsed)}")
        elapsed = bench_async_writer(writer, chunk_size)
        print(f"writer aiter_chunks  {label}: {rate(total, elapsed)}")
        for spool in spools:
            os.sync()
            elapsed = bench_reader(body, size, writer.content_type, chunk_size, spool)
            print(f"reader feed          {label}: {rate(total, elapsed)}  spool {spool.parent}")


def bench_http(writer: MtomWriter, body: Path, spool: Path, repeat: int) -> None:
    total, content_type = writer.content_length, writer.content_type

    def curl(consume: Consumer) -> Callable[[], float]:
        return lambda: run(curl_upload(consume, body, content_type, spool))

    def ours(consume: Consumer) -> Callable[[], float]:
        return lambda: run(writer_upload(consume, writer, spool))

    cases = [
        ("curl --data-binary → discard  ", curl(discard)),
        ("curl --data-binary → raw file ", curl(store)),
        ("curl --data-binary → read_mtom", curl(parse_mtom)),
        ("MtomWriter.aiter   → discard  ", ours(discard)),
        ("MtomWriter.aiter   → read_mtom", ours(parse_mtom)),
    ]
    print(f"HTTP on 127.0.0.1, best of {repeat}; 'x' columns are throughput ratios")
    results = [(label, *measure(case, repeat)) for label, case in cases]
    discarded, stored = results[0][1], results[1][1]
    for label, wall, cpu in results:
        print(
            f"{label}: {rate(total, wall)}  {discarded / wall:4.2f}x discard"
            f"  {stored / wall:4.2f}x raw file  CPU here {cpu * GiB / total:4.2f} s/GiB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3, help="HTTP runs per case; best counts")
    args = parser.parse_args()
    size = args.mib * MiB
    work = Path(tempfile.mkdtemp(prefix="mtom-bench-"))
    spools = [work / "spool"]
    if Path("/dev/shm").is_dir():  # tmpfs: the parser's cost without the disk's
        spools.append(Path(tempfile.mkdtemp(prefix="mtom-bench-", dir="/dev/shm")) / "spool")
    try:
        payload, body = work / "payload.bin", work / "body.mtom"
        make_payload(payload, size)
        att = OutgoingAttachment("image@bench", "application/octet-stream", payload)
        writer = MtomWriter(b"<e/>", [att], "1.2", action="urn:bench")
        with open(body, "wb") as f:
            for chunk in writer.iter_chunks():
                f.write(chunk)
        print(f"payload {args.mib} MiB, body {writer.content_length} bytes, {os.cpu_count()} CPUs")
        bench_in_process(writer, body, size, spools)
        bench_http(writer, body, spools[0], args.repeat)
    finally:
        for spool in spools:
            shutil.rmtree(spool.parent)


if __name__ == "__main__":
    main()
