"""Moves another SP makes (a shared registry): while a deployment moves, messages for it wait at
every SP, not only at the one moving it.

The SP moving a deployment records the move (``moves``, announced to the others) before it
closes its own gate. Each other SP then closes a gate of its own for the deployment, waits for
the messages it already sent there to be answered, and says so in the registry (its row of
``deployment_load``, written at or after the move began); the moving SP pauses the guest only
when every other SP that relayed to it has said so, or is gone (not alive for as long as a
mover is given: :meth:`MoveWatch.wait_for_others`).
When the move ends (its record deleted), each SP opens its gate onto what there is: the new
deployment, the old one (the move failed and it runs on), or the fault of a lost one. A move
whose SP died is settled by one of the others (:mod:`.move_recovery`: the guest restored on
the target is kept, or the old one is resumed), which then ends it; until it is ended, every
SP's gate stays closed, so that none sends a message to a guest still paused. A mover that
was only cut off from the registry finds its move settled when it comes back
(:mod:`.move_fence`) and hands its own gate over here until the move ends."""

from __future__ import annotations

import asyncio
import logging
import time

from dynasoar.errors import Busy, DynasoarError, HostLost
from dynasoar.provider.gates import MoveGate, MoveGates
from dynasoar.provider.load import LoadTracker
from dynasoar.provider.move_recovery import MoveRecovery
from dynasoar.provider.placer import lost_fault
from dynasoar.provider.registry import Registry
from dynasoar.provider.registry_grid import MoveRecord

log = logging.getLogger(__name__)

#: Seconds between looks at whether the SP moving a deployment is still alive.
MOVER_CHECK = 1.0
#: Looks in a row that must find the mover gone before its move is settled: a running SP
#: whose registry session was lost (the registry restarted) is back within a look or two.
MOVER_GONE_CHECKS = 3
#: Seconds between looks at whether the other SPs have drained a moving deployment.
POLL = 0.02


