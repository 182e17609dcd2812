"""Moves another SP makes, through a real shared PostgreSQL registry: this SP holds its messages
for the moving deployment, says when its own are answered, and lets them go where the
deployment went (or back to it, when it stayed) once the move ends; a move whose SP died is
settled by exactly one of the others before any gate opens; a mover cut off from the
registry while another SP settled its move does nothing more to it, and says so."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import psycopg
import pytest

from dynasoar.consumer.host_client import HostClient
from dynasoar.deadlines import Deadlines
from dynasoar.errors import Busy, DeploymentFailed, HostLost
from dynasoar.http import ConnectionPool
from dynasoar.images import ImageCache
from dynasoar.provider.database import lock_key
from dynasoar.provider.deployer import Deployer
from dynasoar.provider.gates import MoveGate
from dynasoar.provider.hosts import HostDirectory
from dynasoar.provider.load import LoadTracker
from dynasoar.provider.move_recovery import MoveRecovery, move_lock
from dynasoar.provider.move_watch import MoveWatch
from dynasoar.provider.moves import Mover
from dynasoar.provider.registry import DeploymentRecord, Registry, ServiceRecord
from dynasoar.provider.registry_grid import MoveRecord
from dynasoar.provider.shipper import Shipper
from dynasoar.snapshots import Snapshot
from dynasoar.soap.client import SoapClient

#: Nothing listens here: a host asked there fails at once (a refused connection).
NOWHERE = "http://127.0.0.1:1"


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


def counter() -> ServiceRecord:
    return ServiceRecord(
        "VmCounter", "1.0", "vm", False, "0" * 64, 1, datetime.now(UTC), "/nowhere", b""
    )


@dataclass
class Sp:
    """One SP's side of the moves: its deployer (real shipper and host client, its gates and
    load), what settles a dead mover's moves, and its watch of the others' moves."""

    deployer: Deployer
    recovery: MoveRecovery
    watch: MoveWatch
    hosts: HostDirectory
    client: HostClient


@asynccontextmanager
async def sp(registry: Registry, tmp: Path) -> AsyncIterator[Sp]:
    pool = ConnectionPool()
    client = HostClient(SoapClient(pool))
    shipper = Shipper(registry, client, pool, ImageCache(tmp / registry.instance), 30.0)
    hosts = HostDirectory(registry, client)
    deployer = Deployer(registry, hosts, shipper, LoadTracker(), Deadlines())
    recovery = MoveRecovery(registry, deployer, client)
    loop = asyncio.get_running_loop()
    watch = MoveWatch(registry, deployer.gates, deployer.load, loop, recovery)
    try:
        yield Sp(deployer, recovery, watch, hosts, client)
    finally:
        await watch.close()
        await shipper.close()
        await pool.close()


def closed_gate(side: Sp, deployment_id: str) -> MoveGate:
    gate = side.deployer.gates.get(deployment_id)
    assert gate is not None and not gate.is_open
    return gate


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


def published(pg_url: str) -> Registry:
    """The mover's registry, alive, with the stateful VmCounter published and deployed (at a
    host that cannot be reached: asking it to resume the guest fails)."""
    mover = Registry(pg_url)
    mover.hold_instance()
    mover.put_version(counter())
    mover.set_route("VmCounter", (("1.0", 100),))
    mover.add_deployment(record("old", NOWHERE))
    return mover


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


class CutOffMover(Mover):
    """A mover whose guest is saved at its source and restored on the target as a host would
    (the restored copy recorded ready by this SP, as its shipper records it), with what the
    test makes happen in between (``meanwhile``: this SP cut off from the registry, another SP
    settling its move). The steps a host takes are left out: what is tested is what the SPs
    do in the registry, and to which guests."""

    def __init__(
        self, registry: Registry, side: Sp, spool: Path,
        meanwhile: Callable[[MoveRecord], Awaitable[None]],
    ) -> None:
        super().__init__(
            registry, side.hosts, side.deployer, side.client, spool, watch=side.watch
        )
        self.meanwhile = meanwhile
        self.restore_fails = False

    async def _save(self, record: DeploymentRecord) -> Snapshot:
        return cast(Snapshot, None)  # (read by _restore only, which this test's does not)

    async def _restore(
        self, record: DeploymentRecord, service: ServiceRecord, state: Snapshot, target: str
    ) -> tuple[DeploymentRecord, int]:
        move = self._registry.move_of(record.id)
        assert move is not None
        await self.meanwhile(move)
        if self.restore_fails:
            raise DeploymentFailed("the target could not restore the guest")
        new = replace(record_on("new", target), deployer=self._registry.instance)
        self._registry.add_deployment(new)
        return new, 0


def record_on(deployment_id: str, host: str) -> DeploymentRecord:
    return record(deployment_id, host)


def cut_off(pg_url: str, deployment_id: str) -> None:
    """The registry session holding the move's lock ends (as in a network split that lasts):
    its locks go with it, the mover's instance lock too."""
    with psycopg.connect(pg_url, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
            "AND ((classid::bigint << 32) | objid::bigint) = %s",
            (lock_key(move_lock(deployment_id)),),
        ).fetchall()
    assert ended == [(True,)]
    time.sleep(0.2)  # (the server frees the session's locks)


