"""Deploying services on Host Providers: choose a host (placement), ship the package, probe the
new endpoint, record it. Concurrent first messages for one service share one deployment
(single-flight); a failure is reported to every waiter and not remembered."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from dynasoar.consumer.host_client import HostClient, PackageShipment, ShippedImage, normalize
from dynasoar.errors import (
    Busy,
    DeploymentFailed,
    DeploymentTimeout,
    DynasoarError,
    ImageNotHeld,
    InvalidRequest,
    NoHostAvailable,
    TransportError,
)
from dynasoar.http import ConnectionPool
from dynasoar.images import ImageCache
from dynasoar.provider.hosts import HostDirectory
from dynasoar.provider.load import LoadTracker
from dynasoar.provider.placement import DEFAULT_POLICY, HostView, Need, eligible, policies
from dynasoar.provider.registry import DeploymentRecord, Registry, ServiceRecord, now
from dynasoar.provider.singleflight import SingleFlight

log = logging.getLogger(__name__)


class Deployer:
    def __init__(
        self,
        registry: Registry,
        hosts: HostDirectory,
        client: HostClient,
        pool: ConnectionPool,
        deploy_timeout: float,
        images: ImageCache,
        load: LoadTracker,
        default_policy: str = DEFAULT_POLICY,
    ) -> None:
        self._registry = registry
        self._hosts = hosts
        self._client = client
        self._pool = pool
        self._images = images
        self.load = load
        self._background: set[asyncio.Task[None]] = set()
        self._policies = policies()
        if default_policy not in self._policies:
            raise ValueError(f"no placement policy {default_policy!r}")
        self.default_policy = default_policy
        self.deploy_timeout = deploy_timeout
        self._flight: SingleFlight[DeploymentRecord] = SingleFlight()

    async def ensure(
        self,
        service: ServiceRecord,
        timeout: float,
        preferred: frozenset[str] | None = None,
        consumer: str | None = None,
    ) -> tuple[DeploymentRecord, bool]:
        """A deployment for a message: the least busy usable replica, or a new deployment
        (then ``cold`` is True). ``preferred`` is the consumer's PreferredHosts, if any."""
        usable = [d for d in self._registry.deployments_of(service.name) if self._usable(d)]
        chosen = [d for d in usable if preferred is None or d.host in preferred]
        if chosen:
            return self.load.least_busy(chosen), False
        if usable and not service.stateless:
            raise NoHostAvailable(
                f"{service.name} is stateful: it runs once, on {usable[0].host}, which is not "
                "among your preferred hosts"
            )
        need = self._need(service, preferred, exclude=frozenset(d.host for d in usable))
        key = service.name if preferred is None else f"{service.name}|{sorted(preferred)}"
        try:
            return await self._flight.do(
                key, lambda: self._deploy_anywhere(service, need, consumer), timeout
            )
        except TimeoutError as exc:
            raise DeploymentTimeout(
                f"{service.name} is still being deployed after {timeout:.0f} s; retry shortly"
            ) from exc

    def _usable(self, record: DeploymentRecord) -> bool:
        """A deployment on a host known to be down is dropped: the next message redeploys."""
        if self._registry.host_state(record.host) != "down":
            return True
        log.warning(
            "dropping %s of %s: its host %s is down", record.id, record.service, record.host
        )
        self.drop(record)
        return False

    def _need(
        self,
        service: ServiceRecord,
        preferred: frozenset[str] | None = None,
        exclude: frozenset[str] = frozenset(),
    ) -> Need:
        placement = service.placement
        return Need(dict(placement.labels), placement.data_site, preferred, exclude)

    async def scale_out(self, service: ServiceRecord) -> DeploymentRecord | None:
        """One more replica of a stateless service, on a host not running it yet."""
        running = frozenset(d.host for d in self._registry.deployments_of(service.name))
        need = self._need(service, exclude=running)
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

    async def deploy(self, service: ServiceRecord, host: str | None) -> DeploymentRecord:
        """An explicit deployment (management Deploy): on ``host``, or wherever placement says."""
        if host is None:
            record, _ = await self.ensure(service, self.deploy_timeout)
            return record
        host = normalize(host)
        for record in self._registry.deployments_of(service.name):
            if record.host == host:
                return record
        if self._registry.deployments_of(service.name) and not service.stateless:
            raise InvalidRequest(
                f"{service.name} is stateful: it runs once and is never replicated; undeploy it "
                "first to move it"
            )
        if self._registry.host(host) is None:
            await self._hosts.register(host)
        return await self._deploy_on(host, service)

    async def _deploy_anywhere(
        self, service: ServiceRecord, need: Need, consumer: str | None = None
    ) -> DeploymentRecord:
        views = await self._hosts.survey()
        policy = self._policies[service.placement.policy or self.default_policy]
        candidates = policy.order(eligible(views, need), need)
        if not candidates:
            raise NoHostAvailable(_nowhere(service.name, views, need))
        reasons = []
        for view in candidates:
            try:
                return await self._deploy_on(view.address, service, consumer)
            except (Busy, TransportError) as exc:
                reasons.append(f"{view.address}: {exc.reason}")
                if isinstance(exc, TransportError):
                    self._hosts.mark_down(view.address, exc.reason)
        raise NoHostAvailable(f"no Host Provider took {service.name}: " + "; ".join(reasons))

    async def _deploy_on(
        self, host: str, service: ServiceRecord, consumer: str | None = None
    ) -> DeploymentRecord:
        started = time.monotonic()
        self._registry.note_service_host(service.name, host)  # its log stays there, failed or not
        held = await self._held_by(host, service)
        try:
            deployment_id, endpoint = await self._client.deploy(
                host, self._shipment(service, held), self.deploy_timeout
            )
        except ImageNotHeld:
            # The host evicted an image between our question and the Deploy: send them all.
            deployment_id, endpoint = await self._client.deploy(
                host, self._shipment(service, set()), self.deploy_timeout
            )
        try:
            await self.probe(endpoint, timeout=max(1.0, self.deploy_timeout / 4))
        except DynasoarError:
            await self._undeploy_quietly(host, deployment_id)
            raise
        record = DeploymentRecord(
            id=deployment_id,
            service=service.name,
            version=service.version,
            host=host,
            endpoint=endpoint,
            state="ready",
            created=now(),
            deployed_for=consumer,
        )
        self._registry.add_deployment(record)
        log.info(
            "deployed %s on %s in %.2f s: %s",
            service.name,
            host,
            time.monotonic() - started,
            endpoint,
        )
        return record

    async def _held_by(self, host: str, service: ServiceRecord) -> set[str]:
        """The service's images the host already holds: those travel without content."""
        if not service.images:
            return set()
        digests = [image.sha256 for image in service.images]
        return await self._client.query_images(host, digests, timeout=30.0)

    def _shipment(self, service: ServiceRecord, held: set[str]) -> PackageShipment:
        images = tuple(
            ShippedImage(ref, None if ref.sha256 in held else self._images.path(ref.sha256))
            for ref in service.images
        )
        return PackageShipment(
            service=service.name,
            version=service.version,
            kind=service.kind,
            stateless=service.stateless,
            path=Path(service.package),
            sha256=service.sha256,
            images=images,
        )

    async def probe(self, endpoint: str, timeout: float) -> None:
        """Readiness from the SP's side: the endpoint serves its WSDL."""
        try:
            response = await self._pool.request(
                endpoint + "?wsdl", "GET", headers=[], timeout=timeout
            )
            await response.read_all(4 << 20)
        except DynasoarError as exc:
            raise DeploymentFailed(
                f"the new endpoint {endpoint} does not answer: {exc.reason}"
            ) from exc
        if response.status != 200:
            raise DeploymentFailed(f"the new endpoint {endpoint} answered HTTP {response.status}")

    async def undeploy(self, record: DeploymentRecord) -> bool:
        self._registry.remove_deployment(record.id)
        try:
            return await self._client.undeploy(record.host, record.id, timeout=30.0)
        except DynasoarError as exc:
            log.warning("undeploy of %s on %s: %s", record.id, record.host, exc.reason)
            return False

    def host_lost(self, address: str, reason: str) -> None:
        """A host stopped answering: mark it down and drop its deployments (the next message
        for each of their services deploys elsewhere)."""
        self._hosts.mark_down(address, reason)
        for record in self._registry.deployments():
            if record.host == address:
                self.drop(record)

    async def check_host(self, address: str) -> None:
        """After a deployment vanished: is its host still there? Marked down if not."""
        await self._hosts.survey([address])

    async def forget(self, record: DeploymentRecord) -> None:
        """Drop a deployment that stopped answering; tell its host if it still listens."""
        self.drop(record)

    def drop(self, record: DeploymentRecord) -> None:
        """Forget a deployment now; ask its host to undeploy it in the background (a host
        that hangs must not hold a consumer up; one that is alive must not keep an orphan)."""
        self.load.forget(record.id)
        if self._registry.remove_deployment(record.id) is not None:
            task = asyncio.create_task(self._undeploy_quietly(record.host, record.id))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _undeploy_quietly(self, host: str, deployment_id: str) -> None:
        try:
            await self._client.undeploy(host, deployment_id, timeout=10.0)
        except DynasoarError as exc:
            log.warning("could not undeploy %s on %s: %s", deployment_id, host, exc.reason)

    async def restore(self) -> None:
        """After a restart: keep recorded deployments that still answer, drop the others."""
        records = self._registry.deployments()
        results = await asyncio.gather(
            *(self.probe(r.endpoint, timeout=3.0) for r in records), return_exceptions=True
        )
        for record, result in zip(records, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("dropping deployment %s of %s: %s", record.id, record.service, result)
                self._registry.remove_deployment(record.id)
            else:
                log.info(
                    "reusing deployment %s of %s at %s", record.id, record.service, record.endpoint
                )


def _nowhere(name: str, views: list[HostView], need: Need) -> str:
    """Why no host can take a deployment, in words a person can act on."""
    if not views:
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
