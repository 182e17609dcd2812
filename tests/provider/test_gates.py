"""Where messages for a moving deployment wait: until the move is over, within their own
deadline, a bounded number of them; then they go where the deployment went, or get the move's
fault; a message that picked the old deployment after the switch goes straight to the new."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from dynasoar.errors import Busy, DeploymentTimeout, HostLost, InvalidRequest
from dynasoar.provider.gates import MoveGate, MoveGates
from dynasoar.provider.registry import DeploymentRecord


def record(deployment_id: str, host: str) -> DeploymentRecord:
    return DeploymentRecord(
        deployment_id, "VmCounter", "1.0", host, f"{host}/Counter", "ready", datetime.now(UTC)
    )


OLD, NEW = record("old", "http://a"), record("new", "http://b")


def test_waiting_messages_go_where_the_deployment_went() -> None:
    async def scenario() -> list[DeploymentRecord]:
        gate = MoveGate(OLD)
        waiting = [asyncio.create_task(gate.passage(10.0)) for _ in range(3)]
        await asyncio.sleep(0.01)
        assert not any(task.done() for task in waiting)  # held while the move is under way
        gate.open(NEW)
        return [*await asyncio.gather(*waiting), await gate.passage(10.0)]

    assert asyncio.run(scenario()) == [NEW] * 4


def test_a_move_that_did_not_happen_lets_them_through_to_the_source() -> None:
    async def scenario() -> tuple[DeploymentRecord, bool]:
        gate = MoveGate(OLD)
        waiting = asyncio.create_task(gate.passage(10.0))
        await asyncio.sleep(0)
        gate.open(OLD)
        return await waiting, gate.stayed

    assert asyncio.run(scenario()) == (OLD, True)


def test_a_gate_opened_onto_its_record_read_again_counts_as_stayed() -> None:
    async def scenario() -> bool:
        gate = MoveGate(OLD)
        gate.open(replace(OLD, changed=datetime.now(UTC)))  # as the registry has it now
        return gate.stayed

    assert asyncio.run(scenario())


def test_a_lost_move_answers_its_fault() -> None:
    async def scenario() -> None:
        gate = MoveGate(OLD)
        waiting = asyncio.create_task(gate.passage(10.0))
        await asyncio.sleep(0)
        gate.open(error=HostLost("lost while it moved"))
        with pytest.raises(HostLost, match="lost while it moved"):
            await waiting
        assert not gate.stayed

    asyncio.run(scenario())


def test_the_queue_is_bounded_and_each_wait_has_a_deadline() -> None:
    async def scenario() -> None:
        gate = MoveGate(OLD, limit=2)
        waiting = [asyncio.create_task(gate.passage(10.0)) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(Busy, match="2 messages wait"):
            await gate.passage(10.0)
        with pytest.raises(Busy):
            await gate.passage(10.0)
        gate.open(NEW)
        await asyncio.gather(*waiting)
        late = MoveGate(OLD)
        with pytest.raises(DeploymentTimeout, match="not sent"):
            await late.passage(0.01)

    asyncio.run(scenario())


def test_gates_remember_moves_and_refuse_a_second_one_at_once() -> None:
    async def scenario() -> None:
        gates = MoveGates()
        assert gates.get("old") is None
        gate = gates.close(OLD)
        assert gates.get("old") is gate
        with pytest.raises(InvalidRequest, match="moving already"):
            gates.close(OLD)
        gate.open(NEW)
        assert await gates.get("old").passage(1.0) == NEW  # type: ignore[union-attr]
        again = gates.close(OLD)  # a new move of it (it came back): a new gate
        assert gates.get("old") is again and not again.is_open

    asyncio.run(scenario())
