"""The Host Providers a Service Provider may use: registration and a live survey of their
status (capacity, deployments, load), marking hosts up or down as they answer or not."""

from __future__ import annotations

import asyncio
import logging

from dynasoar.consumer.host_client import HostClient, HostStatus, normalize
from dynasoar.errors import DynasoarError, TransportError
from dynasoar.provider.placement import HostView
from dynasoar.provider.registry import HostRecord, Registry, now

log = logging.getLogger(__name__)


class HostDirectory:
    def __init__(self, registry: Registry, client: HostClient, status_timeout: float = 3.0) -> None:
        self._registry = registry
        self._client = client
        self._timeout = status_timeout

    def add(self, address: str) -> None:
        """A host named on the command line; its figures come with the first survey."""
        address = normalize(address)
        if self._registry.host(address) is None:
            self._registry.put_host(HostRecord(address, "unknown", 0, 0, 0.0, now()))

    async def register(self, address: str) -> HostRecord:
        address = normalize(address)
        if not address.startswith(("http://", "https://")):
            raise TransportError(f"a host address is an http(s) URL, not {address!r}")
        try:
            status = await self._client.status(address, self._timeout)
        except DynasoarError as exc:
            raise TransportError(f"the host {address} did not answer Status: {exc.reason}") from exc
        record = _record(address, status)
        if self._registry.host_state(address) != "up":
            log.info("host %s is up (capacity %d)", address, status.capacity)
        self._registry.put_host(record)
        return record

    async def survey(self, addresses: list[str] | None = None) -> list[HostView]:
        """Ask hosts for their status at once; those that answer, as placement sees them."""
        hosts = addresses if addresses is not None else [h.address for h in self._registry.hosts()]
        results = await asyncio.gather(
            *(self._client.status(h, self._timeout) for h in hosts), return_exceptions=True
        )
        views = []
        for address, result in zip(hosts, results, strict=True):
            if isinstance(result, HostStatus):
                if self._registry.host_state(address) == "down":
                    log.info("host %s is back up", address)
                self._registry.put_host(_record(address, result))
                views.append(
                    HostView(
                        address, result.capacity, result.deployments, result.load, result.terms
                    )
                )
            else:
                self.mark_down(address, result)
        return views

    def mark_down(self, address: str, reason: object) -> None:
        record = self._registry.host(address)
        if record is not None and record.state != "down":
            log.warning("host %s is down: %s", address, reason)
            self._registry.set_host_state(address, "down")

    async def refresh(self) -> list[HostRecord]:
        await self.survey()
        return self._registry.hosts()


def _record(address: str, status: HostStatus) -> HostRecord:
    return HostRecord(
        address,
        "up",
        status.capacity,
        status.deployments,
        status.load,
        now(),
        status.cache,
        status.terms,
    )
