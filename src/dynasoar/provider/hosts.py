"""The Host Providers a Service Provider may use: registration, deregistration and a live survey
of their status (capacity, deployments, load), marking hosts up or down as they answer or not.

A host changes state here only; whoever cares is told: ``on_down(address, reason)`` when a host
that was usable stops answering, ``on_up(address)`` when one becomes usable (registered, or
answering again)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from dynasoar.consumer.host_client import HostClient, HostStatus, normalize
from dynasoar.errors import DynasoarError, TransportError
from dynasoar.provider.placement import HostView
from dynasoar.provider.registry import HostRecord, Registry, now

log = logging.getLogger(__name__)

#: States in which a host takes new deployments.
PLACEABLE = frozenset({"up", "unknown"})


class HostDirectory:
    def __init__(self, registry: Registry, client: HostClient, status_timeout: float = 3.0) -> None:
        self._registry = registry
        self._client = client
        self._timeout = status_timeout
        self.on_down: Callable[[str, str], None] = lambda address, reason: None
        self.on_up: Callable[[str], None] = lambda address: None

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
        before = self._registry.host_state(address)
        state = "draining" if before == "draining" else "up"
        record = _record(address, status, state)
        self._registry.put_host(record)
        if before != state:
            log.info("host %s is %s (capacity %d)", address, state, status.capacity)
        if before not in ("up", "draining"):
            self.on_up(address)
        return record

    async def survey(self, addresses: list[str] | None = None) -> list[HostView]:
        """Ask hosts for their status at once; those that answer and take new deployments, as
        placement sees them. Hosts that deregistered are not asked."""
        if addresses is None:
            addresses = [h.address for h in self._registry.hosts() if h.state != "left"]
        results = await asyncio.gather(
            *(self._client.status(h, self._timeout) for h in addresses), return_exceptions=True
        )
        views = []
        for address, result in zip(addresses, results, strict=True):
            if isinstance(result, HostStatus):
                before = self._registry.host_state(address)
                if before in ("draining", "left"):
                    continue  # it answers, but takes nothing new
                self._registry.put_host(_record(address, result, "up"))
                if before != "up":
                    log.info("host %s is up again", address)
                    self.on_up(address)
                views.append(
                    HostView(
                        address, result.capacity, result.deployments, result.load, result.terms
                    )
                )
            else:
                self.mark_down(address, result)
        return views

    def mark_down(self, address: str, reason: object) -> None:
        """``address`` stopped answering: unusable until it answers again."""
        state = self._registry.host_state(address)
        if state is not None and state not in ("down", "left"):
            log.warning("host %s is down: %s", address, reason)
            self._registry.set_host_state(address, "down")
            self.on_down(address, str(reason))

    def set_state(self, address: str, state: str) -> None:
        """A host's own word on its state: "draining", or "left" (deregistered)."""
        if self._registry.host_state(address) is not None:
            log.info("host %s is %s", address, state)
            self._registry.set_host_state(address, state)

    def placeable(self, address: str) -> bool:
        return self._registry.host_state(address) in PLACEABLE

    async def refresh(self) -> list[HostRecord]:
        await self.survey()
        return self._registry.hosts()


def _record(address: str, status: HostStatus, state: str) -> HostRecord:
    return HostRecord(
        address,
        state,
        status.capacity,
        status.deployments,
        status.load,
        now(),
        status.cache,
        status.terms,
        status.snapshots,
    )
