"""Moves another SP makes, through a real shared PostgreSQL registry: this SP holds its messages
for the moving deployment, says when its own are answered, and lets them go where the
deployment went (or back to it, when it stayed) once the move ends; the mover waits for the
messages of an SP whose registry session is momentarily gone, and passes over one gone for
good only after the grace a mover has; a mover momentarily gone is given the same grace (its
move is not settled); a move whose SP died is settled by exactly one of the others before any
gate opens."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from moving_sps import NOWHERE, closed_gate, counter, published, record, sp

from dynasoar.errors import Busy, HostLost
from dynasoar.provider.move_watch import MOVER_GONE_CHECKS
from dynasoar.provider.registry import Registry


def test_messages_wait_at_every_sp_and_go_where_the_deployment_went(
    pg_url: str, tmp_path: Path
) -> None:
    mover, other = Registry(pg_url), Registry(pg_url)
    for registry in (mover, other):
        registry.hold_instance()
    old, new = record("old", "http://hp1:1"), record("new", "http://hp2:1")
    mover.add_deployment(old)
    other.refresh_deployment("old")

    async def scenario() -> None:
        async with sp(other, tmp_path) as them, sp(mover, tmp_path) as mine:
            load = them.deployer.load
            load.begin("old")  # a message of the other SP's is at the deployment
            other.share_load(load.active_since(float("-inf")), time.time())
            move = mover.begin_move("old", "VmCounter", new.host)
            them.watch.changed("old", other.move_of("old"))
            await asyncio.sleep(0.05)
            gate = closed_gate(them, "old")  # new messages wait here too
            with pytest.raises(Busy):  # its message is not answered yet: no pause
                await mine.watch.wait_for_others("old", move.started, time.monotonic() + 0.3)
            waiting = asyncio.create_task(gate.passage(10.0))
            load.end("old")  # answered: the other SP says so
            await mine.watch.wait_for_others("old", move.started, time.monotonic() + 5.0)
            mover.add_deployment(new)  # the switch, as the mover makes it
            mover.remove_deployment("old")
            other.refresh_deployment("new")
            other.refresh_deployment("old")
            mover.end_move("old")
            them.watch.changed("old", other.move_of("old"))
            assert (await asyncio.wait_for(waiting, 5.0)).id == "new"

    try:
        asyncio.run(scenario())
    finally:
        mover.close()
        other.close()


def test_a_move_that_failed_lets_messages_go_to_the_deployment_as_it_was(
    pg_url: str, tmp_path: Path
) -> None:
    mover, other = Registry(pg_url), Registry(pg_url)
    mover.hold_instance()
    mover.add_deployment(record("old", "http://hp1:1"))
    other.refresh_deployment("old")

    async def scenario() -> None:
        async with sp(other, tmp_path) as them:
            mover.begin_move("old", "VmCounter", "http://hp2:1")
            them.watch.changed("old", other.move_of("old"))
            await asyncio.sleep(0.05)
            waiting = asyncio.create_task(closed_gate(them, "old").passage(10.0))
            mover.end_move("old")  # the move failed: the guest runs on at its source
            them.watch.changed("old", None)
            assert (await asyncio.wait_for(waiting, 5.0)).id == "old"

    try:
        asyncio.run(scenario())
    finally:
        mover.close()
        other.close()


def test_a_dead_movers_restored_guest_is_kept_and_the_old_one_is_not_resumed(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mover = published(pg_url)
    other = Registry(pg_url)
    other.hold_instance()

    async def scenario() -> None:
        async with sp(other, tmp_path) as them:
            mover.begin_move("old", "VmCounter", "http://hp2:1")
            them.watch.changed("old", other.move_of("old"))
            await asyncio.sleep(0.05)
            waiting = asyncio.create_task(closed_gate(them, "old").passage(30.0))
            # The target restored the guest (recorded ready by the mover), then the mover died
            # before the switch: the old guest is paused at its source.
            mover.add_deployment(replace(record("new", "http://hp2:1"), deployer=mover.instance))
            mover.close()
            assert (await asyncio.wait_for(waiting, 20.0)).id == "new"

    try:
        with caplog.at_level(logging.WARNING):
            asyncio.run(scenario())
        # The old record went (had it been resumed at its unreachable host, it would be lost)
        assert other.db.query("SELECT id, state FROM deployments") == [("new", "ready")]
        assert other.move_of("old") is None
        assert "the move is complete" in caplog.text
        assert "did not resume" not in caplog.text
    finally:
        other.close()


def test_only_one_sp_settles_a_dead_movers_move_and_none_opens_before(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mover = published(pg_url)
    one, two = Registry(pg_url), Registry(pg_url)
    for registry in (one, two):
        registry.hold_instance()

    async def scenario() -> None:
        async with sp(one, tmp_path) as first, sp(two, tmp_path) as second:
            mover.begin_move("old", "VmCounter", "http://hp2:1")
            for registry, side in ((one, first), (two, second)):
                side.watch.changed("old", registry.move_of("old"))
            await asyncio.sleep(0.05)
            waiting = [
                asyncio.create_task(closed_gate(side, "old").passage(30.0))
                for side in (first, second)
            ]
            mover.close()  # died before the target had the guest: it must run on at its source
            for task in waiting:  # ...whose host does not answer: lost, at both SPs
                with pytest.raises(HostLost, match="stopped mid-move and its host did not resume"):
                    await asyncio.wait_for(task, 20.0)

    try:
        with caplog.at_level(logging.WARNING):
            asyncio.run(scenario())
        said = [r.getMessage() for r in caplog.records]
        assert len([m for m in said if m.startswith("VmCounter is lost:")]) == 1  # one settled
        assert one.db.query("SELECT id, state FROM deployments") == [("old", "lost")]
        assert one.move_of("old") is None
    finally:
        one.close()
        two.close()


def test_of_two_sps_settling_at_once_one_waits_for_the_other(
    pg_url: str, tmp_path: Path
) -> None:
    mover = published(pg_url)
    one, two = Registry(pg_url), Registry(pg_url)

    async def scenario() -> None:
        async with sp(one, tmp_path) as first, sp(two, tmp_path) as second:
            move = mover.begin_move("old", "VmCounter", "http://hp2:1")
            mover.close()
            # The first takes the move's lock and, while it asks the source to resume the
            # guest, the second finds it taken: it settles nothing.
            settled = await asyncio.gather(
                first.recovery.recover(move), second.recovery.recover(move)
            )
            assert settled == [True, False]
            assert await second.recovery.recover(move)  # then: over, nothing left to do
            assert two.move_of("old") is None

    try:
        asyncio.run(scenario())
        assert one.db.query("SELECT state FROM deployments") == [("lost",)]
    finally:
        one.close()
        two.close()


def test_a_record_another_sp_removed_stays_removed(pg_url: str) -> None:
    one, two = Registry(pg_url), Registry(pg_url)
    try:
        one.add_deployment(record("d1", "http://hp1:1"))
        two.refresh_deployment("d1")
        one.remove_deployment("d1")  # the other's memory has not heard yet
        assert two.deployment("d1") is not None
        with pytest.raises(KeyError):
            two.set_state("d1", "lost", "it stopped answering")
        assert one.db.query("SELECT COUNT(*) FROM deployments") == [(0,)]
        assert two.deployment("d1") is None  # and its memory is put right
    finally:
        one.close()
        two.close()


def test_a_move_left_by_a_crash_is_settled_at_start_before_any_guest_is_resumed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # One SP (SQLite): it crashed after the target restored the guest and before the switch.
    # Restarted, it must keep the restored copy; resuming the old one (as the restore does
    # with a guest left paused) would run the stateful service twice.
    path = tmp_path / "registry.sqlite"
    crashed = Registry(path)
    crashed.put_version(counter())
    crashed.set_route("VmCounter", (("1.0", 100),))
    crashed.add_deployment(record("old", NOWHERE))
    crashed.begin_move("old", "VmCounter", "http://hp2:1")
    crashed.add_deployment(replace(record("new", "http://hp2:1"), deployer=crashed.instance))
    crashed.close()
    restarted = Registry(path)
    restarted.hold_instance()

    async def scenario() -> int:
        async with sp(restarted, tmp_path) as me:
            return await me.recovery.settle_left()

    try:
        with caplog.at_level(logging.WARNING):
            assert asyncio.run(scenario()) == 1
        assert restarted.db.query("SELECT id, state FROM deployments") == [("new", "ready")]
        assert restarted.moves() == []
        assert "the move is complete" in caplog.text
    finally:
        restarted.close()



class Looking(Registry):
    """A registry that keeps which SPs each look at the others found alive (the mover's, for
    the test to act between them)."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.looks: list[set[str]] = []

    def alive(self, instances: Sequence[str]) -> set[str]:
        found = super().alive(instances)
        self.looks.append(found)
        return found


