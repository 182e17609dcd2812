"""The Service Provider's state and operations, shared by its management port and its routing
interceptor: the catalog of advertised services, publishing, deploying and undeploying."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dynasoar.consumer.host_client import normalize
from dynasoar.errors import UnknownHost, UnknownService
from dynasoar.images import IncomingImage
from dynasoar.provider.deployer import Deployer
from dynasoar.provider.hosts import HostDirectory
from dynasoar.provider.registry import DeploymentRecord, HostRecord, Registry, ServiceRecord
from dynasoar.provider.repository import Repository
from dynasoar.soap.mtom import Attachment
from dynasoar.wsdl import ServiceContract, read_contract


@dataclass(frozen=True)
class Advertised:
    """A published service as the message path needs it (kept in memory)."""

    record: ServiceRecord
    contract: ServiceContract


class ServiceProvider:
    def __init__(
        self,
        data: Path,
        registry: Registry,
        repository: Repository,
        hosts: HostDirectory,
        deployer: Deployer,
    ) -> None:
        self.data = data
        self.registry = registry
        self.repository = repository
        self.hosts = hosts
        self.deployer = deployer
        self._catalog: dict[str, Advertised] = {}
        self.on_heartbeat: Callable[[str, float], None] | None = None
        self._lock = threading.Lock()
        for record in registry.services():
            self._catalog[record.name] = Advertised(record, read_contract(record.wsdl))

    # -- the catalog (read on every message) --------------------------------------------

    def advertised(self, name: str) -> Advertised | None:
        return self._catalog.get(name)

    def catalog(self) -> list[Advertised]:
        return list(self._catalog.values())

    def _service(self, name: str) -> ServiceRecord:
        advertised = self._catalog.get(name)
        if advertised is None:
            raise UnknownService(f"no service named {name!r} has been published here")
        return advertised.record

    # -- operations -----------------------------------------------------------------------

    def publish(self, package: Attachment, images: Sequence[IncomingImage] = ()) -> ServiceRecord:
        """Take an uploaded package into the repository and advertise it (blocking)."""
        record, _ = self.repository.publish(package.path, package.sha256, images)
        contract = read_contract(record.wsdl)
        with self._lock:
            self._catalog[record.name] = Advertised(record, contract)
        return record

    async def deploy(self, name: str, host: str | None) -> DeploymentRecord:
        return await self.deployer.deploy(self._service(name), host)

    async def undeploy(self, name: str, host: str | None) -> int:
        self._service(name)
        wanted = normalize(host) if host else None
        # every record, whatever its state: a lost one is undone too, a deploying one cancelled
        records = [d for d in self.registry.records_of(name) if wanted in (None, d.host)]
        count = 0
        for record in records:
            await self.deployer.undeploy(record)
            count += 1
        return count

    async def register_host(self, address: str, heartbeat: float | None = None) -> HostRecord:
        """A host's registration; a host that says it will heartbeat is watched for it."""
        record = await self.hosts.register(address)
        if heartbeat is not None and heartbeat > 0 and self.on_heartbeat is not None:
            self.on_heartbeat(record.address, heartbeat)
        return record

    async def deregister_host(self, address: str, drain: bool, timeout: float) -> int:
        """A host is going away. With ``drain``, its stateless deployments move elsewhere
        first (returns how many moved); either way it then takes nothing new, its stateless
        deployments are forgotten (calls in flight finish) and its stateful ones are lost."""
        address = normalize(address)
        if self.registry.host(address) is None:
            raise UnknownHost(f"no host {address} is registered here")
        moved = 0
        if drain:
            deadline = asyncio.get_running_loop().time() + timeout
            moved = await self.deployer.drain_host(address, deadline)
        self.deployer.host_left(address, "its host deregistered (it was stopped)")
        return moved

    async def refresh_hosts(self) -> list[HostRecord]:
        return await self.hosts.refresh()