def test_a_mover_cut_off_while_another_sp_settled_its_move_does_not_switch_it(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mover = published(pg_url)
    other = Registry(pg_url)
    other.hold_instance()

    async def scenario() -> None:
        async with sp(other, tmp_path) as them, sp(mover, tmp_path) as mine:

            async def settled_by_the_other(move: MoveRecord) -> None:
                cut_off(pg_url, "old")
                assert other.alive([mover.instance]) == set()  # the mover looks gone...
                # ...so the other SP settles its move (the target had not restored the guest:
                # the old one is resumed at its source; that host does not answer: lost).
                assert await them.recovery.recover(move)
                assert other.move_of("old") is None

            moving = CutOffMover(mover, mine, tmp_path, settled_by_the_other)
            old = mover.deployment("old")
            assert old is not None
            with pytest.raises(DeploymentFailed, match="was settled by another SP") as fault:
                await moving.move_one(old, "http://hp2:1")
            assert "it is lost" in fault.value.reason
            gate = mine.deployer.gates.get("old")
            assert gate is not None and gate.is_open  # onto what the other SP decided
            with pytest.raises(HostLost):
                await gate.passage(1.0)

    try:
        with caplog.at_level(logging.WARNING):
            asyncio.run(scenario())
        # What the other SP decided stands: the old deployment (lost), and no copy restored
        # by the mover beside it (not switched to: it would have run the service twice).
        assert other.db.query("SELECT id, state FROM deployments") == [("old", "lost")]
        assert other.move_of("old") is None
        assert "it does nothing more to its guests" in caplog.text
    finally:
        mover.close()
        other.close()


def test_a_mover_cut_off_briefly_takes_its_move_back_and_switches(
    pg_url: str, tmp_path: Path
) -> None:
    # Its session was lost, and no other SP settled the move meanwhile: the move is still its
    # own (its record, its lock taken back), so it switches as it would have.
    mover = published(pg_url)

    async def scenario() -> None:
        async with sp(mover, tmp_path) as mine:

            async def cut_off_a_moment(move: MoveRecord) -> None:
                cut_off(pg_url, "old")

            moving = CutOffMover(mover, mine, tmp_path, cut_off_a_moment)
            old = mover.deployment("old")
            assert old is not None
            outcome = await moving.move_one(old, "http://hp2:1")
            assert (outcome.source, outcome.target) == (NOWHERE, "http://hp2:1")

    try:
        asyncio.run(scenario())
        assert mover.db.query("SELECT id, state FROM deployments") == [("new", "ready")]
        assert mover.move_of("old") is None
        assert not mover.db.holds(move_lock("old"))  # let go with the move's end
    finally:
        mover.close()


def test_a_move_another_sp_is_settling_is_refused(pg_url: str, tmp_path: Path) -> None:
    mover = published(pg_url)
    other = Registry(pg_url)

    async def scenario() -> None:
        async with sp(mover, tmp_path) as mine:
            assert other.db.try_lock(move_lock("old"))  # settling a move of it
            moving = Mover(mover, mine.hosts, mine.deployer, mine.client, tmp_path)
            old = mover.deployment("old")
            assert old is not None
            with pytest.raises(Busy, match="is being settled by another SP"):
                await moving.move_one(old, "http://hp2:1")
            gate = mine.deployer.gates.get("old")
            assert gate is not None and gate.is_open and gate.stayed  # messages go on to it

    try:
        asyncio.run(scenario())
        assert mover.move_of("old") is None  # nothing recorded: the others hold nothing
    finally:
        mover.close()
        other.close()


def test_a_mover_cut_off_whose_restore_failed_does_not_resume_a_move_another_sp_settled(
    pg_url: str, tmp_path: Path
) -> None:
    mover = published(pg_url)
    other = Registry(pg_url)
    other.hold_instance()

    async def scenario() -> None:
        async with sp(other, tmp_path) as them, sp(mover, tmp_path) as mine:

            async def settled_by_the_other(move: MoveRecord) -> None:
                cut_off(pg_url, "old")
                assert await them.recovery.recover(move)

            moving = CutOffMover(mover, mine, tmp_path, settled_by_the_other)
            moving.restore_fails = True
            old = mover.deployment("old")
            assert old is not None
            # Not its own _stay (which would resume the guest, or declare it lost, again):
            with pytest.raises(DeploymentFailed, match="was settled by another SP"):
                await moving.move_one(old, "http://hp2:1")

    try:
        asyncio.run(scenario())
        assert other.db.query("SELECT id, state, reason FROM deployments") == [
            ("old", "lost", "the SP moving it to http://hp2:1 stopped mid-move and its host did "
             "not resume it: nothing answers at 127.0.0.1:1 (connection refused)")
        ]
    finally:
        mover.close()
        other.close()