def undrained_and_cut_off(pg_url: str) -> tuple[Looking, Registry, float]:
    """A move begun while the other SP has a message at the deployment and its registry
    session holding its instance lock has just ended (the registry restarted: it takes the
    lock back at its next look). Returns the mover's registry, the other's and the move's
    start."""
    mover, other = Looking(pg_url), Registry(pg_url)
    for registry in (mover, other):
        registry.hold_instance()
    mover.add_deployment(record("old", "http://hp1:1"))
    move = mover.begin_move("old", "VmCounter", "http://hp2:1")
    other.share_load([("old", 1, time.time())], time.time())  # not answered yet
    with psycopg.connect(pg_url, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (f"dynasoar-sp {other.instance} locks",),
        ).fetchall()
    assert ended == [(True,)]
    time.sleep(0.2)  # (the server frees the session's locks)
    return mover, other, move.started


async def looked(registry: Looking, times: int, task: asyncio.Task[None]) -> None:
    """Until ``registry`` has looked ``times`` times at who is alive, or ``task`` is done."""
    async with asyncio.timeout(30.0):
        while len(registry.looks) < times and not task.done():
            await asyncio.sleep(0.01)


def test_a_mover_waits_for_an_sp_whose_lock_is_momentarily_gone_to_say_it_drained(
    pg_url: str, tmp_path: Path
) -> None:
    mover, other, started = undrained_and_cut_off(pg_url)

    async def scenario() -> None:
        async with sp(mover, tmp_path) as mine:
            waiting = asyncio.create_task(
                mine.watch.wait_for_others("old", started, time.monotonic() + 60.0)
            )
            await looked(mover, MOVER_GONE_CHECKS - 1, waiting)
            assert all(other.instance not in found for found in mover.looks)
            assert not waiting.done()  # within its grace: its message may be at the guest
            other.hold_instance()  # its next look: its lock taken back
            assert not waiting.done()
            other.share_load([("old", 0, time.time())], time.time())  # answered
            await asyncio.wait_for(waiting, 10.0)

    try:
        asyncio.run(scenario())
    finally:
        mover.close()
        other.close()


