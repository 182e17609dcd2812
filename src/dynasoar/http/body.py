"""A message body streamed off a connection, with back-pressure on the socket."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Protocol

from dynasoar.errors import PayloadTooLarge, TransportError

#: Above this many buffered bytes the producing connection stops reading its socket ...
HIGH_WATER = 256 * 1024
#: ... and it starts again once the consumer has brought the buffer below this.
LOW_WATER = 64 * 1024


class FlowControl(Protocol):
    """What a BodyReader asks of the connection feeding it."""

    def pause_body(self) -> None: ...

    def resume_body(self) -> None: ...

    def abandon_body(self) -> None:
        """The consumer gave up before the end: the rest will never be read."""


class BodyReader:
    """The body of one request or response, as it arrives.

    ``content_length`` is the declared length, or None when the length is only known at
    the end (chunked, or delimited by the peer closing). Chunks are handed out as they
    were received; the producing connection is paused while more than ``high_water``
    bytes wait here, so a slow consumer holds the peer back instead of filling memory.
    """

    __slots__ = (
        "_chunks",
        "_consumed",
        "_eof",
        "_error",
        "_flow",
        "_high",
        "_loop",
        "_low",
        "_on_first_wait",
        "_paused",
        "_received",
        "_timeout",
        "_waiter",
        "content_length",
    )

    def __init__(
        self,
        content_length: int | None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        flow: FlowControl | None = None,
        read_timeout: float | None = None,
        high_water: int = HIGH_WATER,
        low_water: int = LOW_WATER,
        on_first_wait: Callable[[], None] | None = None,
    ) -> None:
        self.content_length = content_length
        self._loop = loop
        self._flow = flow
        self._timeout = read_timeout
        self._high = high_water
        self._low = low_water
        # Called once, just before a consumer first has to wait for bytes (100-continue).
        self._on_first_wait = on_first_wait
        self._chunks: deque[bytes] = deque()
        self._received = 0
        self._consumed = 0
        self._paused = False
        self._eof = content_length == 0
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> BodyReader:
        """A reader that is already complete (for tests and in-process callers)."""
        reader = cls(len(data))
        if data:
            reader._chunks.append(data)
            reader._received = len(data)
        reader._eof = True
        return reader

    # ---- consumer side -------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        """Every byte of the body has arrived (some may still wait here to be read)."""
        return self._eof and self._error is None

    @property
    def at_eof(self) -> bool:
        """Every byte has arrived and been read."""
        return self._eof and not self._chunks

    @property
    def buffered(self) -> int:
        """Bytes received and not yet read."""
        return self._received - self._consumed

    @property
    def received(self) -> int:
        return self._received

    async def read(self) -> bytes:
        """The next bytes of the body; b"" at the end. Raises TransportError if it broke off."""
        chunks = self._chunks
        if not chunks:
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            await self._wait()
            if not chunks:
                if self._error is not None:
                    raise self._error
                return b""
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._consumed += len(data)
        if self._paused and self._received - self._consumed <= self._low:
            self._set_paused(False)
        return data

    async def read_all(self, limit: int) -> bytes:
        """The whole (rest of the) body; PayloadTooLarge as soon as it exceeds ``limit`` bytes."""
        if self.content_length is not None and self.content_length - self._consumed > limit:
            raise PayloadTooLarge(f"body of {self.content_length} bytes exceeds {limit} bytes")
        if self._eof and self._error is None:
            # Everything is here already: the usual case for small messages.
            if self._received - self._consumed > limit:
                raise PayloadTooLarge(f"body exceeds {limit} bytes")
            return self._take_all()
        parts: list[bytes] = []
        total = 0
        while chunk := await self.read():
            total += len(chunk)
            if total > limit:
                raise PayloadTooLarge(f"body exceeds {limit} bytes")
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def __aiter__(self) -> BodyReader:
        return self

    async def __anext__(self) -> bytes:
        data = await self.read()
        if not data:
            raise StopAsyncIteration
        return data

    async def aclose(self) -> None:
        """Stop reading: drop what is buffered; an unfinished body is abandoned."""
        self._discard()
        if not self._eof and self._error is None:
            self._error = TransportError("body abandoned by its reader")
            if self._flow is not None:
                self._flow.abandon_body()

    # ---- producer side (the connection protocols of this package) ------------------------

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._received += len(data)
        if not self._paused and self._received - self._consumed > self._high:
            self._set_paused(True)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _feed_eof(self) -> None:
        self._eof = True
        if self._paused:
            # No more bytes will come through this reader: the connection must not stay
            # paused on its behalf (it has the next message to read).
            self._set_paused(False)
        self._flow = None
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if self._eof or self._error is not None:
            return
        self._error = error
        if self._paused:
            self._set_paused(False)
        self._flow = None
        self._wake()

    def _take_all(self) -> bytes:
        """Everything buffered, synchronously (the caller checked the body is complete)."""
        chunks = self._chunks
        if not chunks:
            return b""
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._consumed += len(data)
        return data

    def _discard(self) -> None:
        """Drop buffered bytes (nobody will read them) and release the producer."""
        self._consumed = self._received
        self._chunks.clear()
        if self._paused:
            self._set_paused(False)

    # ---- internals -----------------------------------------------------------------------

    def _set_paused(self, paused: bool) -> None:
        flow = self._flow
        if flow is None:
            return
        self._paused = paused
        if paused:
            flow.pause_body()
        else:
            flow.resume_body()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        if self._waiter is not None:
            raise RuntimeError("BodyReader.read() called while another read is waiting")
        hook = self._on_first_wait
        if hook is not None:
            self._on_first_wait = None
            hook()
        loop = self._loop or asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None
        if self._timeout is not None:
            timer = loop.call_later(self._timeout, self._timed_out, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def _timed_out(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done():
            return
        flow = self._flow
        self._fail(TransportError(f"no body bytes arrived for {self._timeout} s"))
        if flow is not None:
            # A peer that stalls mid-body leaves its connection unusable: let it be closed.
            flow.abandon_body()
