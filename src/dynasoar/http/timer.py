"""One connection's one timer, moved lazily: what it waits for (a kind) and until when.

Re-arming to a later deadline (every keep-alive request does) costs no timer churn: the loop's
timer stays where it was and, when it fires early, re-schedules itself to the new deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# What the timer is waiting for.
OFF, IDLE, HEAD, DRAIN, LINGER = range(5)


class LazyTimer:
    __slots__ = ("_deadline", "_handle", "_loop", "_on_expiry", "kind")

    def __init__(self, loop: asyncio.AbstractEventLoop, on_expiry: Callable[[int], None]) -> None:
        self._loop = loop
        self._on_expiry = on_expiry
        self._handle: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        #: What it waits for now; OFF when nothing (set OFF directly to disarm cheaply).
        self.kind = OFF

    def arm(self, kind: int, delay: float) -> None:
        deadline = self._loop.time() + delay
        self.kind = kind
        self._deadline = deadline
        handle = self._handle
        if handle is None or handle.when() > deadline:
            if handle is not None:
                handle.cancel()
            self._handle = self._loop.call_at(deadline, self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        kind = self.kind
        if kind == OFF:
            return
        if self._loop.time() < self._deadline:
            self._handle = self._loop.call_at(self._deadline, self._fire)
            return
        self.kind = OFF
        self._on_expiry(kind)
