"""A mover cut off from the registry (its session ended, its locks with it) while another SP
settled its move does nothing more to it, and says so; one cut off briefly takes its move back
and finishes it; a move another SP is settling cannot be begun (a real shared PostgreSQL
registry; a mover that stands in for the hosts' save and restore)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import cast

import psycopg
import pytest
from moving_sps import NOWHERE, Sp, published, record, sp

from dynasoar.errors import Busy, DeploymentFailed, HostLost
from dynasoar.provider.database import lock_key
from dynasoar.provider.move_recovery import move_lock
from dynasoar.provider.moves import Mover
from dynasoar.provider.registry import DeploymentRecord, Registry, ServiceRecord
from dynasoar.provider.registry_grid import MoveRecord
from dynasoar.snapshots import Snapshot


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
        self,
        record: DeploymentRecord,
        service: ServiceRecord,
        state: Snapshot,
        target: str,
        move: MoveRecord,
    ) -> tuple[DeploymentRecord, int]:
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
