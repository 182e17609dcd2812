"""The SP moving a guest (:mod:`.moves`) holds the move's lock (:func:`.move_recovery.move_lock`)
from the move's beginning to its end, the lock an SP settling a dead mover's move takes
(:mod:`.move_recovery`). A mover cut off from the registry for longer than the others wait
for it (a network split: its session gone, and its locks with it) may find, when it comes to
switch to the restored guest or to resume the old one, that another SP settled the move
meanwhile: then it does nothing the settling SP did not decide, and its caller hears so.

    the lock still held, or taken back     the move is still its own (nobody settled it: a
      and the move's record its own          settling SP ends the move before it lets go)
    otherwise                              another SP settled it (or is settling it): the
                                             mover waits for the move to end (bounded), then
                                             keeps what the settling SP kept: the copy it
                                             restored on the target goes if the old deployment
                                             stayed (resumed there, no-op if it runs); its gate
                                             opens onto what there is; the caller gets
                                             dyn:DeploymentFailed saying which

On SQLite (one SP) the lock is this process's own and nobody else settles a running SP's
move: the move is always its own."""

from __future__ import annotations

import asyncio
import logging
import time

from dynasoar.consumer.host_client import HostClient
from dynasoar.errors import Busy, DeploymentFailed, DynasoarError
from dynasoar.provider.deployer import Deployer
from dynasoar.provider.gates import MoveGate
from dynasoar.provider.move_recovery import RESUME_TIMEOUT, move_lock, resume_or_lose
from dynasoar.provider.move_watch import MOVER_CHECK, MoveWatch
from dynasoar.provider.registry import DeploymentRecord, Registry
from dynasoar.provider.registry_grid import MoveRecord

log = logging.getLogger(__name__)

#: Seconds a mover that lost its move waits for the SP settling it to end it (that SP's
#: Resume is bounded by RESUME_TIMEOUT); past that the move's end is left to the move watch.
SETTLE_WAIT = RESUME_TIMEOUT + 10.0


class MoveFence:
    def __init__(
        self,
        registry: Registry,
        deployer: Deployer,
        client: HostClient,
        watch: MoveWatch | None,
    ) -> None:
        self._registry = registry
        self._deployer = deployer
        self._client = client
        self._watch = watch

    def begin(self, record: DeploymentRecord, target: str) -> MoveRecord:
        """The move's lock taken, then the move recorded (every SP holds its messages)."""
        lock = move_lock(record.id)
        if not self._registry.db.try_lock(lock):
            raise Busy(
                f"{record.service}'s deployment {record.id} is being settled by another SP (a "
                "move of it whose SP stopped answering); move it again once that is done"
            )
        try:
            return self._registry.begin_move(record.id, record.service, target)
        except BaseException:
            self._registry.db.unlock(lock)
            raise

    def ours(self, move: MoveRecord) -> bool:
        """Whether the move is still this SP's to finish: its lock held (or, lost with a
        session, taken back while free) and its record the one this SP made. False too when
        the registry cannot say (it cannot be reached): better no switch than two guests."""
        lock = move_lock(move.deployment_id)
        try:
            if not self._registry.db.holds(lock) and not self._registry.db.try_lock(lock):
                return False
            now = self._registry.move_of(move.deployment_id)
        except DynasoarError as exc:
            log.warning("the move of %s cannot be confirmed: %s", move.deployment_id, exc.reason)
            return False
        return now is not None and (now.instance, now.started) == (move.instance, move.started)

    def end(self, move: MoveRecord, ours: bool) -> None:
        """The move's record deleted (when it is still this SP's), then its lock let go."""
        try:
            if ours:
                self._registry.end_move(move.deployment_id, of=move.instance)
        except DynasoarError as exc:  # the others end it when they see this SP gone
            log.warning("the move of %s is not ended in the registry: %s", move.deployment_id, exc)
        finally:
            self._registry.db.unlock(move_lock(move.deployment_id))

    async def lost(
        self,
        record: DeploymentRecord,
        move: MoveRecord,
        gate: MoveGate,
        restored: DeploymentRecord | None,
    ) -> DeploymentFailed:
        """Another SP settled (or is settling) this SP's move: what it decided is kept, and
        the fault for the move's caller returned. ``restored``: the copy this SP restored on
        the target, if it did (after the settling SP looked, it may not know of it)."""
        log.warning(
            "the move of %s to %s was settled by another SP while this one was cut off from "
            "the registry; it does nothing more to its guests",
            record.service,
            move.target,
        )
        ended, now = await self._ended(move)
        if not ended:
            if self._watch is not None:
                self._watch.hand_over(gate, move)
            else:
                gate.open(error=DeploymentFailed(f"{record.service}'s move is unsettled"))
            return DeploymentFailed(
                f"{record.service} did not move to {move.target}: this SP lost the move's lock "
                "(cut off from the registry) and another SP is settling the move; see where "
                f"{record.service} runs once it is done (dynasoar status)"
            )
        self._registry.refresh_deployment(record.id)
        old = self._registry.deployment(record.id)
        if old is not None:  # kept (lost, if its host did not resume it), not the copy
            await self._keep_old(old, restored, resume=now is None and old.state != "lost")
        if self._watch is not None:
            self._watch.open_onto_now(gate)
        elif old is not None:
            gate.open(old)
        elif restored is not None:
            gate.open(restored)
        if old is not None:
            where = f"it runs on at {record.host}" if old.state != "lost" else "it is lost"
        else:
            where = f"it kept the guest restored on {move.target}"
        return DeploymentFailed(
            f"{record.service}'s move to {move.target} was settled by another SP while this "
            f"one was cut off from the registry ({where}); this SP did nothing more to it"
        )

    async def _ended(self, move: MoveRecord) -> tuple[bool, MoveRecord | None]:
        """Until the move's record is gone or another's (True, and the move recorded now:
        a later one), or SETTLE_WAIT (False)."""
        deadline = time.monotonic() + SETTLE_WAIT
        while True:
            try:
                now = self._registry.move_of(move.deployment_id)
                if now is None or (now.instance, now.started) != (move.instance, move.started):
                    return True, now
            except DynasoarError as exc:  # the registry: looked at again
                log.info("the move of %s: %s", move.deployment_id, exc.reason)
            if time.monotonic() >= deadline:
                return False, move
            await asyncio.sleep(MOVER_CHECK)

    async def _keep_old(
        self, old: DeploymentRecord, restored: DeploymentRecord | None, resume: bool
    ) -> None:
        """The settling SP kept the old deployment (the target had not restored the guest
        when it looked): a copy restored since must never serve beside it (nor instead of a
        deployment it found lost), and the old guest, saved (paused) by this SP, perhaps
        after that SP resumed it, runs (a Resume of a running guest does nothing; none while
        a later move of it is under way)."""
        if restored is not None and self._registry.remove_deployment(restored.id) is not None:
            self._deployer.shipper.undeploy_later(restored.host, restored.id)
        if resume:
            why = "its move was settled by another SP"
            await resume_or_lose(self._client, self._deployer, old, why)