def test_an_sp_gone_for_good_is_passed_over_after_the_grace_within_the_deadline(
    pg_url: str, tmp_path: Path
) -> None:
    mover, other, started = undrained_and_cut_off(pg_url)

    async def scenario() -> None:
        async with sp(mover, tmp_path) as mine:
            with pytest.raises(Busy):  # the move's deadline comes before the grace is over
                await mine.watch.wait_for_others("old", started, time.monotonic() + 0.3)
            mover.looks.clear()
            await asyncio.wait_for(
                mine.watch.wait_for_others("old", started, time.monotonic() + 60.0), 30.0
            )
            assert len(mover.looks) == MOVER_GONE_CHECKS
            assert all(other.instance not in found for found in mover.looks)

    try:
        asyncio.run(scenario())
    finally:
        mover.close()
        other.close()


def test_a_mover_whose_lock_is_momentarily_gone_keeps_its_move(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The watching side of the grace: an SP following another's move finds the mover's
    instance lock gone (its registry session ended, as in a registry restart) for fewer than
    MOVER_GONE_CHECKS looks in a row; it settles nothing, its gate stays closed, and the move
    ends as the mover ends it."""
    mover, other = Registry(pg_url), Looking(pg_url)
    for registry in (mover, other):
        registry.hold_instance()
    old, new = record("old", "http://hp1:1"), record("new", "http://hp2:1")
    mover.add_deployment(old)
    other.refresh_deployment("old")

    async def scenario() -> None:
        async with sp(other, tmp_path) as them:
            mover.begin_move("old", "VmCounter", new.host)
            them.watch.changed("old", other.move_of("old"))
            await asyncio.sleep(0.05)
            waiting = asyncio.create_task(closed_gate(them, "old").passage(60.0))
            with psycopg.connect(pg_url, autocommit=True) as admin:
                ended = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s",
                    (f"dynasoar-sp {mover.instance} locks",),
                ).fetchall()
            assert ended == [(True,)]
            other.looks.clear()
            await looked(other, MOVER_GONE_CHECKS - 1, waiting)
            assert all(mover.instance not in found for found in other.looks)
            mover.hold_instance()  # its next look: the lock taken back, within the grace
            await looked(other, MOVER_GONE_CHECKS + 2, waiting)
            assert mover.instance in other.looks[-1]
            assert not waiting.done()  # the gate is still closed: nobody settled the move
            assert other.move_of("old") is not None
            mover.add_deployment(new)  # the switch, as the mover makes it
            mover.remove_deployment("old")
            other.refresh_deployment("new")
            other.refresh_deployment("old")
            mover.end_move("old")
            them.watch.changed("old", other.move_of("old"))
            assert (await asyncio.wait_for(waiting, 5.0)).id == "new"

    try:
        with caplog.at_level(logging.WARNING):
            asyncio.run(scenario())
        assert "its move is settled" not in caplog.text
    finally:
        mover.close()
        other.close()
