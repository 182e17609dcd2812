"""Single-flight: one run per key among concurrent callers, shared results and failures, no
cached failures, per-caller deadlines that never cancel the work for the others."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from dynasoar.provider.singleflight import SingleFlight


class Work:
    """A unit of work that counts its runs and finishes when released."""

    def __init__(self, result: object = "deployed", error: Exception | None = None) -> None:
        self.runs = 0
        self.finished = 0
        self.cancelled = 0
        self.release = asyncio.Event()
        self.result = result
        self.error = error

    async def __call__(self) -> object:
        self.runs += 1
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished += 1
        if self.error is not None:
            raise self.error
        return f"{self.result}#{self.runs}"


async def settle() -> None:
    """Let every ready task run up to its next real wait."""
    for _ in range(5):
        await asyncio.sleep(0)


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(main(), timeout=30))


def test_fifty_concurrent_callers_share_one_run() -> None:
    async def main() -> None:
        flight: SingleFlight[object] = SingleFlight()
        work = Work()
        calls = [asyncio.create_task(flight.do("Echo", work, timeout=10)) for _ in range(50)]
        await settle()
        assert flight.in_flight("Echo")
        assert not any(c.done() for c in calls)
        work.release.set()
        results = await asyncio.gather(*calls)
        assert work.runs == 1
        assert {value for value, _ in results} == {"deployed#1"}
        assert sum(started for _, started in results) == 1
        assert results[0][1] is True  # the first caller is the one that started it

    run(main)


def test_a_failure_reaches_every_waiter_and_is_not_cached() -> None:
    async def main() -> None:
        flight: SingleFlight[object] = SingleFlight()
        work = Work(error=RuntimeError("no host"))
        calls = [asyncio.create_task(flight.do("Echo", work, timeout=10)) for _ in range(10)]
        await settle()
        work.release.set()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(o, RuntimeError) and str(o) == "no host" for o in outcomes)
        assert work.runs == 1
        assert not flight.in_flight("Echo")

        # The next call runs the work again (here it succeeds).
        work.error = None
        value, started = await flight.do("Echo", work, timeout=10)
        assert (value, started, work.runs) == ("deployed#2", True, 2)

    run(main)


def test_a_waiters_timeout_does_not_cancel_the_work() -> None:
    async def main() -> None:
        flight: SingleFlight[object] = SingleFlight()
        work = Work()
        starter = asyncio.create_task(flight.do("Echo", work, timeout=10))
        await settle()
        with pytest.raises(TimeoutError):
            await flight.do("Echo", work, timeout=0.01)
        assert flight.in_flight("Echo")
        work.release.set()
        assert await starter == ("deployed#1", True)
        assert (work.runs, work.finished, work.cancelled) == (1, 1, 0)

    run(main)


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_the_starter_giving_up_does_not_cancel_the_work_for_others(how: str) -> None:
    async def main() -> None:
        flight: SingleFlight[object] = SingleFlight()
        work = Work()
        starter = asyncio.create_task(
            flight.do("Echo", work, timeout=0.01 if how == "timeout" else 10)
        )
        await settle()
        waiter = asyncio.create_task(flight.do("Echo", work, timeout=10))
        await settle()
        if how == "cancel":  # the starter's client disconnected
            starter.cancel()
        with pytest.raises(TimeoutError if how == "timeout" else asyncio.CancelledError):
            await starter
        assert flight.in_flight("Echo")
        work.release.set()
        assert await waiter == ("deployed#1", False)
        assert (work.runs, work.cancelled) == (1, 0)

    run(main)


def test_work_nobody_waits_for_still_finishes_and_drops_the_key() -> None:
    async def main() -> None:
        flight: SingleFlight[object] = SingleFlight()
        work = Work(error=RuntimeError("late failure"))
        for _ in range(3):
            with pytest.raises(TimeoutError):
                await flight.do("Echo", work, timeout=0.01)
        work.release.set()
        await settle()
        assert (work.runs, work.finished) == (1, 1)
        assert not flight.in_flight("Echo")
        # And the failure is not remembered either.
        work.error = None
        work.release = asyncio.Event()
        work.release.set()
        assert await flight.do("Echo", work, timeout=10) == ("deployed#2", True)

    run(main)


def test_the_key_is_dropped_after_completion() -> None:
    async def main() -> None:
        flight: SingleFlight[object] = SingleFlight()
        work = Work()
        work.release.set()
        assert await flight.do("Echo", work, timeout=10) == ("deployed#1", True)
        assert not flight.in_flight("Echo")
        assert await flight.do("Echo", work, timeout=10) == ("deployed#2", True)
        assert work.runs == 2

    run(main)


def test_different_keys_do_not_wait_for_each_other() -> None:
    async def main() -> None:
        flight: SingleFlight[object] = SingleFlight()
        slow, fast = Work("slow"), Work("fast")
        slow_call = asyncio.create_task(flight.do("Slow", slow, timeout=10))
        await settle()
        fast.release.set()
        assert await flight.do("Fast", fast, timeout=10) == ("fast#1", True)
        assert not slow_call.done()
        slow.release.set()
        assert await slow_call == ("slow#1", True)

    run(main)


def test_race_many_keys_many_callers() -> None:
    """Callers arrive at random moments while runs start, fail and finish: each run has
    exactly one starter, and every caller gets the outcome of a run of its own key."""

    async def main() -> None:
        flight: SingleFlight[str] = SingleFlight()
        rng = random.Random(1234)
        runs: dict[str, int] = {}

        def work_for(key: str) -> Callable[[], Awaitable[str]]:
            async def work() -> str:
                runs[key] = runs.get(key, 0) + 1
                n = runs[key]
                await asyncio.sleep(rng.uniform(0, 0.003))
                if n % 3 == 0:
                    raise RuntimeError(f"{key}/{n}")
                return f"{key}/{n}"

            return work

        async def caller(key: str) -> tuple[bool, str, bool | None]:
            """(nobody in flight when called, outcome, started as reported or None)."""
            await asyncio.sleep(rng.uniform(0, 0.02))
            first = not flight.in_flight(key)  # no await before do(): the same instant
            try:
                value, started = await flight.do(key, work_for(key), timeout=5)
            except RuntimeError as exc:
                return first, str(exc), None
            return first, value, started

        keys = [f"svc{i}" for i in range(10)]
        jobs = [key for key in keys for _ in range(30)]
        outcomes = await asyncio.gather(*(caller(key) for key in jobs))

        for key in keys:
            mine = [o for k, o in zip(jobs, outcomes, strict=True) if k == key]
            assert sum(first for first, _, _ in mine) == runs[key]  # one starter per run
            assert all(started == first for first, _, started in mine if started is not None)
            outcomes_seen = {outcome for _, outcome, _ in mine}
            assert outcomes_seen == {f"{key}/{n}" for n in range(1, runs[key] + 1)}
            assert runs[key] < 30  # callers did share runs
            assert not flight.in_flight(key)

    run(main)
