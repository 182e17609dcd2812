"""How busy each deployment is: this SP's own count, and the other SPs' beside it."""

from __future__ import annotations

import time

from dynasoar.provider.load import LoadTracker


def test_a_deployment_busy_at_another_sp_is_neither_idle_nor_counted_here() -> None:
    load = LoadTracker()
    load.begin("d1")
    load.end("d1")
    time.sleep(0.05)
    assert load.idle_for("d1") >= 0.05
    load.peers = {"d1": (3, time.time() - 100)}
    assert load.idle_for("d1") == 0.0  # messages in flight through another SP
    assert load.everywhere("d1") == 3 and load.outstanding("d1") == 0
    load.peers = {"d1": (0, time.time())}  # one just now, through another SP
    assert load.idle_for("d1") < 0.05
    load.peers = {"d1": (0, time.time() - 100)}  # long ago there: this SP's last counts
    assert 0.05 <= load.idle_for("d1") < 100


def test_a_deployment_never_used_here_is_idle_since_first_asked_about() -> None:
    load = LoadTracker()
    assert load.idle_for("d2") < 0.05
    time.sleep(0.05)
    assert load.idle_for("d2") >= 0.05
    assert load.active_since(float("-inf")) == []  # being asked about is no message


def test_what_is_shared_is_what_changed_and_what_is_in_flight() -> None:
    load = LoadTracker()
    load.begin("old")
    load.end("old")
    load.begin("long")  # still in flight
    mark = time.monotonic()
    load.begin("new")
    shared = {d: (n, used) for d, n, used in load.active_since(mark)}
    assert set(shared) == {"long", "new"}
    assert shared["long"][0] == 1 and shared["new"][0] == 1
    assert abs(shared["new"][1] - time.time()) < 1.0  # epoch seconds, for the other SPs
    load.forget("long")
    load.peers = {"new": (1, time.time())}
    load.forget("new")
    assert load.everywhere("new") == 0 and load.peers == {}


def test_answered_waits_for_the_messages_in_flight_or_its_deadline() -> None:
    import asyncio

    async def scenario() -> tuple[bool, bool, bool]:
        load = LoadTracker()
        assert await load.answered("d1")  # none in flight: at once
        load.begin("d1")
        late = await load.answered("d1", time.monotonic() + 0.05, every=0.01)
        asyncio.get_running_loop().call_later(0.05, load.end, "d1")
        done = await load.answered("d1", time.monotonic() + 5.0, every=0.01)
        return late, done, load.outstanding("d1") == 0

    assert asyncio.run(scenario()) == (False, True, True)
