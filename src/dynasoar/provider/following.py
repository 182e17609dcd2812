"""What an SP does because other SPs share its registry: it follows their changes. The
registry's listening thread hears what they announce; here each change reaches the parts
that keep it in memory (the catalog, the hosts' figures, the moves under way), on the SP's
own loop; and the figures other SPs heard in their hosts' heartbeats are read now and then.
With one SP (SQLite) nothing is announced, and nothing is read."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from dynasoar.errors import DynasoarError
from dynasoar.provider.hosts import HostDirectory
from dynasoar.provider.move_watch import MoveWatch
from dynasoar.provider.registry import Registry, now
from dynasoar.provider.service_provider import ServiceProvider

log = logging.getLogger(__name__)

#: Seconds between readings of the hosts' figures other SPs heard, from a shared registry.
HOSTS_RELOAD = 10.0
#: How far back each reading looks besides (beats reach the registry in batches, and the
#: SPs' clocks differ a little).
HOSTS_MARGIN = timedelta(seconds=30)


class Following:
    def __init__(
        self,
        registry: Registry,
        provider: ServiceProvider,
        hosts: HostDirectory,
        moves: MoveWatch,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._registry = registry
        self._provider = provider
        self._hosts = hosts
        self._moves = moves
        self._loop = loop
        self._reading: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._registry.on_route_change.append(self._route_changed)
        self._registry.on_host_change.append(self._host_changed)
        self._registry.on_move_change.append(self._moves.changed)
        self._registry.follow()
        self._reading = asyncio.create_task(self._read_hosts())

    async def stop(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)
            self._reading = None

    def _route_changed(self, name: str) -> None:
        """Another SP published or moved traffic (from the registry's listening thread)."""
        self._loop.call_soon_threadsafe(self._provider.refresh_catalog, name)

    def _host_changed(self, address: str) -> None:
        def seen() -> None:
            record = self._registry.host(address)
            if record is not None:
                self._hosts.heard_of(record)

        self._loop.call_soon_threadsafe(seen)

    async def _read_hosts(self) -> None:
        """The figures other SPs heard in their hosts' heartbeats, now and then: the rows of
        hosts heard from since the last reading (with a margin for the SPs' batches and
        clocks), never the whole fleet. Changes of state are announced."""
        if not self._registry.shared:
            return
        since = now()
        while True:
            await asyncio.sleep(HOSTS_RELOAD)
            started = now()
            try:
                self._hosts.reload_heard(since - HOSTS_MARGIN)
            except DynasoarError as exc:
                log.info("hosts' figures not reloaded: %s", exc.reason)
                continue
            since = started
