"""The Service Provider's state and operations, shared by its management port and its routing
interceptor: the catalog of advertised services, publishing (and rolling out) versions,
deploying and undeploying, hosts joining and leaving."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

from dynasoar.consumer.host_client import normalize
from dynasoar.errors import Busy, UnknownHost, UnknownService
from dynasoar.images import IncomingImage
from dynasoar.provider.catalog import Advertised, Catalog
from dynasoar.provider.deployer import Deployer
from dynasoar.provider.hosts import HostDirectory
from dynasoar.provider.moves import MoveOutcome, Mover
from dynasoar.provider.registry import DeploymentRecord, HostRecord, Registry, ServiceRecord
from dynasoar.provider.repository import Repository
from dynasoar.provider.rollout import Rollouts
from dynasoar.soap.mtom import Attachment


class ServiceProvider:
    def __init__(
        self,
        data: Path,
        registry: Registry,
        repository: Repository,
        hosts: HostDirectory,
        deployer: Deployer,
        mover: Mover,
        keep_versions: int = 5,
    ) -> None:
        self.data = data
        self.registry = registry
        self.repository = repository
        self.hosts = hosts
        self.deployer = deployer
        self.mover = mover
        self._catalog = Catalog(registry)
        #: Another SP changed a service's versions or route: the catalog reads it again.
        self.refresh_catalog = self._catalog.refresh
        self.rollouts = Rollouts(
            registry, repository, deployer, self._catalog.refresh, keep_versions=keep_versions
        )
        #: A host beat (address, the interval it asked, its figures): returns its interval.
        self.on_heartbeat: Callable[[str, float, HostRecord | None], float] | None = None
        #: Seconds until a host may beat again, when it beats far too often (else None).
        self.too_soon: Callable[[str], float | None] = lambda address: None

    # -- the catalog (read on every message) --------------------------------------------

    def advertised(self, name: str) -> Advertised | None:
        return self._catalog.get(name)

    def catalog(self) -> list[Advertised]:
        return self._catalog.all()

    def _service(self, name: str) -> ServiceRecord:
        advertised = self._catalog.get(name)
        if advertised is None:
            raise UnknownService(f"no service named {name!r} has been published here")
        return advertised.record

    # -- operations -----------------------------------------------------------------------

    def publish(self, package: Attachment, images: Sequence[IncomingImage] = ()) -> ServiceRecord:
        """Take an uploaded package into the repository as a version (blocking); what it does
        to the route is :meth:`Rollouts.published`'s to say."""
        record, _ = self.repository.publish(package.path, package.sha256, images)
        return record

    async def deploy(self, name: str, host: str | None) -> DeploymentRecord:
        return await self.deployer.deploy(self._service(name), host)

    async def undeploy(self, name: str, host: str | None) -> int:
        self._service(name)
        wanted = normalize(host) if host else None
        # every record, whatever its state: a lost one is undone too, a deploying one cancelled;
        # a ready one answers its messages in flight first (their retries do not undo this)
        records = [d for d in self.registry.records_of(name) if wanted in (None, d.host)]
        return await self.deployer.undeploy_all(records, self.rollouts.retire_within)

    async def register_host(
        self, address: str, heartbeat: float | None = None, figures: HostRecord | None = None
    ) -> tuple[HostRecord, float | None]:
        """A host's registration, or its heartbeat: with its own figures (believed: see the
        port), the SP asks it nothing; without, it asks for its Status. A host that says it
        will beat is watched for it, and told how often to (None: it need not beat)."""
        address = normalize(address)
        wait = self.too_soon(address)
        if wait is not None:
            raise Busy(f"{address} beats too often: the next beat is due in {wait:.1f} s or later")
        if figures is not None:
            record = self.hosts.heard(address, figures)
        else:
            record = await self.hosts.register(address)
        interval = None
        if heartbeat is not None and heartbeat > 0 and self.on_heartbeat is not None:
            interval = self.on_heartbeat(record.address, heartbeat, figures)
        return record, interval

    async def deregister_host(self, address: str, drain: bool, timeout: float) -> int:
        """A host is going away. With ``drain``, its deployments move elsewhere first (VM
        guests with their state; returns how many moved); either way it then takes nothing new,
        its stateless deployments are forgotten (calls in flight finish) and its stateful ones
        are lost."""
        address = normalize(address)
        if self.registry.host(address) is None:
            raise UnknownHost(f"no host {address} is registered here")
        moved = 0
        if drain:
            deadline = asyncio.get_running_loop().time() + timeout
            moved = await self.mover.drain(address, deadline)
        self.deployer.host_left(address, "its host deregistered (it was stopped)")
        return moved

    async def move(self, name: str, host: str) -> MoveOutcome:
        """Move ``name``'s deployment to ``host``; a VM guest with its state."""
        self._service(name)
        return await self.mover.move(name, host)

    async def drain(self, address: str, timeout: float) -> int:
        """Move everything off ``address``, which takes nothing new from now on (it stays
        registered, draining, until it deregisters). Returns how many moved."""
        address = normalize(address)
        if self.registry.host(address) is None:
            raise UnknownHost(f"no host {address} is registered here")
        return await self.mover.drain(address, asyncio.get_running_loop().time() + timeout)

    async def list_hosts(self) -> list[HostRecord]:
        """Every host as last heard, asking none of them (on the loop, where they change)."""
        return self.hosts.listing()
