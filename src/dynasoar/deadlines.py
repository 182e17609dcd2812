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


class Scope:
    """One unit of work's deadline (an async context manager; see :meth:`Deadlines.scope`)."""

    __slots__ = ("_key", "_owner", "_seconds", "_timeout", "reason")

    def __init__(self, owner: Deadlines, seconds: float, key: str) -> None:
        self._owner = owner
        self._seconds = seconds
        self._key = key
        self._timeout: asyncio.Timeout | None = None
        #: Why the deadline was brought forward; None while it was not.
        self.reason: str | None = None

    async def __aenter__(self) -> Scope:
        loop = asyncio.get_running_loop()
        self._timeout = asyncio.timeout_at(loop.time() + self._seconds)
        await self._timeout.__aenter__()
        self._owner._add(self)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._owner._remove(self)
        assert self._timeout is not None
        await self._timeout.__aexit__(kind, exc, tb)

    @property
    def key(self) -> str:
        return self._key

    def end_now(self, reason: str) -> None:
        if self.reason is None and self._timeout is not None and not self._timeout.expired():
            self.reason = reason
            self._timeout.reschedule(asyncio.get_running_loop().time())


class Deadlines:
    """The open scopes of one actor, by key. Used from its event loop only."""

    def __init__(self) -> None:
        self._open: dict[str, set[Scope]] = {}
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

    def _add(self, scope: Scope) -> None:
        self._open.setdefault(scope.key, set()).add(scope)
        if self.closed is not None:
            scope.end_now(self.closed)

    def _remove(self, scope: Scope) -> None:
        group = self._open.get(scope.key)
        if group is not None:
            group.discard(scope)
            if not group:
                del self._open[scope.key]
