"""Moving a service's traffic between its versions, the way Knative moves traffic between
revisions: the version to run is deployed and probed ready *before* any message goes to it;
then the route switches; then the deployments of the versions that lost their share retire
(no new messages, the ones in flight are answered, then they are undeployed). No consumer's
call fails on the way.

    publish       a stateless service that is deployed rolls out to the new version (unless
                  asked not to); one not deployed just routes its next message to it
    rollout       to one version (by its current digest: a version published again rolls out)
    rollback      to the traffic the route had before its last change
    split         shares between versions (a canary), every shared version deployed first
    unpublish     a version (or all): refused while deployed, unless told to undeploy too

A stateful service is never switched under a consumer: its deployment holds state. A new
version is used by its next deployment; ``rollout --force`` switches now, and says plainly that
the state is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dynasoar.errors import InvalidRequest, UnknownService
from dynasoar.provider.deployer import Deployer
from dynasoar.provider.registry import DeploymentRecord, Registry, Route, ServiceRecord, Traffic
from dynasoar.provider.repository import Repository

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What a change of route did."""

    service: str
    traffic: Traffic = ()
    started: list[str] = field(default_factory=list)  # deployments made for it
    retired: list[str] = field(default_factory=list)  # deployments undeployed after it
    note: str = ""
    seconds: float = 0.0