class MoveWatch:
    def __init__(
        self,
        registry: Registry,
        gates: MoveGates,
        load: LoadTracker,
        loop: asyncio.AbstractEventLoop,
        recovery: MoveRecovery,
    ) -> None:
        self._registry = registry
        self._recovery = recovery
        self._gates = gates
        self._load = load
        self._loop = loop
        #: Gates this SP closed for other SPs' moves, and what watches each move.
        self._closed: dict[str, tuple[MoveGate, asyncio.Task[None]]] = {}

    def changed(self, deployment_id: str, move: MoveRecord | None) -> None:
        """A move began or ended (called from the registry's listening thread)."""
        self._loop.call_soon_threadsafe(self._changed, deployment_id, move)

    def _changed(self, deployment_id: str, move: MoveRecord | None) -> None:
        if move is not None:
            if move.instance != self._registry.instance and deployment_id not in self._closed:
                self._hold(deployment_id, move)
            return
        held = self._closed.pop(deployment_id, None)
        if held is not None:
            gate, task = held
            task.cancel()
            self._open(gate)

    def _hold(self, deployment_id: str, move: MoveRecord) -> None:
        record = self._registry.deployment(deployment_id)
        if record is None:
            return
        try:
            gate = self._gates.close(record)
        except DynasoarError:  # this SP moves it too: its own move holds the messages
            return
        task = asyncio.create_task(self._watch(deployment_id, move))
        self._closed[deployment_id] = (gate, task)

    async def _watch(self, deployment_id: str, move: MoveRecord) -> None:
        """Say when this SP's messages at the deployment are answered; then, until the move
        ends, make sure the SP moving it is alive (if it died, settle its move)."""
        try:
            await self._load.answered(deployment_id, every=POLL)
            outstanding, used = self._load.state_of(deployment_id)
            # Written at the move's start or later on the mover's clock, whatever this one says.
            self._registry.share_load(
                [(deployment_id, outstanding, used)], max(time.time(), move.started)
            )
            missing = 0
            while missing < MOVER_GONE_CHECKS:
                await asyncio.sleep(MOVER_CHECK)
                alive = bool(self._registry.alive([move.instance]))
                missing = 0 if alive else missing + 1
        except DynasoarError as exc:  # the registry: the gate stays closed until the move ends
            log.warning("following the move of %s: %s", deployment_id, exc.reason)
            return
        log.warning(
            "the SP moving %s's deployment %s stopped; its move is settled before any message "
            "goes to it",
            move.service,
            deployment_id,
        )
        await self._settle_then_open(move)

    async def _settle_then_open(self, move: MoveRecord) -> None:
        # Until one SP (this one, or another) has settled the move, the gate stays closed: the
        # guest may be paused. Another's outcome comes as the end of the move (announced:
        # _changed opens the gate and cancels this task); should that SP die too, its lock is
        # free again and this one takes it.
        while not await self._settled(move):
            await asyncio.sleep(MOVER_CHECK)
        self._registry.refresh_deployment(move.deployment_id)
        held = self._closed.pop(move.deployment_id, None)
        if held is not None:
            self._open(held[0])

    def hand_over(self, gate: MoveGate, move: MoveRecord) -> None:
        """This SP's own move, which another SP is settling (this one lost the move's lock,
        cut off from the registry): its gate stays closed until the move ends, then opens
        onto what there is; should the settling SP die too, this one settles it."""
        task = asyncio.create_task(self._settle_then_open(move))
        self._closed[move.deployment_id] = (gate, task)

    def open_onto_now(self, gate: MoveGate) -> None:
        """A move that is over: its gate opens onto what the registry holds now."""
        self._registry.refresh_deployment(gate.record.id)
        self._open(gate)

    async def _settled(self, move: MoveRecord) -> bool:
        try:
            return await self._recovery.recover(move)
        except DynasoarError as exc:  # the registry: tried again
            log.warning("settling the move of %s: %s", move.deployment_id, exc.reason)
            return False

    def _open(self, gate: MoveGate) -> None:
        """The move is over: open onto what there is now."""
        old = gate.record
        now = self._registry.deployment(old.id)
        if now is not None:
            if now.state == "lost":
                gate.open(error=lost_fault(now))
            else:
                gate.open(now)  # it did not move
            return
        ready = self._registry.deployments_of(old.service)
        if not ready:
            self._registry.refresh_service(old.service)
            ready = self._registry.deployments_of(old.service)
        if ready:
            gate.open(self._load.least_busy(ready))
        else:
            gate.open(
                error=HostLost(
                    f"{old.service} moved from {old.host}, and no deployment of it is recorded "
                    "now; send the message again"
                )
            )

    async def wait_for_others(self, deployment_id: str, since: float, deadline: float) -> None:
        """Until every other SP that relayed to the deployment has said that none of its
        messages is at it (since ``since``, epoch s), or ``deadline`` (monotonic): dyn:Busy.
        An SP that has not said so is passed over only once it is gone: seen not alive
        MOVER_GONE_CHECKS looks in a row, MOVER_CHECK apart (the grace a mover has). A running
        SP whose registry session was lost (the registry restarted) has no instance lock until
        its next look takes it back; its messages may still be at the guest."""
        if not self._registry.shared:
            return
        missing: dict[str, int] = {}  # the SPs not alive at the last looks: how many in a row
        next_look = time.monotonic()
        while True:
            waiting = set(self._registry.undrained(deployment_id, since))
            if waiting and time.monotonic() >= next_look:
                alive = self._registry.alive(sorted(waiting))
                missing = {i: 0 if i in alive else missing.get(i, 0) + 1 for i in waiting}
                next_look = time.monotonic() + MOVER_CHECK
            waiting = {i for i in waiting if missing.get(i, 0) < MOVER_GONE_CHECKS}
            if not waiting:
                return
            if time.monotonic() >= deadline:
                raise Busy(
                    f"messages sent to {deployment_id} through {len(waiting)} other SP(s) were "
                    "not answered in time; it was not moved"
                )
            await asyncio.sleep(POLL)

    async def close(self) -> None:
        tasks = [task for _, task in self._closed.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
