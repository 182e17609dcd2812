"""Deciding where services run: choose a host (placement) and ship there (:mod:`.shipper`);
concurrent first messages for one service share one deployment (single-flight, a failure
reported to every waiter and not remembered); and what happens to deployments when their host
goes away:

- a stateless deployment is forgotten (its host is asked to undeploy it, in the background):
  the next message deploys the service again, elsewhere;
- a stateful one is *lost*: its state went with its host, so every message is answered
  ``dyn:HostLost`` (when, which host, why) until the service is deployed again explicitly, or
  until its host is seen again still running that very deployment, state intact.

Calls in flight to a host marked down stop waiting for it at once (:mod:`dynasoar.deadlines`).
"""

from __future__ import annotations

import asyncio
import logging
import time

from dynasoar.consumer.host_client import normalize
from dynasoar.deadlines import Deadlines
from dynasoar.errors import (
    DeploymentTimeout,
    DynasoarError,
    InvalidRequest,
    NoHostAvailable,
)
from dynasoar.provider.gates import MoveGates
from dynasoar.provider.hosts import HostDirectory
from dynasoar.provider.load import LoadTracker
from dynasoar.provider.placement import (
    DEFAULT_POLICY,
    Need,
    policies,
)
from dynasoar.provider.placer import Placement, lost_fault
from dynasoar.provider.registry import DeploymentRecord, Registry, ServiceRecord
from dynasoar.provider.shipper import Shipper
from dynasoar.provider.singleflight import SingleFlight

log = logging.getLogger(__name__)



