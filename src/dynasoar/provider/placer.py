"""Where a new deployment goes, and making only one of it: the part of :mod:`.deployer` that
chooses a host (a few candidates from the figures in memory, their live Status, the best that
answers) and holds the single flight across SPs sharing the registry (a lock in the database:
under it the service's deployments are read again, and one is made only if there is none)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from dynasoar.errors import (
    Busy,
    DeploymentTimeout,
    HostLost,
    NoHostAvailable,
    TransportError,
)
from dynasoar.provider.hosts import HostDirectory
from dynasoar.provider.load import LoadTracker
from dynasoar.provider.placement import DEFAULT_POLICY, HostView, Need, Policy, eligible
from dynasoar.provider.registry import DeploymentRecord, Registry, ServiceRecord
from dynasoar.provider.shipper import Shipper

log = logging.getLogger(__name__)

#: Hosts asked for their live Status per placement round: two for the default policy (the
#: power of two choices), the policy's best few for the others.
CHOICES = 2
CHECKED_PER_ROUND = 3
#: Rounds of candidates before giving up (each a few more hosts, never the whole fleet).
PLACEMENT_ROUNDS = 3
#: How often a lock another SP holds is tried again (seconds).
LOCK_POLL = 0.05


class Placement:
    """Mixed into the Deployer, whose state it uses."""

    _registry: Registry
    _hosts: HostDirectory
    _policies: dict[str, Policy]
    shipper: Shipper
    load: LoadTracker
    default_policy: str
    deploy_timeout: float

    def _usable(self, record: DeploymentRecord) -> bool:
        raise NotImplementedError

    def _need(
        self,
        service: ServiceRecord,
        preferred: frozenset[str] | None = None,
        exclude: frozenset[str] = frozenset(),
    ) -> Need:
        raise NotImplementedError

    def lost_of(self, service: str) -> DeploymentRecord | None:
        raise NotImplementedError

    async def _deploy_once(
        self, service: ServiceRecord, need: Need, consumer: str | None
    ) -> DeploymentRecord:
        """The single flight across SPs sharing the registry: under the service's lock in the
        database, read its deployments again (another SP may have just made one: use it),
        and deploy only if there is still none. With the registry of one SP, the flight in
        this process is all there is."""
        async with self._single_flight(service):
            if not self._registry.shared:
                return await self._deploy_anywhere(service, need, consumer)
            usable = [
                d
                for d in self._registry.deployments_of(service.name)
                if (not service.stateless or d.version == service.version)
                and self._usable(d)
                and (need.preferred is None or d.host in need.preferred)
            ]
            if usable:
                return self.load.least_busy(usable)
            if not service.stateless:
                lost = self.lost_of(service.name)
                if lost is not None:
                    raise lost_fault(lost)
            return await self._deploy_anywhere(service, need, consumer)

    async def _replicas(self, service: ServiceRecord, count: int) -> list[DeploymentRecord]:
        """Deployments of this version (of its very package) until ``count`` are ready: a
        rollout's, under the same single flight across SPs as a first message's, so that
        another SP's rollout, or its first message for the version, never makes them twice.
        Returns those made here (none, if enough were there already)."""
        made: list[DeploymentRecord] = []
        async with self._single_flight(service):
            ready = [
                d
                for d in self._registry.deployments_of(service.name)
                if (d.version, d.sha256) == (service.version, service.sha256) and self._usable(d)
            ]
            need = self._need(service)
            for _ in range(count - len(ready)):
                made.append(await self._deploy_anywhere(service, need))
        return made

    @asynccontextmanager
    async def _single_flight(self, service: ServiceRecord) -> AsyncIterator[None]:
        """Held while a deployment of ``service`` is decided and made: with a registry
        several SPs share, a lock in the database (one per version of a stateless service,
        one per stateful service), under which the service's deployments are read again."""
        if not self._registry.shared:
            yield
            return
        name = f"dynasoar:deploy:{service.name}"
        if service.stateless:
            name += f"@{service.version}"
        await self._lock(name, service.name)
        try:
            self._registry.refresh_service(service.name)
            yield
        finally:
            self._registry.db.unlock(name)

    async def _lock(self, name: str, service: str) -> None:
        """Take a lock held across SPs, waiting (polling) at most the deploy timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deploy_timeout
        while not self._registry.db.try_lock(name):
            if loop.time() >= deadline:
                raise DeploymentTimeout(
                    f"another Service Provider has been deploying {service} for "
                    f"{self.deploy_timeout:.0f} s; retry shortly"
                )
            await asyncio.sleep(LOCK_POLL)

    async def _deploy_anywhere(
        self, service: ServiceRecord, need: Need, consumer: str | None = None
    ) -> DeploymentRecord:
        """Choose a host and ship there: a few candidates from the figures in memory (two at
        random for the default policy: the power of two choices), their live Status, the best
        that answers; the next few if none takes it."""
        started = time.perf_counter()
        policy = self._policies[service.placement.policy or self.default_policy]
        tried: set[str] = set()
        reasons: list[str] = []
        answering: list[HostView] = []
        for _ in range(PLACEMENT_ROUNDS):
            candidates = self._candidates(policy, need, tried)
            if not candidates:
                break
            tried.update(v.address for v in candidates)
            live = await self._hosts.survey([v.address for v in candidates])
            answering += live
            ordered = eligible(live, need)
            if policy.name == DEFAULT_POLICY:  # by the live figures
                ordered = policy.order(ordered, need)
            else:  # in the policy's order, as chosen
                rank = {v.address: i for i, v in enumerate(candidates)}
                ordered.sort(key=lambda v: rank[v.address])
            if ordered:
                log.info(
                    "placement of %s: %s of %d hosts after checking %d, in %.1f ms",
                    service.name,
                    ordered[0].address,
                    len(self._hosts.views),
                    len(tried),
                    (time.perf_counter() - started) * 1000,
                )
            for view in ordered:
                try:
                    return await self.shipper.ship(view.address, service, consumer)
                except (Busy, TransportError) as exc:
                    reasons.append(f"{view.address}: {exc.reason}")
                    if isinstance(exc, TransportError):
                        self._hosts.mark_down(view.address, exc.reason)
        if reasons:
            raise NoHostAvailable(f"no Host Provider took {service.name}: " + "; ".join(reasons))
        if not tried:  # by the figures in memory, no host fits: say why
            raise NoHostAvailable(_nowhere(service.name, self._hosts.placeable_views(), need))
        raise NoHostAvailable(_nowhere(service.name, answering, need, len(tried)))

    async def places(self, service: ServiceRecord, exclude: frozenset[str]) -> list[str]:
        """The hosts placement would choose for one more deployment of ``service``, best
        first (none of ``exclude``): a few candidates from the figures in memory, checked
        live (a move tries them in turn)."""
        need = self._need(service, exclude=exclude)
        policy = self._policies[service.placement.policy or self.default_policy]
        candidates = self._candidates(policy, need, set())
        live = await self._hosts.survey([v.address for v in candidates])
        return [view.address for view in policy.order(eligible(live, need), need)]

    def _candidates(self, policy: Policy, need: Need, tried: set[str]) -> list[HostView]:
        """A few hosts worth a live check, from the figures in memory."""

        def fits(view: HostView) -> bool:
            unknown = view.capacity == 0  # never reported its figures: worth asking
            return view.address not in tried and (
                (unknown and view.address not in need.exclude)
                or bool(eligible([view], need))
            )

        if need.preferred is not None:
            views = [self._hosts.views[a] for a in need.preferred if a in self._hosts.views]
            views = [v for v in views if self._hosts.placeable(v.address) and fits(v)]
            return policy.order(views, need)[:CHECKED_PER_ROUND]
        if policy.name == DEFAULT_POLICY:
            return self._hosts.candidates(CHOICES, fits)
        views = [v for v in self._hosts.placeable_views() if fits(v)]
        return policy.order(views, need)[:CHECKED_PER_ROUND]


def lost_fault(record: DeploymentRecord) -> HostLost:
    """What every message for a lost stateful service is answered with."""
    since = record.changed.strftime("%Y-%m-%d %H:%M:%S UTC") if record.changed else "a while"
    reason = record.reason or "its host stopped answering"
    return HostLost(
        f"{record.service} is stateful and its deployment on {record.host} was lost at {since} "
        f"({reason}): its state is gone unless that host comes back. Deploy it again "
        f"explicitly (dynasoar deploy {record.service}) to start afresh"
    )


def _nowhere(name: str, views: list[HostView], need: Need, known: int = 0) -> str:
    """Why no host can take a deployment, in words a person can act on."""
    if not views:
        if known:
            return (
                f"none of the {known} Host Providers that could take {name} by their last "
                "figures answered now, or had room"
            )
        return f"no Host Provider is answering; none can take {name}"
    if need.preferred is not None:
        wanted = ", ".join(sorted(need.preferred))
        if not any(v.address in need.preferred for v in views):
            return f"none of your preferred hosts ({wanted}) is known here and answering"
        return (
            f"none of your preferred hosts ({wanted}) can take {name} now: full, or lacking "
            f"the labels {dict(need.labels)}"
        )
    if need.labels:
        return f"no answering host with room has the labels {dict(need.labels)} {name} requires"
    if need.exclude:
        return f"every answering host with room already runs {name}"
    return f"no Host Provider can take {name}: {len(views)} answering, none with free capacity"
