"""Single-flight: the first caller for a key does the work, the others wait for the same result
(bounded by their own deadline); the key is dropped afterwards and failures are never cached.
After groupcache's ``singleflight``, on asyncio."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._calls: dict[str, asyncio.Task[T]] = {}

    def in_flight(self, key: str) -> bool:
        return key in self._calls

    async def do(
        self, key: str, work: Callable[[], Awaitable[T]], timeout: float
    ) -> tuple[T, bool]:
        """Run ``work`` once for ``key``; returns (result, whether this caller started it).

        The work runs as its own task, so a caller giving up (timeout, disconnect) does not
        cancel it for the others. Raises TimeoutError when ``timeout`` passes first.
        """
        task = self._calls.get(key)
        started = task is None
        if task is None:
            task = asyncio.ensure_future(work())
            self._calls[key] = task
            task.add_done_callback(functools.partial(self._forget, key))
        async with asyncio.timeout(timeout):
            return await asyncio.shield(task), started

    def cancel_all(self) -> None:
        """The process is stopping: the work under way is abandoned."""
        for task in list(self._calls.values()):
            task.cancel()

    def _forget(self, key: str, task: asyncio.Task[T]) -> None:
        if self._calls.get(key) is task:
            del self._calls[key]
        if not task.cancelled():
            task.exception()  # retrieved here so an unawaited failure is not logged as lost
