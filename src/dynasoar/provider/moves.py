"""Moving deployments between hosts (``dynasoar move``, management ``Move``) and off a host
that drains (``dynasoar drain``, ``hp --drain``). A VM guest moves with its state:

    close the gate      new messages for the deployment wait at the SP (bounded, each within
                        its own deadline and the move's)
    let it finish       the messages already at it are answered
    save                its host pauses the guest and saves memory + the disk layer it wrote
    ship                the parts the target lacks go there by digest (from the source,
                        through the SP), the target restores the guest: the state or nothing
    switch              the route goes to the new deployment; the gate opens onto it
    end the source      the paused guest is destroyed

A move that fails before the switch resumes the guest at its source and the gate opens onto it
again (no message lost, none sent twice: none was sent while it was paused); if the source is
gone too, the stateful service is *lost* (dyn:HostLost until deployed again): it never answers
from an empty guest. The mover holds the move's lock from its beginning to its end, and makes
sure the move is still its own before it switches or resumes (:mod:`.move_fence`): another SP
settles the move of a mover cut off from the registry, and only one of them acts. A stateless
code service moves by deploying it on the target and retiring the old deployment; a stateful
code service's state lives in its process and cannot move.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from dynasoar.consumer.host_client import HostClient, ShippedSnapshot, normalize
from dynasoar.errors import (
    Busy,
    DeploymentFailed,
    DynasoarError,
    HostLost,
    InvalidRequest,
    NoHostAvailable,
)
from dynasoar.provider.deployer import Deployer
from dynasoar.provider.gates import MoveGate
from dynasoar.provider.hosts import HostDirectory
from dynasoar.provider.move_fence import MoveFence
from dynasoar.provider.move_recovery import resume_or_lose
from dynasoar.provider.move_watch import MoveWatch
from dynasoar.provider.registry import DeploymentRecord, Registry, ServiceRecord
from dynasoar.provider.registry_grid import MoveRecord
from dynasoar.snapshots import Snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MoveOutcome:
    service: str
    source: str
    target: str
    deployment: str  # the new deployment's id
    seconds: float  # the whole move
    held: float  # how long messages were held at the SP
    bytes: int  # state bytes shipped


class Mover:
    def __init__(
        self,
        registry: Registry,
        hosts: HostDirectory,
        deployer: Deployer,
        client: HostClient,
        spool: Path,
        finish_within: float = 30.0,
        watch: MoveWatch | None = None,
    ) -> None:
        self._watch = watch
        self._registry = registry
        self._hosts = hosts
        self._deployer = deployer
        self._client = client
        self._spool = spool
        self._fence = MoveFence(registry, deployer, client, watch)
        #: how long messages at a deployment may take before it is paused to move
        self.finish_within = finish_within

    async def move(self, name: str, to: str) -> MoveOutcome:
        """Move ``name``'s deployment (a stateless service: one not on ``to``) to ``to``."""
        target = normalize(to)
        records = [d for d in self._registry.deployments_of(name)]
        if not records:
            raise InvalidRequest(f"{name} is not deployed: there is nothing to move")
        movable = [d for d in records if d.host != target]
        if not movable:
            raise InvalidRequest(f"{name} runs on {target} already")
        if self._registry.host(target) is None:
            await self._hosts.register(target)
        return await self.move_one(movable[0], target)

    async def move_one(self, record: DeploymentRecord, target: str) -> MoveOutcome:
        service = self._registry.version(record.service, record.version)
        if service is None:
            raise InvalidRequest(f"{record.service} {record.version} is no longer published")
        if service.kind != "vm":
            return await self._redeploy(record, service, target)
        return await self._move_guest(record, service, target)

    async def _redeploy(
        self, record: DeploymentRecord, service: ServiceRecord, target: str
    ) -> MoveOutcome:
        if not service.stateless:
            raise InvalidRequest(
                f"{service.name} is a stateful code service: its state lives in its process and "
                "cannot move (VM guests move with theirs); undeploy it and deploy it elsewhere"
            )
        began = time.monotonic()
        new = await self._deployer.shipper.ship(target, service)
        await self._deployer.retire(record, asyncio.get_running_loop().time() + 60.0)
        return MoveOutcome(
            service.name, record.host, target, new.id, time.monotonic() - began, 0.0, 0
        )

    async def _move_guest(
        self, record: DeploymentRecord, service: ServiceRecord, target: str
    ) -> MoveOutcome:
        began = time.monotonic()
        self._not_moving_elsewhere(record)
        gate = self._deployer.gates.close(record)
        try:
            # Every SP holds its messages for it from now on (one SP: only this one).
            move = self._fence.begin(record, target)
        except BaseException:
            gate.open(record)
            raise
        ours = True
        try:
            new, shipped = await self._save_and_restore(record, service, target, gate, move)
            if not self._fence.ours(move):  # settled by another SP: it is not switched here
                ours = False
                raise await self._fence.lost(record, move, gate, new)
            self._deployer.load.forget(record.id)
            self._registry.remove_deployment(record.id)
            gate.open(new)
        except _MoveLost as exc:
            ours = False
            raise exc.fault from exc.__cause__
        finally:
            self._fence.end(move, ours)
        self._deployer.shipper.undeploy_later(record.host, record.id)
        seconds = time.monotonic() - began
        held = (gate.opened_at or time.monotonic()) - gate.closed_at
        log.info(
            "moved %s from %s to %s in %.2f s (messages held %.2f s, %d state bytes shipped)",
            service.name,
            record.host,
            target,
            seconds,
            held,
            shipped,
        )
        return MoveOutcome(service.name, record.host, target, new.id, seconds, held, shipped)

    def _not_moving_elsewhere(self, record: DeploymentRecord) -> None:
        move = self._registry.move_of(record.id)
        if (
            move is not None
            and move.instance != self._registry.instance
            and self._registry.alive([move.instance])
        ):
            raise InvalidRequest(
                f"{record.service}'s deployment {record.id} is moving already (to "
                f"{move.target}, through another SP)"
            )

    async def _save_and_restore(
        self,
        record: DeploymentRecord,
        service: ServiceRecord,
        target: str,
        gate: MoveGate,
        move: MoveRecord,
    ) -> tuple[DeploymentRecord, int]:
        try:
            await self._finish(record, move)
            state = await self._save(record)
        except BaseException as exc:
            gate.open(record)  # nothing was saved: it runs on, untouched
            raise _not_moved(record, target, exc) from exc
        try:
            return await self._restore(record, service, state, target, move)
        except BaseException as exc:
            if not self._fence.ours(move):  # settled by another SP: it is not resumed here
                raise _MoveLost(await self._fence.lost(record, move, gate, None)) from exc
            lost = await self._stay(record, gate, exc)
            raise (lost or _not_moved(record, target, exc)) from exc

    async def _finish(self, record: DeploymentRecord, move: MoveRecord) -> None:
        """Wait for the messages already at the deployment to be answered: this SP's, and
        those other SPs sent (each says when its own are)."""
        deadline = time.monotonic() + self.finish_within
        if not await self._deployer.load.answered(record.id, deadline, every=0.005):
            raise Busy(
                f"messages at {record.service} did not finish within "
                f"{self.finish_within:.0f} s; it was not moved"
            )
        if self._watch is not None:
            await self._watch.wait_for_others(record.id, move.started, deadline)

    async def _save(self, record: DeploymentRecord) -> Snapshot:
        """Its host pauses the guest and saves its state."""
        return await self._client.save_state(record.host, record.id, timeout=120.0)

    async def _restore(
        self,
        record: DeploymentRecord,
        service: ServiceRecord,
        state: Snapshot,
        target: str,
        move: MoveRecord,
    ) -> tuple[DeploymentRecord, int]:
        """The saved state's parts the target lacks, fetched from the source and shipped; the
        copy restored there is recorded ready only if the move is still this SP's (one that
        another SP settled meanwhile may have resumed the guest at its source)."""
        held, _ = await self._client.query_cache(
            target, [p.sha256 for p in state.parts], timeout=30.0
        )
        spool = Path(tempfile.mkdtemp(prefix="move-", dir=self._spool))
        try:
            _, paths = await self._client.get_snapshot(
                record.host, state.digest, held, spool, timeout=600.0
            )
            shipped = sum(path.stat().st_size for path in paths.values())
            new = await self._deployer.shipper.ship(
                target,
                service,
                state=ShippedSnapshot(state, paths, required=True),
                admit=lambda: self._fence.ours(move),
            )
        finally:
            shutil.rmtree(spool, ignore_errors=True)
        return new, shipped

    async def _stay(
        self, record: DeploymentRecord, gate: MoveGate, why: BaseException
    ) -> HostLost | None:
        """The move failed after the guest was saved: it runs on at its source, or (its
        source gone too) it is lost, and that is returned; the gate opens onto what there is."""
        reason = why.reason if isinstance(why, DynasoarError) else repr(why)
        refused = await resume_or_lose(
            self._client, self._deployer, record, f"its move failed ({reason})"
        )
        if refused is not None:
            lost = HostLost(
                f"{record.service} was lost while it moved: the move failed ({reason}) and its "
                f"host {record.host} did not resume it ({refused}). Deploy it again "
                f"explicitly (dynasoar deploy {record.service}) to start afresh"
            )
            gate.open(error=lost)
            return lost
        log.warning("%s did not move (%s): resumed at %s", record.service, reason, record.host)
        gate.open(record)
        return None

    # -- draining a host ------------------------------------------------------------------------

    async def drain(self, address: str, deadline: float) -> int:
        """Move ``address``'s deployments elsewhere before it goes: VM guests with their
        state (to a host placement chooses), stateless code services by a replica elsewhere
        first, then the old one retires. Returns how many moved."""
        self._hosts.set_state(address, "draining")
        moved = 0
        for record in self._registry.deployments():
            service = self._registry.version(record.service, record.version)
            if record.host != address or record.state != "ready" or service is None:
                continue
            if service.kind == "vm":
                moved += await self._move_away(record, service)
            elif service.stateless:
                moved += await self._replace(record, service, address, deadline)
            else:
                log.warning("%s's state lives in its process: it cannot move", record.service)
        return moved

    async def _move_away(self, record: DeploymentRecord, service: ServiceRecord) -> int:
        targets = await self._deployer.places(service, frozenset({record.host}))
        reasons = []
        for target in targets:
            try:
                await self.move_one(record, target)
                return 1
            except DynasoarError as exc:
                reasons.append(f"{target}: {exc.reason}")
                if self._registry.deployment(record.id) is None:
                    return 0  # lost on the way
        log.warning(
            "%s could not move off %s: %s",
            record.service,
            record.host,
            "; ".join(reasons) or NoHostAvailable.__name__,
        )
        return 0

    async def _replace(
        self, record: DeploymentRecord, service: ServiceRecord, address: str, deadline: float
    ) -> int:
        replicas = [
            d for d in self._registry.deployments_of(service.name) if d.version == record.version
        ]
        if all(d.host == address for d in replicas):
            if await self._deployer.scale_out(service, exclude=frozenset({address})) is None:
                log.warning("%s found no other host to move to", record.service)
        await self._deployer.retire(record, deadline)
        return 1


class _MoveLost(Exception):
    """Another SP settled the move before this one resumed the guest: no longer its own."""

    def __init__(self, fault: DynasoarError) -> None:
        super().__init__(fault.reason)
        self.fault = fault


def _not_moved(record: DeploymentRecord, target: str, why: BaseException) -> DynasoarError:
    reason = why.reason if isinstance(why, DynasoarError) else repr(why)
    return DeploymentFailed(
        f"{record.service} did not move to {target}: {reason}; it runs on at {record.host}"
    )
