"""Finishing or undoing a move whose SP died (a shared registry), so that its guest is neither
left paused nor run twice. The SPs that see the mover gone all try the move's lock in the
registry; the one that takes it settles the move from what the registry holds, then deletes
the move's record (the others open their gates onto what there is once that is announced):

    the target's deployment recorded ready     the restore completed: the move succeeded; the
      by the mover since the move began          old record goes, the old guest is undeployed
                                                 at its source (paused: it never answers again)
    otherwise                                   the move did not happen: a half-made deployment
                                                 on the target goes, the old guest is resumed at
                                                 its source (harmless if it was never paused);
                                                 a source that does not resume it makes the
                                                 stateful service lost (dyn:HostLost)

A recovering SP that dies in turn releases the lock with its session: another takes it over
(each step is idempotent). Its steps are each bounded (the Resume by ``RESUME_TIMEOUT``)."""

from __future__ import annotations

import logging

from dynasoar.consumer.host_client import HostClient
from dynasoar.errors import DynasoarError
from dynasoar.provider.deployer import Deployer
from dynasoar.provider.registry import DeploymentRecord, Registry
from dynasoar.provider.registry_grid import MoveRecord

log = logging.getLogger(__name__)

#: Seconds the source host has to resume the guest before the service is taken for lost.
RESUME_TIMEOUT = 30.0


async def resume_or_lose(
    client: HostClient, deployer: Deployer, old: DeploymentRecord, why: str
) -> str | None:
    """Resume a paused guest at its source (a Resume of a running guest does nothing); a
    source that does not resume it makes the stateful service lost, ``why`` saying how it
    came to be paused, and what the host said is returned (None: resumed)."""
    try:
        await client.resume(old.host, old.id, timeout=RESUME_TIMEOUT)
    except DynasoarError as exc:
        deployer.lose(old, f"{why} and its host did not resume it: {exc.reason}")
        return exc.reason
    return None


def move_lock(deployment_id: str) -> str:
    """The lock held by whoever settles a move whose SP died."""
    return f"dynasoar:move:{deployment_id}"


class MoveRecovery:
    def __init__(self, registry: Registry, deployer: Deployer, client: HostClient) -> None:
        self._registry = registry
        self._deployer = deployer
        self._client = client

    async def recover(self, move: MoveRecord) -> bool:
        """Settle ``move`` (its SP is gone) unless another SP is at it: True when the move is
        over (settled here, or ended meanwhile), False while another SP holds it."""
        lock = move_lock(move.deployment_id)
        if not self._registry.db.try_lock(lock):
            return False
        try:
            now = self._registry.move_of(move.deployment_id)
            if now is None or (now.instance, now.started) != (move.instance, move.started):
                return True  # settled by another SP already (or a new move since)
            await self._settle(move)
            self._registry.end_move(move.deployment_id, of=move.instance)
            return True
        finally:
            self._registry.db.unlock(lock)

    async def settle_left(self) -> int:
        """The moves left by SPs that are gone, settled (at start, before the restore would
        resume a guest they paused: this SP's own move, cut short by a crash or a kill, and
        one whose SP died while no other SP was running). Returns how many."""
        left = [m for m in self._registry.moves() if m.instance != self._registry.instance]
        running = self._registry.alive([m.instance for m in left]) if left else set()
        settled = 0
        for move in left:
            if move.instance not in running and await self.recover(move):
                settled += 1
        return settled

    async def _settle(self, move: MoveRecord) -> None:
        # What the mover recorded, as the registry has it (not as this SP last heard it).
        self._registry.refresh_service(move.service)
        self._registry.refresh_deployment(move.deployment_id)
        old = self._registry.deployment(move.deployment_id)
        made = [
            d
            for d in self._registry.records_of(move.service)
            if d.host == move.target
            and d.deployer == move.instance
            and d.id != move.deployment_id
            and d.created.timestamp() >= move.started
        ]
        restored = [d for d in made if d.state == "ready"]
        if restored:
            self._switch(move, old, restored[0])
            return
        for half in made:  # a restore cut short: its record, and whatever the target made
            if self._registry.remove_deployment(half.id) is not None:
                self._deployer.shipper.undeploy_later(half.host, half.id)
        if old is None or old.state == "lost":
            log.warning("%s's move ended with its SP; nothing is left to resume", move.service)
            return
        await self._resume(move, old)

    def _switch(
        self, move: MoveRecord, old: DeploymentRecord | None, new: DeploymentRecord
    ) -> None:
        """The mover died after the target restored the guest: the move is done as it would
        have done it (the old guest, saved and paused, must never run again: two copies of
        a stateful service would part ways)."""
        if old is not None:
            self._deployer.load.forget(old.id)
            if self._registry.remove_deployment(old.id) is not None:
                self._deployer.shipper.undeploy_later(old.host, old.id)
        log.warning(
            "the SP moving %s died after its guest was restored on %s: the move is complete "
            "(%s there)",
            move.service,
            new.host,
            new.id,
        )

    async def _resume(self, move: MoveRecord, old: DeploymentRecord) -> None:
        """The move did not happen: the guest runs on at its source (a Resume of a guest that
        was never paused does nothing), or the stateful service is lost."""
        why = f"the SP moving it to {move.target} stopped mid-move"
        if await resume_or_lose(self._client, self._deployer, old, why) is not None:
            return
        log.warning(
            "the SP moving %s to %s died before the switch: resumed at %s",
            move.service,
            move.target,
            old.host,
        )
