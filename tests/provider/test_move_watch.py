"""Moves another SP makes, through a real shared PostgreSQL registry: this SP holds its messages
for the moving deployment, says when its own are answered, and lets them go where the
deployment went (or back to it, when it stayed) once the move ends."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from dynasoar.errors import Busy
from dynasoar.provider.gates import MoveGates
from dynasoar.provider.load import LoadTracker
from dynasoar.provider.move_watch import MoveWatch
from dynasoar.provider.registry import DeploymentRecord, Registry


def record(deployment_id: str, host: str) -> DeploymentRecord:
    return DeploymentRecord(
        deployment_id,
        "VmCounter",
        "1.0",
        host,
        f"{host}/svc/{deployment_id}",
        "ready",
        datetime.now(UTC),
    )


def test_messages_wait_at_every_sp_and_go_where_the_deployment_went(pg_url: str) -> None:
    mover, other = Registry(pg_url), Registry(pg_url)
    for registry in (mover, other):
        registry.hold_instance()
    old, new = record("old", "http://hp1:1"), record("new", "http://hp2:1")
    mover.add_deployment(old)
    other.refresh_deployment("old")

    async def scenario() -> None:
        load, gates = LoadTracker(), MoveGates()
        watch = MoveWatch(other, gates, load, asyncio.get_running_loop())
        mine = MoveWatch(mover, MoveGates(), LoadTracker(), asyncio.get_running_loop())
        load.begin("old")  # a message of the other SP's is at the deployment
        other.share_load(load.active_since(float("-inf")), time.time())
        move = mover.begin_move("old", "VmCounter", new.host)
        watch.changed("old", other.move_of("old"))
        await asyncio.sleep(0.05)
        gate = gates.get("old")
        assert gate is not None and not gate.is_open  # new messages wait here too
        with pytest.raises(Busy):  # its message is not answered yet: no pause
            await mine.wait_for_others("old", move.started, time.monotonic() + 0.3)
        waiting = asyncio.create_task(gate.passage(10.0))
        load.end("old")  # answered: the other SP says so
        await mine.wait_for_others("old", move.started, time.monotonic() + 5.0)
        mover.add_deployment(new)  # the switch, as the mover makes it
        mover.remove_deployment("old")
        other.refresh_deployment("new")
        other.refresh_deployment("old")
        mover.end_move("old")
        watch.changed("old", other.move_of("old"))
        assert (await asyncio.wait_for(waiting, 5.0)).id == "new"
        await watch.close()

    try:
        asyncio.run(scenario())
    finally:
        mover.close()
        other.close()


def test_a_move_that_failed_lets_messages_go_to_the_deployment_as_it_was(pg_url: str) -> None:
    mover, other = Registry(pg_url), Registry(pg_url)
    mover.hold_instance()
    mover.add_deployment(record("old", "http://hp1:1"))
    other.refresh_deployment("old")

    async def scenario() -> None:
        gates = MoveGates()
        watch = MoveWatch(other, gates, LoadTracker(), asyncio.get_running_loop())
        mover.begin_move("old", "VmCounter", "http://hp2:1")
        watch.changed("old", other.move_of("old"))
        await asyncio.sleep(0.05)
        gate = gates.get("old")
        assert gate is not None
        waiting = asyncio.create_task(gate.passage(10.0))
        mover.end_move("old")  # the move failed: the guest runs on at its source
        watch.changed("old", None)
        assert (await asyncio.wait_for(waiting, 5.0)).id == "old"
        await watch.close()

    try:
        asyncio.run(scenario())
    finally:
        mover.close()
        other.close()


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
