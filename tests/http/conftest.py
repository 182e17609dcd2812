"""Fixtures for the HTTP layer tests: every test runs on asyncio's loop and on uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
import uvloop

T = TypeVar("T")

#: A safety net against a hung test, not a measurement: no assertion depends on it.
HANG_GUARD_SECONDS = 120.0

Runner = Callable[[Coroutine[Any, Any, T]], T]


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def arun(loop_kind: str) -> Runner[Any]:
    """Run a coroutine to completion on a fresh loop of the parametrised kind."""
    factory = uvloop.new_event_loop if loop_kind == "uvloop" else asyncio.new_event_loop

    def run(coro: Coroutine[Any, Any, T]) -> T:
        async def guarded() -> T:
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                return await coro

        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(guarded())

    return run


@pytest.fixture(autouse=True)
def no_asyncio_errors(caplog: pytest.LogCaptureFixture) -> Any:
    """Fail a test whose event loop reported an error (an unretrieved exception, a task
    destroyed while pending, a failed callback): those are bugs even when the test passes."""
    yield
    errors = [r for r in caplog.get_records("call") if r.name == "asyncio" and r.levelno >= 40]
    assert not errors, "\n".join(r.getMessage() for r in errors)
