"""The Host Providers a Service Provider may use: registration, deregistration, their figures
as their heartbeats report them (kept in memory, and in the registry for the other SPs), and a
live check of a few of them, marking hosts up or down as they answer or not.

Placement reads the figures in memory and asks only a few candidates for their live Status
(:meth:`HostDirectory.candidates`, :meth:`HostDirectory.survey`): never the whole fleet. An
operator's ListHosts is answered from the same figures (:meth:`HostDirectory.listing`), each
with when the host was last heard from; the control loop checks a few hosts at a time that
nothing else would hear from (named on the command line and never checked, or down and not
beating: :meth:`HostDirectory.unheard`).

A host changes state here only; whoever cares is told: ``on_down(address, reason)`` when a host
that was usable stops answering, ``on_up(address)`` when one becomes usable (registered, or
answering again)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from dynasoar.consumer.host_client import HostClient, HostStatus, normalize
from dynasoar.errors import Busy, DynasoarError, TransportError
from dynasoar.provider.placement import HostView
from dynasoar.provider.records import NEVER_SEEN
from dynasoar.provider.registry import HostRecord, Registry, now

log = logging.getLogger(__name__)

#: States in which a host takes new deployments.
PLACEABLE = frozenset({"up", "unknown"})
#: States of hosts that only a live check brings back (or tells apart): none of their beats
#: are heard.
UNHEARD = ("unknown", "down")
#: Registrations of hosts not known yet, asked for their Status at once at most (more: Busy):
#: a flood of made-up addresses costs the SP this many calls in flight, no more.
NEW_HOSTS_AT_ONCE = 32


class HostDirectory:
    def __init__(self, registry: Registry, client: HostClient, status_timeout: float = 3.0) -> None:
        self._registry = registry
        self._client = client
        self._timeout = status_timeout
        self.on_down: Callable[[str, str], None] = lambda address, reason: None
        self.on_up: Callable[[str], None] = lambda address: None
        #: Every host's figures as last reported (heartbeat, Status, or another SP's record).
        self.views: dict[str, HostView] = {}
        #: Every host's record as last heard (its figures, and when), for ListHosts.
        self._records: dict[str, HostRecord] = {}
        self._addresses: list[str] = []  # the keys of ``views``, for sampling
        self._unheard_turn = 0  # where the next few hosts checked by the control loop start
        self._new = asyncio.Semaphore(NEW_HOSTS_AT_ONCE)
        self.reload_views()

    # -- figures in memory -----------------------------------------------------------------

    def _view(self, record: HostRecord) -> None:
        if record.address not in self.views:
            self._addresses.append(record.address)
        self._records[record.address] = record
        self.views[record.address] = HostView(
            record.address, record.capacity, record.deployments, record.load, record.terms
        )

    def reload_views(self) -> None:
        """Every host's figures from the registry (those other SPs heard, too)."""
        records = self._registry.hosts()
        self.views = {}
        self._records = {}
        self._addresses = []
        for record in records:
            self._view(record)

    def counted(self, address: str, delta: int) -> None:
        """This SP made (+1) or ended (-1) a deployment on ``address``: its figures in
        memory count it at once (its next heartbeat brings the host's own count)."""
        record = self._records.get(address)
        if record is not None:
            self._view(replace(record, deployments=max(0, record.deployments + delta)))

    def reload_heard(self, since: datetime) -> int:
        """The figures of the hosts heard from since ``since`` (by any SP sharing the
        registry), read again: a few rows, not the fleet. Returns how many."""
        records = self._registry.hosts_seen_since(since)
        for record in records:
            self._view(record)
        return len(records)

    def heard_of(self, record: HostRecord) -> None:
        """Another SP recorded this host (its state, its figures)."""
        self._view(record)

    def heard(self, address: str, figures: HostRecord) -> HostRecord:
        """A heartbeat with the host's own figures: no need to ask it anything. A host seen
        for the first time (or again) is recorded at once; the figures of one already up
        reach the registry with the heartbeats' next batch."""
        before = self._registry.host_state(address)
        state = "draining" if before == "draining" else "up"
        record = HostRecord(
            address, state, figures.capacity, figures.deployments, figures.load, now(),
            figures.cache, figures.terms, figures.snapshots,
        )
        self._view(record)
        if before != state:
            self._registry.put_host(record)
            log.info("host %s is %s (capacity %d)", address, state, record.capacity)
            if before not in ("up", "draining"):
                self.on_up(address)
        return record

    def candidates(self, count: int, accept: Callable[[HostView], bool]) -> list[HostView]:
        """Up to ``count`` distinct hosts, at random, that take deployments and that
        ``accept`` takes (the power of d choices: Mitzenmacher; Sparrow). Sampling gives up
        after a bounded number of draws and then scans, so a rare kind of host is found too."""
        found: dict[str, HostView] = {}
        addresses = self._addresses
        if addresses:
            for _ in range(16 * count):
                view = self.views.get(addresses[random.randrange(len(addresses))])
                if view is not None and view.address not in found:
                    if self.placeable(view.address) and accept(view):
                        found[view.address] = view
                        if len(found) >= count:
                            return list(found.values())
        scan = [v for v in self.views.values() if self.placeable(v.address) and accept(v)]
        random.shuffle(scan)
        for view in scan:
            found.setdefault(view.address, view)
            if len(found) >= count:
                break
        return list(found.values())

    def placeable_views(self) -> list[HostView]:
        return [v for v in self.views.values() if self.placeable(v.address)]

    def listing(self) -> list[HostRecord]:
        """Every host known, as last heard (heartbeats, live checks, other SPs' records), in
        its state now: no host is asked anything."""
        listed = (self.record(address) for address in sorted(self._records))
        return [record for record in listed if record is not None]

    def record(self, address: str) -> HostRecord | None:
        """One host as last heard, in its state now (None: not registered); asks nothing."""
        state = self._registry.host_state(address)
        record = self._records.get(address)
        return replace(record, state=state) if state is not None and record is not None else None

    def unheard(self, count: int) -> list[str]:
        """The next ``count`` hosts, in turn, that nothing but a live check would hear from:
        named on the command line and never checked ("unknown"), or down (a host that does
        not beat comes back only by answering one)."""
        states = self._registry.host_states()
        waiting = sorted(a for a, s in states.items() if s in UNHEARD)
        if len(waiting) <= count:
            return waiting
        start = self._unheard_turn % len(waiting)
        self._unheard_turn = start + count
        return (waiting + waiting)[start : start + count]

    # -- registration and live checks ------------------------------------------------------

    def add(self, address: str) -> None:
        """A host named on the command line; its figures come with the first survey."""
        address = normalize(address)
        if self._registry.host(address) is None:
            record = HostRecord(address, "unknown", 0, 0, 0.0, NEVER_SEEN)
            self._registry.put_host(record)
            self._view(record)

    async def register(self, address: str) -> HostRecord:
        address = normalize(address)
        if not address.startswith(("http://", "https://")):
            raise TransportError(f"a host address is an http(s) URL, not {address!r}")
        known = self._registry.host_state(address) is not None
        if not known and self._new.locked():
            raise Busy("too many hosts registering at once; retry in a few seconds")
        async with self._new if not known else _nothing():
            try:
                status = await self._client.status(address, self._timeout)
            except DynasoarError as exc:
                raise TransportError(
                    f"the host {address} did not answer Status: {exc.reason}"
                ) from exc
        before = self._registry.host_state(address)
        state = "draining" if before == "draining" else "up"
        record = _record(address, status, state)
        self._registry.put_host(record)
        self._view(record)
        if before != state:
            log.info("host %s is %s (capacity %d)", address, state, status.capacity)
        if before not in ("up", "draining"):
            self.on_up(address)
        return record

    async def survey(self, addresses: list[str]) -> list[HostView]:
        """Ask these hosts (a few: placement's candidates, a host named on the command line)
        for their status at once; those that answer and take new deployments, as placement
        sees them."""
        results = await asyncio.gather(
            *(self._client.status(h, self._timeout) for h in addresses), return_exceptions=True
        )
        views = []
        for address, result in zip(addresses, results, strict=True):
            if isinstance(result, HostStatus):
                before = self._registry.host_state(address)
                if before in ("draining", "left"):
                    continue  # it answers, but takes nothing new
                record = _record(address, result, "up")
                self._view(record)
                self._registry.put_host(record)
                if before != "up":
                    log.info("host %s is up again", address)
                    self.on_up(address)
                views.append(self.views[address])
            elif isinstance(result, DynasoarError):
                self.mark_down(address, result)
            elif isinstance(result, BaseException):
                raise result
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


class _nothing:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


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