class Deployer(Placement):
    def __init__(
        self,
        registry: Registry,
        hosts: HostDirectory,
        shipper: Shipper,
        load: LoadTracker,
        calls: Deadlines,
        default_policy: str = DEFAULT_POLICY,
    ) -> None:
        self._registry = registry
        self._hosts = hosts
        self.shipper = shipper
        self.load = load
        #: The deadlines of calls in flight, by host: a host marked down ends them.
        self._calls = calls
        self._policies = policies()
        if default_policy not in self._policies:
            raise ValueError(f"no placement policy {default_policy!r}")
        self.default_policy = default_policy
        self.deploy_timeout = shipper.deploy_timeout
        self._flight: SingleFlight[DeploymentRecord] = SingleFlight()
        self._placing: SingleFlight[list[DeploymentRecord]] = SingleFlight()  # rollouts'
        self._checks: set[asyncio.Task[None]] = set()
        #: Deployments retiring in this process (their "retiring" records are no leftovers).
        self.retiring: set[str] = set()
        #: Where messages for deployments moving to another host wait (provider/moves.py).
        self.gates = MoveGates()
        hosts.on_down = self.host_down

    # -- where a message goes ----------------------------------------------------------------

    async def ensure(
        self,
        service: ServiceRecord,
        timeout: float,
        preferred: frozenset[str] | None = None,
        consumer: str | None = None,
    ) -> tuple[DeploymentRecord, bool]:
        """A deployment for a message: the least busy usable replica, or a new deployment
        (then ``cold`` is True). ``service`` is the version the message goes to (a stateful
        service's one deployment takes it, whatever version it runs). ``preferred`` is the
        consumer's PreferredHosts, if any."""
        usable = [
            d
            for d in self._registry.deployments_of(service.name)
            if (not service.stateless or d.version == service.version) and self._usable(d)
        ]
        if preferred is None and len(usable) == 1:
            return usable[0], False  # the usual warm case: nothing to choose between
        chosen = [d for d in usable if preferred is None or d.host in preferred]
        if chosen:
            return self.load.least_busy(chosen), False
        if not service.stateless:
            if usable:
                raise NoHostAvailable(
                    f"{service.name} is stateful: it runs once, on {usable[0].host}, which is "
                    "not among your preferred hosts"
                )
            lost = self.lost_of(service.name)
            if lost is not None:
                raise lost_fault(lost)
        need = self._need(service, preferred, exclude=frozenset(d.host for d in usable))
        key = f"{service.name}@{service.version}"
        if preferred is not None:
            key += f"|{sorted(preferred)}"
        try:
            return await self._flight.do(
                key, lambda: self._deploy_once(service, need, consumer), timeout
            )
        except TimeoutError as exc:
            raise DeploymentTimeout(
                f"{service.name} is still being deployed after {timeout:.0f} s; retry shortly"
            ) from exc

    def _usable(self, record: DeploymentRecord) -> bool:
        """A deployment on a host known to be down is not: it is lost or forgotten now."""
        if self._registry.host_state(record.host) not in ("down", "left"):
            return True
        self.lose(record, f"its host {record.host} is down")
        return False

    def lost_of(self, service: str) -> DeploymentRecord | None:
        return next((r for r in self._registry.records_of(service) if r.state == "lost"), None)

    def _need(
        self,
        service: ServiceRecord,
        preferred: frozenset[str] | None = None,
        exclude: frozenset[str] = frozenset(),
    ) -> Need:
        placement = service.placement
        return Need(dict(placement.labels), placement.data_site, preferred, exclude)

    async def scale_out(
        self, service: ServiceRecord, exclude: frozenset[str] = frozenset()
    ) -> DeploymentRecord | None:
        """One more replica of a stateless service, on a host not running it yet."""
        running = frozenset(d.host for d in self._registry.deployments_of(service.name))
        need = self._need(service, exclude=running | exclude)
        try:
            record, _ = await self._flight.do(
                f"{service.name}#scale",
                lambda: self._deploy_anywhere(service, need),
                self.deploy_timeout,
            )
            return record
        except (NoHostAvailable, TimeoutError) as exc:
            log.info("no room to scale %s out: %s", service.name, exc)
            return None

    async def place(self, service: ServiceRecord, replicas: int = 1) -> list[DeploymentRecord]:
        """Deployments of this version until ``replicas`` of it are ready (a rollout's), where
        placement says; returns those made. Made under the single flight across SPs: another
        SP rolling out to the same version, or deploying it for its first message, does not
        make them twice."""
        key = f"{service.name}@{service.version}#place{replicas}"
        try:
            made, _ = await self._placing.do(
                key, lambda: self._replicas(service, replicas), self.deploy_timeout
            )
        except TimeoutError as exc:
            raise DeploymentTimeout(
                f"{service.name} {service.version} took too long to deploy"
            ) from exc
        return made

    async def deploy(self, service: ServiceRecord, host: str | None) -> DeploymentRecord:
        """An explicit deployment (management Deploy): on ``host``, or wherever placement says.
        For a lost stateful service this is the way back: it starts afresh."""
        lost = self.lost_of(service.name)
        if lost is not None:
            log.info("%s deployed again explicitly: starting afresh", service.name)
            self._registry.remove_deployment(lost.id)
            self.shipper.undeploy_later(lost.host, lost.id)  # in case that host comes back
        if host is None:
            record, _ = await self.ensure(service, self.deploy_timeout)
            return record
        host = normalize(host)
        for record in self._registry.deployments_of(service.name):
            if record.host == host:
                return record
        if self._registry.deployments_of(service.name) and not service.stateless:
            raise InvalidRequest(
                f"{service.name} is stateful: it runs once and is never replicated; move it "
                f"with its state (dynasoar move {service.name} --to {host})"
            )
        if self._registry.host(host) is None:
            await self._hosts.register(host)
        return await self.shipper.ship(host, service)

    async def probe(self, endpoint: str, timeout: float) -> None:
        await self.shipper.probe(endpoint, timeout)

    async def check_host(self, address: str) -> None:
        """After a deployment vanished: is its host still there? Marked down if not."""
        await self._hosts.survey([address])

    def check_later(self, record: DeploymentRecord) -> None:
        """A stateless deployment that let a call pass its deadline: if it does not answer a
        probe either, it is hung, and forgotten (the next message deploys it again). A
        stateful one is only slow until its host is judged down: its state is worth a wait."""
        service = self._registry.service(record.service)
        if service is None or not service.stateless:
            return

        async def check() -> None:
            try:
                await self.shipper.probe(record.endpoint, timeout=2.0)
            except DynasoarError as exc:
                self.lose(record, f"it let a call pass its deadline and a probe ({exc.reason})")

        task = asyncio.create_task(check())
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    # -- ending deployments ------------------------------------------------------------------

    async def undeploy(self, record: DeploymentRecord) -> bool:
        self.load.forget(record.id)
        self._registry.remove_deployment(record.id)
        return await self.shipper.undeploy(record.host, record.id)

    async def retire(self, record: DeploymentRecord, deadline: float) -> None:
        """Take no new messages to ``record``; once the ones it has are answered (or at
        ``deadline``, a loop time), undeploy it."""
        try:
            self._registry.set_state(record.id, "retiring", "its messages move elsewhere")
        except KeyError:  # no longer recorded (another SP retired it already): nothing to do
            return
        self.retiring.add(record.id)
        try:
            left = deadline - asyncio.get_running_loop().time()
            await self.load.answered(record.id, time.monotonic() + left)
            await self.undeploy(record)
        finally:
            self.retiring.discard(record.id)

    async def undeploy_all(self, records: list[DeploymentRecord], within: float) -> int:
        """Undeploy ``records``: the ready ones retire (their messages in flight are answered,
        not cut, so no retry brings them back); the others go at once."""
        deadline = asyncio.get_running_loop().time() + within
        await asyncio.gather(
            *(self.retire(r, deadline) if r.state == "ready" else self.undeploy(r) for r in records)
        )
        return len(records)

    def lose(self, record: DeploymentRecord, reason: str) -> None:
        """``record`` stopped being usable: a stateless one is forgotten, a stateful one lost."""
        service = self._registry.service(record.service)
        if service is not None and not service.stateless:
            if record.state != "lost":
                self.load.forget(record.id)
                try:
                    self._registry.set_state(record.id, "lost", reason)
                except KeyError:  # another SP removed it meanwhile (moved it, say): not lost
                    log.info("%s of %s is no longer recorded", record.id, record.service)
                    return
                log.warning(
                    "%s is lost: its deployment %s on %s (%s); every message is answered "
                    "dyn:HostLost until it is deployed again",
                    record.service,
                    record.id,
                    record.host,
                    reason,
                )
            return
        log.warning("forgetting %s of %s on %s: %s", record.id, record.service, record.host, reason)
        self.drop(record)

    def drop(self, record: DeploymentRecord) -> None:
        """Forget a deployment now; ask its host to undeploy it in the background (a host
        that hangs must not hold a consumer up; one that is alive must not keep an orphan)."""
        self.load.forget(record.id)
        if self._registry.remove_deployment(record.id) is not None:
            self.shipper.undeploy_later(record.host, record.id)

    async def revive(self, record: DeploymentRecord) -> bool:
        """A lost deployment its host still runs: usable again if it answers, state intact."""
        try:
            await self.shipper.probe(record.endpoint, timeout=3.0)
        except DynasoarError:
            return False
        try:
            self._registry.set_state(record.id, "ready", None)
        except KeyError:
            return False  # deployed again explicitly meanwhile
        log.info(
            "%s's deployment %s on %s answers again: in use again, its state intact",
            record.service,
            record.id,
            record.host,
        )
        return True

    def mark_down(self, address: str, reason: str) -> None:
        """Judge ``address`` down (it missed its heartbeats): see :meth:`host_down`."""
        self._hosts.mark_down(address, reason)

    def host_down(self, address: str, reason: str) -> None:
        """``address`` stopped answering: its deployments are lost or forgotten, and calls
        waiting for it stop waiting (a stateless one is sent once more, elsewhere)."""
        for record in self._registry.deployments():
            if record.host == address and record.state == "ready":
                self.lose(record, f"its host {address} is down: {reason}")
        ended = self._calls.expire(address, f"its host {address} is down: {reason}")
        if ended:
            log.warning("%d call(s) in flight to %s stopped waiting for it", ended, address)

    def host_left(self, address: str, reason: str) -> None:
        """``address`` deregistered: nothing new goes there; calls in flight finish (its
        services stop only after it drained). Stateful deployments are lost."""
        self._hosts.set_state(address, "left")
        for record in self._registry.deployments():
            if record.host != address or record.state != "ready":
                continue
            service = self._registry.service(record.service)
            if service is not None and service.stateless:
                self.load.forget(record.id)
                self._registry.remove_deployment(record.id)
            else:
                self.lose(record, reason)

    async def close(self) -> None:
        self._flight.cancel_all()
        self._placing.cancel_all()
        for task in list(self._checks):
            task.cancel()
        await asyncio.gather(*self._checks, return_exceptions=True)
        await self.shipper.close()
