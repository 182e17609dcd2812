"""The Service Provider's control loop: scale stateless services out when their replicas cannot
keep up (Dynasoar's rule: deploy again when the existing deployments cannot meet demand),
undeploy deployments left idle (scale to zero; the next message deploys again), mark hosts
down when their heartbeats stop, and now and then reconcile the registry with the hosts and
ask those that ran our deployments what they consumed (the usage book, flushed on every look).
Every decision but the reconciliation reads only in-memory state.

It is the first thing a stopping Service Provider stops: while the SP drains, nobody hears the
hosts' heartbeats, and judging them then would undo every deployment. With several SPs on one
registry, only the one leading runs it (:mod:`.leader`); heartbeats heard by any of them are
judged from the registry (:mod:`.heartbeats`), and so are the messages any of them relays
(:mod:`.peerload`)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass

from dynasoar.errors import RegistryUnavailable
from dynasoar.provider.catalog import Advertised
from dynasoar.provider.deployer import Deployer
from dynasoar.provider.heartbeats import Heartbeats
from dynasoar.provider.peerload import SharedLoad
from dynasoar.provider.reconcile import Reconciler
from dynasoar.provider.registry import Registry
from dynasoar.provider.service_provider import ServiceProvider
from dynasoar.provider.usage import Usage

log = logging.getLogger(__name__)

#: Hosts without deployments of ours are reconciled a few at a time, in turn (what they could
#: run of ours unrecorded is a crash's rare leftover; a host that registers again is
#: reconciled at once anyway): a fleet of thousands costs the SP no burst of calls.
RECONCILE_SLICE = 16


@dataclass(frozen=True)
class Scaling:
    interval: float = 0.5  # seconds between looks
    scale_at: float = 4.0  # messages in flight per replica, sustained, that call for another
    sustain: int = 4  # looks in a row over scale_at before acting
    max_replicas: int = 4  # a stateless service's default limit
    idle_timeout: float | None = None  # seconds without traffic before undeploying; None: never
    host_timeout: float = 6.0  # seconds without a heartbeat before a host is marked down
    reconcile_interval: float = 30.0  # seconds between comparisons with every host's List


class Autoscaler:
    def __init__(
        self,
        provider: ServiceProvider,
        registry: Registry,
        deployer: Deployer,
        scaling: Scaling,
        reconciler: Reconciler,
        usage: Usage,
        heartbeats: Heartbeats | None = None,
        shared: SharedLoad | None = None,
    ) -> None:
        self._shared = shared
        self._usage = usage
        self._provider = provider
        self._registry = registry
        self._deployer = deployer
        self._reconciler = reconciler
        self.scaling = scaling
        self._reconciled = time.monotonic()
        self._turn = 0  # where the next slice of hosts without deployments starts
        self._reconciling: asyncio.Task[None] | None = None
        self._hot: dict[str, int] = {}  # looks in a row over the threshold, per service
        self._scaling: dict[str, asyncio.Task[object]] = {}
        self.heartbeats = heartbeats or Heartbeats(registry, scaling.host_timeout)
        #: No host is judged before this (monotonic): beats other SPs heard while this one did
        #: not lead, or while the registry could not be reached, reach it first.
        self._judge_from = 0.0

    async def run(self) -> None:
        self._judge_from = time.monotonic() + self.scaling.host_timeout
        try:
            while True:
                await asyncio.sleep(self.scaling.interval)
                try:
                    await self.tick()
                except Exception:  # the loop must outlive any one bad look
                    log.exception("control loop tick failed")
        finally:
            await self._stop_work()

    async def tick(self) -> None:
        try:
            self.heartbeats.flush()
        except RegistryUnavailable:
            self._judge_from = time.monotonic() + self.scaling.host_timeout
            raise
        if time.monotonic() >= self._judge_from:
            self._check_heartbeats()
        if self._shared is not None:
            self._shared.read()  # what the other SPs relay counts too (else: no look now)
        for advertised in self._provider.catalog():
            await self._undeploy_idle(advertised)
            if advertised.record.stateless:
                self._scale(advertised)
        self._reconcile_now_and_then()
        self._usage.flush()

    def _reconcile_now_and_then(self) -> None:
        now = time.monotonic()
        if now - self._reconciled < self.scaling.reconcile_interval or self._reconciling:
            return
        self._reconciled = now
        task = asyncio.create_task(self._with_hosts(self._to_reconcile()))
        self._reconciling = task
        task.add_done_callback(self._reconciled_all)

    def _to_reconcile(self) -> list[str]:
        """The hosts the registry has deployments on, and the next few of the others."""
        states = self._registry.host_states()  # from memory: no query of the whole fleet
        up = {a for a, state in states.items() if state in ("up", "draining")}
        ours = {r.host for r in self._registry.deployments()} & up
        others = sorted(up - ours)
        if not others:
            return sorted(ours)
        size = RECONCILE_SLICE
        start = self._turn % len(others)
        self._turn = start + size
        return sorted(ours) + (others + others)[start : start + min(size, len(others))]

    async def _with_hosts(self, hosts: list[str]) -> None:
        """Now and then: what each host runs (reconciled), what the hosts that ran our
        deployments consumed (the book), and whether a few hosts nothing else hears from
        answer (named on the command line and never checked, or down and not beating)."""
        unheard = self._provider.hosts.unheard(RECONCILE_SLICE)
        if unheard:
            await self._provider.hosts.survey(unheard)
        await self._reconciler.hosts(hosts)
        await self._usage.poll(self._usage.owed())

    def _reconciled_all(self, task: asyncio.Task[None]) -> None:
        self._reconciling = None
        if not task.cancelled() and task.exception() is not None:
            log.error("reconciling with the hosts failed: %s", task.exception())

    async def _stop_work(self) -> None:
        """What the loop started is stopped with it."""
        work: list[asyncio.Task[object]] = list(self._scaling.values())
        if self._reconciling is not None:
            work.append(self._reconciling)
        for task in work:
            task.cancel()
        await asyncio.gather(*work, return_exceptions=True)

    def _scale(self, advertised: Advertised) -> None:
        record = advertised.record
        replicas = self._registry.deployments_of(record.name)
        placement = record.placement
        limit = placement.max_replicas or self.scaling.max_replicas
        threshold = placement.scale_at or self.scaling.scale_at
        if not replicas or len(replicas) >= limit or record.name in self._scaling:
            self._hot.pop(record.name, None)
            return
        load = self._deployer.load
        per_replica = sum(load.everywhere(d.id) for d in replicas) / len(replicas)
        looks = self._hot.get(record.name, 0) + 1 if per_replica > threshold else 0
        self._hot[record.name] = looks
        if looks >= self.scaling.sustain:
            self._hot.pop(record.name)
            log.info(
                "%s: %.1f messages in flight per replica (over %.1f): one more replica",
                record.name,
                per_replica,
                threshold,
            )
            task = asyncio.create_task(self._deployer.scale_out(record))
            self._scaling[record.name] = task
            task.add_done_callback(functools.partial(self._scaled, record.name))

    def _scaled(self, name: str, _task: asyncio.Task[object]) -> None:
        self._scaling.pop(name, None)

    async def _undeploy_idle(self, advertised: Advertised) -> None:
        timeout = advertised.record.placement.idle_timeout or self.scaling.idle_timeout
        if timeout is None:
            return
        for record in list(self._registry.deployments_of(advertised.record.name)):
            if self._deployer.load.idle_for(record.id) >= timeout:
                log.info(
                    "%s on %s idle for %.0f s: undeploying", record.service, record.host, timeout
                )
                self._deployer.load.forget(record.id)
                await self._deployer.undeploy(record)

    def _check_heartbeats(self) -> None:
        for address, late in self.heartbeats.overdue():
            self.heartbeats.forget(address)
            self._deployer.mark_down(address, f"no heartbeat for {late:.1f} s past its deadline")