class Rollouts:
    def __init__(
        self,
        registry: Registry,
        repository: Repository,
        deployer: Deployer,
        refresh: Callable[[str], object],
        keep_versions: int = 5,
        retire_within: float = 60.0,
    ) -> None:
        self._registry = registry
        self._repository = repository
        self._deployer = deployer
        self._refresh = refresh
        self.keep_versions = keep_versions
        #: How long a retiring deployment may take to answer the messages it has.
        self.retire_within = retire_within
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    # -- operations ----------------------------------------------------------------------

    async def published(self, record: ServiceRecord, rollout: bool) -> Outcome:
        """A version was just published: route to it, roll out to it, or (asked not to) keep
        the route as it is."""
        route = self._registry.route(record.name)
        if route is None:  # the first version: it takes every message
            outcome = self._route(record.name, ((record.version, 100),))
            outcome.note = "advertised; its first message deploys it"
        elif not rollout:
            outcome = Outcome(record.name, route.traffic, note="published; the route is unchanged")
            self._refresh(record.name)
        else:
            outcome = await self.rollout(record.name, record.version)
        self._prune(record.name)
        return outcome

    async def rollout(self, name: str, version: str, force: bool = False) -> Outcome:
        target = self._version(name, version)
        async with self._lock(name):
            started = time.monotonic()
            outcome = await (
                self._to_stateless(target) if target.stateless else self._to_stateful(target, force)
            )
            outcome.seconds = time.monotonic() - started
        self._prune(name)
        return outcome

    async def rollback(self, name: str) -> Outcome:
        route = self._route_of(name)
        if not route.previous:
            raise InvalidRequest(
                f"{name}'s route has not changed since it was published: "
                "there is nothing to go back to"
            )
        if len(route.previous) == 1:
            return await self.rollout(name, route.previous[0][0])
        return await self.split(name, route.previous)

    async def split(self, name: str, shares: Sequence[tuple[str, int]]) -> Outcome:
        traffic = _checked(name, shares)
        records = {v: self._version(name, v) for v, _ in traffic}
        if any(not r.stateless for r in records.values()):
            raise InvalidRequest(f"{name} is stateful: it runs once; its traffic cannot be split")
        async with self._lock(name):
            started = time.monotonic()
            outcome = Outcome(name)
            for record in records.values():
                if not self._ready_of(record):  # each shared version answers before its share
                    placed = await self._deployer.place(record)
                    outcome.started += [d.id for d in placed]
            outcome = self._route(name, traffic, outcome)
            keep = {(r.version, r.sha256) for r in records.values()}
            outcome.retired = await self._retire(
                [
                    d
                    for d in self._registry.deployments_of(name)
                    if (d.version, d.sha256) not in keep
                ]
            )
            outcome.seconds = time.monotonic() - started
        return outcome

    async def unpublish(self, name: str, version: str | None, undeploy: bool) -> list[str]:
        """Returns the versions removed."""
        route = self._route_of(name)
        versions = self._registry.versions(name)
        if version is not None and not any(v.version == version for v in versions):
            raise UnknownService(f"{name} has no version {version!r}")
        whole = version is None or len(versions) == 1
        async with self._lock(name):
            records = [d for d in self._registry.records_of(name) if whole or d.version == version]
            if not whole and route.share(version or "") > 0:
                raise InvalidRequest(
                    f"{name} {version} takes {route.share(version or '')}% of {name}'s "
                    "messages: roll out (or split to) other versions first"
                )
            if records and not undeploy:
                what = name if whole else f"{name} {version}"
                raise InvalidRequest(
                    f"{what} has {len(records)} deployment(s): undeploy first, or unpublish "
                    "with --undeploy"
                )
            await self._deployer.undeploy_all(records, self.retire_within)
            removed = [v for v in versions if whole or v.version == version]
            for record in removed:
                self._repository.remove(record)
            if whole:
                self._registry.remove_service(name)
            self._refresh(name)
        log.info("unpublished %s: %s", name, ", ".join(r.version for r in removed))
        return [r.version for r in removed]

    # -- steps ---------------------------------------------------------------------------

    async def _to_stateless(self, target: ServiceRecord) -> Outcome:
        name = target.name
        current = self._registry.deployments_of(name)
        fresh = self._ready_of(target)
        stale = [d for d in current if d not in fresh]
        outcome = Outcome(name)
        # As many replicas of the target as there are of the rest (at least one), ready first.
        wanted = max(len(stale), 1 if stale else 0)
        if wanted > len(fresh):
            placed = await self._deployer.place(target, wanted)
            outcome.started += [d.id for d in placed]
        outcome = self._route(name, ((target.version, 100),), outcome)
        outcome.retired = await self._retire(stale)
        if not current:
            outcome.note = "nothing was deployed; its next message deploys it"
        return outcome

    async def _to_stateful(self, target: ServiceRecord, force: bool) -> Outcome:
        name = target.name
        running = [
            d
            for d in self._registry.deployments_of(name)
            if (d.version, d.sha256) != (target.version, target.sha256)
        ]
        if running and not force:
            outcome = self._route(name, ((target.version, 100),))
            old = running[0]
            outcome.note = (
                f"{name} is stateful: its deployment on {old.host} keeps running {old.version} "
                f"with its state; {target.version} is used by its next deployment. To switch "
                f"now, dropping that state, roll out with --force"
            )
            return outcome
        retired = await self._retire(running)
        outcome = self._route(name, ((target.version, 100),))
        outcome.retired = retired
        if running:
            placed = await self._deployer.place(target)
            outcome.started += [d.id for d in placed]
            outcome.note = (
                f"the state of {name} {running[0].version} on {running[0].host} was dropped: "
                f"{target.version} starts afresh"
            )
        return outcome

    def _route(self, name: str, traffic: Traffic, outcome: Outcome | None = None) -> Outcome:
        route = self._registry.set_route(name, traffic)
        self._refresh(name)
        log.info("%s's traffic: %s", name, ", ".join(f"{v} {w}%" for v, w in route.traffic))
        outcome = outcome or Outcome(name)
        outcome.traffic = route.traffic
        return outcome

    async def _retire(self, records: list[DeploymentRecord]) -> list[str]:
        deadline = asyncio.get_running_loop().time() + self.retire_within
        await asyncio.gather(*(self._deployer.retire(d, deadline) for d in records))
        return [d.id for d in records]

    def _ready_of(self, target: ServiceRecord) -> list[DeploymentRecord]:
        return [
            d
            for d in self._registry.deployments_of(target.name)
            if (d.version, d.sha256) == (target.version, target.sha256)
        ]

    def _prune(self, name: str) -> None:
        route = self._registry.route(name)
        in_use = {d.version for d in self._registry.records_of(name)}
        in_use |= {v for v, _ in route.traffic} if route is not None else set()
        in_use |= {v for v, _ in route.previous} if route is not None else set()
        removed = self._repository.prune(name, self.keep_versions, in_use)
        if removed:
            log.info("%s: versions %s no longer kept", name, ", ".join(removed))

    def _version(self, name: str, version: str) -> ServiceRecord:
        record = self._registry.version(name, version)
        if record is None:
            self._route_of(name)
            known = ", ".join(v.version for v in self._registry.versions(name)) or "none"
            raise UnknownService(f"{name} has no version {version!r} (it has: {known})")
        return record

    def _route_of(self, name: str) -> Route:
        route = self._registry.route(name)
        if route is None:
            raise UnknownService(f"no service named {name!r} has been published here")
        return route


def _checked(name: str, shares: Sequence[tuple[str, int]]) -> Traffic:
    traffic = tuple((v, int(w)) for v, w in shares if int(w) != 0)
    if any(w < 0 or w > 100 for _, w in shares) or sum(w for _, w in traffic) != 100:
        given = " ".join(f"{v}={w}" for v, w in shares)
        raise InvalidRequest(f"{name}'s shares must be 0 to 100 and add up to 100, not {given}")
    if len({v for v, _ in traffic}) != len(traffic):
        raise InvalidRequest(f"a version of {name} is named twice")
    return traffic
