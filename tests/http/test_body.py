"""BodyReader on its own: chunk order, limits, back-pressure signals, failures, timeouts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dynasoar.errors import PayloadTooLarge, TransportError
from dynasoar.http import BodyReader

Run = Any


class Recorder:
    """The FlowControl side: records what the reader asked of its connection."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause_body(self) -> None:
        self.calls.append("pause")

    def resume_body(self) -> None:
        self.calls.append("resume")

    def abandon_body(self) -> None:
        self.calls.append("abandon")


def test_chunks_in_order_then_end(arun: Run) -> None:
    async def main() -> None:
        reader = BodyReader(None)
        reader._feed(b"ab")

        async def later() -> None:
            await asyncio.sleep(0)
            reader._feed(b"cd")
            reader._feed_eof()

        feeding = asyncio.ensure_future(later())
        got = [chunk async for chunk in reader]
        await feeding
        assert b"".join(got) == b"abcd"
        assert await reader.read() == b""
        assert reader.complete and reader.at_eof

    arun(main())


def test_read_all_limits(arun: Run) -> None:
    async def main() -> None:
        declared = BodyReader(100)
        with pytest.raises(PayloadTooLarge):
            await declared.read_all(99)  # refused from the declared length, nothing read
        assert declared.received == 0
        streamed = BodyReader(None)
        for _ in range(5):
            streamed._feed(b"x" * 10)
        streamed._feed_eof()
        with pytest.raises(PayloadTooLarge):
            await streamed.read_all(49)
        exact = BodyReader.from_bytes(b"y" * 50)
        assert await exact.read_all(50) == b"y" * 50

    arun(main())


def test_pauses_above_high_water_and_resumes_when_read(arun: Run) -> None:
    async def main() -> None:
        flow = Recorder()
        reader = BodyReader(None, flow=flow, high_water=100, low_water=10)
        reader._feed(b"x" * 60)
        assert flow.calls == []
        reader._feed(b"x" * 60)
        assert flow.calls == ["pause"]
        reader._feed(b"x" * 60)  # already paused: no second signal
        assert reader.buffered == 180
        assert len(await reader.read()) == 180
        assert flow.calls == ["pause", "resume"]
        reader._feed(b"x" * 200)
        reader._feed_eof()  # the end releases the connection even if nobody reads
        assert flow.calls == ["pause", "resume", "pause", "resume"]

    arun(main())


def test_failure_after_the_buffered_bytes(arun: Run) -> None:
    async def main() -> None:
        reader = BodyReader(10)
        reader._feed(b"abc")
        reader._fail(TransportError("peer went away"))
        assert await reader.read() == b"abc"
        with pytest.raises(TransportError):
            await reader.read()
        assert not reader.complete

    arun(main())


def test_aclose_abandons_an_unfinished_body(arun: Run) -> None:
    async def main() -> None:
        flow = Recorder()
        reader = BodyReader(10, flow=flow)
        reader._feed(b"abc")
        await reader.aclose()
        assert flow.calls == ["abandon"]
        with pytest.raises(TransportError):
            await reader.read()
        done = BodyReader.from_bytes(b"all")
        await done.aclose()
        assert await done.read() == b""

    arun(main())


def test_read_timeout(arun: Run) -> None:
    async def main() -> None:
        flow = Recorder()
        reader = BodyReader(10, flow=flow, read_timeout=0.05)
        with pytest.raises(TransportError, match="no body bytes"):
            await reader.read()
        assert flow.calls == ["abandon"]

    arun(main())


def test_first_wait_hook_runs_once(arun: Run) -> None:
    async def main() -> None:
        calls = []
        reader = BodyReader(4, on_first_wait=lambda: calls.append("100"))

        async def later() -> None:
            await asyncio.sleep(0)
            reader._feed(b"ab")
            await asyncio.sleep(0)
            reader._feed(b"cd")
            reader._feed_eof()

        feeding = asyncio.ensure_future(later())
        assert await reader.read_all(10) == b"abcd"
        await feeding
        assert calls == ["100"]

    arun(main())
