"""Reading a whole MTOM body from a stream into an :class:`~dynasoar.soap.mtom.MtomReader`: from
async code (an HTTP request or response body) in batches on a worker thread, so that hashing
and spooling never block the event loop, or from a blocking iterable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Iterable
from pathlib import Path

from dynasoar.soap.futures import abandon
from dynasoar.soap.mtom import MiB, MtomLimits, MtomMessage, MtomReader


class _ThreadFeeder:
    """Feeds an MtomReader from async code: big bodies in ~1 MiB batches on a worker thread.

    One batch is parsed (hashed, written) in a thread while the event loop collects the next,
    so disk writes never block the loop and memory stays at two batches. Chunks are handed
    over as they came, not joined: a join would copy every byte on the loop thread. A body
    smaller than one batch is parsed inline: a thread hop would cost more than the parse.
    """

    def __init__(self, reader: MtomReader, batch_bytes: int) -> None:
        self._reader = reader
        self._batch_bytes = batch_bytes
        self._batch: list[bytes] = []
        self._size = 0
        self._pending: asyncio.Future[None] | None = None

    async def add(self, chunk: bytes) -> None:
        self._batch.append(chunk)
        self._size += len(chunk)
        if self._size >= self._batch_bytes:
            await self._wait_pending()
            self._pending = asyncio.ensure_future(asyncio.to_thread(self._feed, self._take()))

    async def flush(self) -> None:
        threaded = self._pending is not None
        await self._wait_pending()
        if self._size:
            if threaded:
                await asyncio.to_thread(self._feed, self._take())
            else:
                self._feed(self._take())

    def cancel(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            abandon(pending)

    async def _wait_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            await pending

    def _take(self) -> list[bytes]:
        batch = self._batch
        self._batch, self._size = [], 0
        return batch

    def _feed(self, batch: list[bytes]) -> None:
        for chunk in batch:
            self._reader.feed(chunk)


async def read_mtom(
    chunks: AsyncIterable[bytes],
    content_type: str,
    spool_dir: Path,
    limits: MtomLimits | None = None,
    *,
    batch_bytes: int = 1 * MiB,
) -> MtomMessage:
    """Read a whole MTOM body from an async byte stream (an HTTP request body)."""
    reader = MtomReader(content_type, spool_dir, limits)
    feeder = _ThreadFeeder(reader, batch_bytes)
    try:
        async for chunk in chunks:
            await feeder.add(chunk)
        await feeder.flush()
        return reader.finish()
    except BaseException:
        feeder.cancel()
        reader.abort()  # waits for a feed still running in the worker thread
        raise


def read_mtom_sync(
    chunks: Iterable[bytes],
    content_type: str,
    spool_dir: Path,
    limits: MtomLimits | None = None,
) -> MtomMessage:
    """Read a whole MTOM body from a blocking byte stream."""
    reader = MtomReader(content_type, spool_dir, limits)
    try:
        for chunk in chunks:
            reader.feed(chunk)
        return reader.finish()
    except BaseException:
        reader.abort()
        raise
