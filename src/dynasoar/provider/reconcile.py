"""Making the registry and the hosts agree, after any crash: each host's own ``List`` against
what the registry holds for it.

    on the host, not in the registry   (ours: the Deploy named this SP as its owner) undeployed,
                                       after a short grace (at start at once)
    "ready" here, gone from the host   forgotten (stateless) or lost (stateful)
    "ready" here, paused there         resumed (a move was cut short before the switch)
    "lost" here, still on the host     in use again, its state intact
    "deploying" here, no Deploy under way in this process
                                       a crash's leftover: removed, and undeployed on the host

Run at start (the restore), when a host registers or comes back, and periodically from the
control loop. A host that does not answer ``List`` is left to the heartbeats; at start its
deployments are probed one by one instead.
"""

from __future__ import annotations

import asyncio
import logging
import time

from dynasoar.consumer.host_client import HostClient
from dynasoar.errors import DynasoarError
from dynasoar.provider.deployer import Deployer
from dynasoar.provider.registry import DeploymentRecord, Registry

log = logging.getLogger(__name__)

LIST_TIMEOUT = 5.0
#: Hosts asked at once.
CONCURRENCY = 16


class Reconciler:
    def __init__(
        self, registry: Registry, client: HostClient, deployer: Deployer, grace: float = 10.0
    ) -> None:
        self._registry = registry
        self._client = client
        self._deployer = deployer
        self._shipper = deployer.shipper
        self.grace = grace
        #: (host, deployment id) -> when it was first seen on its host unknown to the registry
        self._unknown: dict[tuple[str, str], float] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def at_start(self) -> None:
        """The restore: every host the registry has deployments on, at once."""
        hosts = sorted({r.host for r in self._registry.deployments()})
        await self._each(hosts, at_start=True)

    async def hosts(self, addresses: list[str]) -> None:
        await self._each(addresses, at_start=False)

    def soon(self, address: str) -> None:
        """Reconcile ``address`` in the background (it registered, or came back)."""
        task = asyncio.create_task(self.host(address))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _each(self, addresses: list[str], at_start: bool) -> None:
        slots = asyncio.Semaphore(CONCURRENCY)

        async def one(address: str) -> None:
            async with slots:
                await self.host(address, at_start=at_start)

        await asyncio.gather(*(one(a) for a in addresses))

    async def host(self, address: str, at_start: bool = False) -> None:
        # The records as they were *before* the host's List: one that became ready while the
        # List was on its way must not be judged by a List taken before it was deployed.
        ours = [r for r in self._registry.deployments() if r.host == address]
        try:
            listed = await self._client.list_deployments(address, timeout=LIST_TIMEOUT)
        except DynasoarError as exc:
            if at_start:
                await self._probe_all(address, exc.reason)
            return
        on_host = {item.get("id", ""): item for item in listed}
        for record in ours:
            await self._settle(record, on_host.get(record.id))
        # ...and what the host runs is ours if the registry knows it now.
        known = {r.id for r in ours} | {
            r.id for r in self._registry.deployments() if r.host == address
        }
        now = time.monotonic()
        for deployment_id, item in on_host.items():
            key = (address, deployment_id)
            if (
                deployment_id in known
                or deployment_id in self._shipper.in_progress
                or item.get("owner") != self._shipper.owner
            ):
                self._unknown.pop(key, None)
                continue
            first = self._unknown.setdefault(key, now)
            if at_start or now - first >= self.grace:
                log.warning(
                    "%s runs %s (%s) for this Service Provider, which has no record of it: "
                    "undeploying it",
                    address,
                    deployment_id,
                    item.get("service", "?"),
                )
                self._unknown.pop(key, None)
                await self._shipper.undeploy(address, deployment_id)
        for key in [k for k in self._unknown if k[0] == address and k[1] not in on_host]:
            del self._unknown[key]

    def _elsewhere(self, record: DeploymentRecord) -> bool:
        """Under way in another SP that is still running (sharing the registry)."""
        deployer = record.deployer
        if not deployer or deployer == self._registry.instance or not self._registry.shared:
            return False
        return deployer in self._registry.alive([deployer])

    async def _settle(self, record: DeploymentRecord, on_host: dict[str, str] | None) -> None:
        now = self._registry.deployment(record.id)
        if now is None or now.state != record.state:
            return  # removed or changed meanwhile: the next round judges it as it is then
        if record.state in ("deploying", "retiring") and self._elsewhere(record):
            return
        if record.state == "deploying":
            if record.id in self._shipper.in_progress:
                return
            log.warning(
                "%s's deployment %s on %s was left half-done (a crash?): removing it",
                record.service,
                record.id,
                record.host,
            )
            self._registry.remove_deployment(record.id)
            if on_host is not None:
                await self._shipper.undeploy(record.host, record.id)
        elif record.state == "retiring" and record.id not in self._deployer.retiring:
            # a crash's leftover: it was on its way out
            self._registry.remove_deployment(record.id)
            if on_host is not None:
                await self._shipper.undeploy(record.host, record.id)
        elif record.state == "ready" and on_host is None:
            self._deployer.lose(record, f"its host {record.host} no longer runs it")
        elif record.state == "ready" and (on_host or {}).get("state") == "saved":
            gate = self._deployer.gates.get(record.id)
            if gate is None or gate.is_open:  # paused for a move this SP is not making
                await self._resume(record)
        elif record.state == "lost" and on_host is not None and on_host.get("state") == "ready":
            if self._registry.host_state(record.host) in ("up", "unknown", "draining"):
                await self._deployer.revive(record)

    async def _resume(self, record: DeploymentRecord) -> None:
        """A guest left paused at its host by a move that was cut short (the SP stopped
        between saving it and switching the route): it runs on there."""
        try:
            if await self._client.resume(record.host, record.id, timeout=LIST_TIMEOUT):
                log.warning(
                    "%s's deployment %s on %s was paused by a move that did not finish: resumed",
                    record.service,
                    record.id,
                    record.host,
                )
        except DynasoarError as exc:
            log.warning("could not resume %s on %s: %s", record.id, record.host, exc.reason)

    async def _probe_all(self, address: str, why: str) -> None:
        """At start, for a host that does not answer List: its deployments, one by one."""
        for record in [r for r in self._registry.deployments() if r.host == address]:
            if record.state in ("deploying", "retiring"):
                if self._elsewhere(record):
                    continue
                self._registry.remove_deployment(record.id)
                self._shipper.undeploy_later(record.host, record.id)
                continue
            if record.state != "ready":
                continue
            try:
                await self._deployer.probe(record.endpoint, timeout=3.0)
            except DynasoarError as exc:
                self._deployer.lose(
                    record, f"neither its host ({why}) nor it ({exc.reason}) answered at start"
                )
            else:
                log.info("reusing %s of %s at %s", record.id, record.service, record.endpoint)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
