"""Deadlines brought forward: by key (a host marked down), all at once (a server's grace is
over, and every scope opened afterwards), or not at all (the scope's own deadline)."""

from __future__ import annotations

import asyncio

import pytest

from dynasoar.deadlines import Deadlines


async def _wait_in(deadlines: Deadlines, seconds: float, key: str) -> str | None:
    scope = deadlines.scope(seconds, key)
    try:
        async with scope:
            await asyncio.sleep(60)
    except TimeoutError:
        return scope.reason
    raise AssertionError("the scope did not end")


def test_a_scope_ends_at_its_own_deadline_with_no_reason() -> None:
    async def main() -> None:
        deadlines = Deadlines()
        assert await _wait_in(deadlines, 0.05, "h") is None
        assert deadlines.open_count() == 0

    asyncio.run(main())


def test_expire_ends_the_scopes_of_one_key_only() -> None:
    async def main() -> None:
        deadlines = Deadlines()
        a1 = asyncio.create_task(_wait_in(deadlines, 30, "host-a"))
        a2 = asyncio.create_task(_wait_in(deadlines, 30, "host-a"))
        b = asyncio.create_task(_wait_in(deadlines, 30, "host-b"))
        await asyncio.sleep(0.01)
        assert deadlines.open_count("host-a") == 2
        assert deadlines.expire("host-a", "host-a is down") == 2
        assert await a1 == "host-a is down"
        assert await a2 == "host-a is down"
        assert not b.done()
        assert deadlines.expire("nobody", "x") == 0
        b.cancel()
        with pytest.raises(asyncio.CancelledError):
            await b

    asyncio.run(main())


def test_expire_all_ends_every_scope_and_every_later_one() -> None:
    async def main() -> None:
        deadlines = Deadlines()
        running = [asyncio.create_task(_wait_in(deadlines, 30, k)) for k in ("", "h1", "h2")]
        await asyncio.sleep(0.01)
        assert deadlines.expire_all("stopping") == 3
        assert await asyncio.gather(*running) == ["stopping"] * 3
        # Opened after the cut: ended at once.
        assert await asyncio.wait_for(_wait_in(deadlines, 30, "h3"), 1.0) == "stopping"

    asyncio.run(main())


def test_a_scope_that_finishes_in_time_is_unaffected_and_forgotten() -> None:
    async def main() -> None:
        deadlines = Deadlines()
        async with deadlines.scope(5, "h") as scope:
            await asyncio.sleep(0)
        assert scope.reason is None
        assert deadlines.open_count() == 0
        assert deadlines.expire("h", "late") == 0

    asyncio.run(main())


def test_nested_scopes_end_the_inner_one_when_only_its_key_expires() -> None:
    """A message's scope around a call's: a host marked down ends the call, not the message."""

    async def main() -> None:
        deadlines = Deadlines()
        inner_reason: list[str | None] = []

        async def message() -> str:
            async with deadlines.scope(30):
                inner = deadlines.scope(30, "host")
                try:
                    async with inner:
                        await asyncio.sleep(60)
                except TimeoutError:
                    inner_reason.append(inner.reason)
                return "answered elsewhere"

        task = asyncio.create_task(message())
        await asyncio.sleep(0.01)
        deadlines.expire("host", "down")
        assert await task == "answered elsewhere"
        assert inner_reason == ["down"]

    asyncio.run(main())
