"""Deadlines that can be brought forward.

Every unit of work that may wait (a message in the routing interceptor, a call relayed to a
host, a management operation) runs under one asyncio timeout, registered here under a key.
Someone who learns that the wait is pointless ends it early: :meth:`Deadlines.expire` ends every
scope of one key (a host was marked down: its calls stop waiting for it), :meth:`expire_all`
ends them all and every scope opened afterwards (a stopping server's grace period is over). The
work sees ``TimeoutError`` as for its own deadline, and the scope's ``reason`` says which it was
(``None``: its own deadline passed).
"""

from __future__ import annotations

import asyncio
from types import TracebackType

#: A scope's states (as asyncio.Timeout's): open, its deadline reached (its task cancelled),
#: and left.
_OPEN, _EXPIRING, _DONE = 0, 1, 2


class Scope:
    """One unit of work's deadline (an async context manager; see :meth:`Deadlines.scope`).

    It does what ``asyncio.timeout`` does (cancel the task at the deadline, turn that
    cancellation into ``TimeoutError`` on the way out) with one timer and no further
    coroutines: the relay opens two per message."""

    __slots__ = (
        "_cancelling",
        "_group",
        "_handle",
        "_key",
        "_loop",
        "_owner",
        "_seconds",
        "_state",
        "_task",
        "reason",
    )

    def __init__(self, owner: Deadlines, seconds: float, key: str) -> None:
        self._owner = owner
        self._seconds = seconds
        self._key = key
        self._state = _OPEN
        self._handle: asyncio.Handle | None = None
        #: Why the deadline was brought forward; None while it was not.
        self.reason: str | None = None

    async def __aenter__(self) -> Scope:
        owner = self._owner
        loop = owner._loop
        # The loop is looked up once per Deadlines (on Python 3.11 each look-up is a system
        # call); a task of another loop finds no current task on the remembered one.
        task = asyncio.current_task(loop) if loop is not None else None
        if loop is None or task is None:
            loop = owner._loop = asyncio.get_running_loop()
            task = asyncio.current_task(loop)
            if task is None:
                raise RuntimeError("a deadline scope must be used inside a task")
        self._loop = loop
        self._task = task
        self._cancelling = task.cancelling()
        self._handle = loop.call_at(loop.time() + self._seconds, self._expire)
        group = owner._open.get(self._key)
        if group is None:
            group = owner._open[self._key] = set()
        group.add(self)
        self._group = group
        if owner.closed is not None:
            self.end_now(owner.closed)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        group = self._group
        group.discard(self)
        if not group and self._owner._open.get(self._key) is group:
            del self._owner._open[self._key]
        handle = self._handle
        if handle is not None:
            handle.cancel()
            self._handle = None
        if self._state == _EXPIRING:
            self._state = _DONE
            # Our own cancellation, and no one else's pending: the deadline passed.
            if self._task.uncancel() <= self._cancelling and kind is asyncio.CancelledError:
                raise TimeoutError from exc
        self._state = _DONE

    def _expire(self) -> None:
        self._handle = None
        if self._state == _OPEN:
            self._state = _EXPIRING
            self._task.cancel()

    @property
    def key(self) -> str:
        return self._key

    def end_now(self, reason: str) -> None:
        if self.reason is None and self._state == _OPEN and self._handle is not None:
            self.reason = reason
            self._handle.cancel()
            self._handle = self._loop.call_soon(self._expire)


class Deadlines:
    """The open scopes of one actor, by key. Used from its event loop only."""

    def __init__(self) -> None:
        self._open: dict[str, set[Scope]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Set by expire_all: every scope from then on starts already ended.
        self.closed: str | None = None

    def scope(self, seconds: float, key: str = "") -> Scope:
        return Scope(self, seconds, key)

    def expire(self, key: str, reason: str) -> int:
        """End every open scope of ``key`` now; returns how many."""
        scopes = list(self._open.get(key, ()))
        for scope in scopes:
            scope.end_now(reason)
        return len(scopes)

    def expire_all(self, reason: str) -> int:
        """End every open scope now, and every one opened from now on."""
        self.closed = reason
        scopes = [scope for group in self._open.values() for scope in group]
        for scope in scopes:
            scope.end_now(reason)
        return len(scopes)

    def open_count(self, key: str | None = None) -> int:
        if key is not None:
            return len(self._open.get(key, ()))
        return sum(len(group) for group in self._open.values())
