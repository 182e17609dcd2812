"""Hosts' heartbeats as every SP hears them. A host may beat with any SP sharing the registry,
so each keeps the beats it hears in memory and writes them to the registry in batches (one
transaction for all the beats of the last half second); whichever SP leads the control loop
then judges every host by the registry: one indexed query for the hosts whose beat is overdue.

How often hosts beat adapts to the fleet: the SP answers each beat with the interval it wants,
so that the whole fleet sends about ``rate`` beats a second (never more often than the host
asked, never less often than ``MAX_INTERVAL``). A host beating far more often than that is told
so (dyn:Busy) without being processed: it cannot make the SP work for it."""

from __future__ import annotations

import time
from dataclasses import dataclass

from dynasoar.beats import RETRY_CEILING
from dynasoar.provider.records import HostRecord
from dynasoar.provider.registry import Registry

#: Beats a second the SP takes from the whole fleet, by default (see ``interval_for``): a
#: signed beat costs the SP some 5 ms of CPU (``make bench``), so 15 a second is under a
#: tenth of a core. Up to 30 hosts beat at the interval they ask (2 s); 10,000 beat every
#: 600 s, and a host that dies silently is then found by the next call or placement needing it.
DEFAULT_RATE = 15.0
#: However big the fleet, a host beats at least this often (seconds).
MAX_INTERVAL = 600.0
#: Missing a beat or two is weather; three, or the SP's own limit if longer, is not.
MISSED_BEATS = 3
#: A beat sooner than this share of the interval the host was given is refused (a flood).
FLOOD_SHARE = 0.25
#: Beats kept in memory before a flush at most (a bound, whatever the fleet does meanwhile).
MAX_PENDING = 100_000


@dataclass(frozen=True)
class Beat:
    address: str
    deadline: float  # epoch seconds: after this, the host is overdue
    figures: HostRecord | None  # what it reported, if it did


class Heartbeats:
    def __init__(
        self, registry: Registry, host_timeout: float, rate: float = DEFAULT_RATE
    ) -> None:
        self._registry = registry
        self.host_timeout = host_timeout
        self.rate = rate
        self._pending: dict[str, Beat] = {}
        #: host -> (monotonic time of its last beat accepted, the interval it was given)
        self._last: dict[str, tuple[float, float]] = {}
        #: hosts known to this SP (its own beats and the registry's), for the fleet's size
        self.fleet = 0
        #: A host is judged by a deadline from before this SP listened (written by its earlier
        #: run, or a peer) only from this time on (epoch seconds): beats missed while no SP
        #: could hear them (this one was restarting) are no host's fault, and a host whose beat
        #: failed tries again within RETRY_CEILING. One that beat here is judged by its beat.
        self.judge_from = time.time() + host_timeout + RETRY_CEILING

    def listening(self) -> None:
        """This SP hears beats from now on."""
        self.judge_from = time.time() + self.host_timeout + RETRY_CEILING

    def interval_for(self, asked: float) -> float:
        """The interval a host that asked for ``asked`` seconds is given: the fleet together
        beats about ``rate`` times a second."""
        fleet = max(self.fleet, len(self._last))
        return max(asked, min(MAX_INTERVAL, fleet / self.rate))

    def too_soon(self, address: str) -> float | None:
        """Seconds until ``address`` may beat again, if this beat comes far too soon."""
        last = self._last.get(address)
        if last is None:
            return None
        wait = last[0] + last[1] * FLOOD_SHARE - time.monotonic()
        return wait if wait > 0 else None

    def beat(self, address: str, every: float, figures: HostRecord | None = None) -> float:
        """``address`` beat, promising another within ``every`` seconds; returns the interval
        it is to use from now on."""
        interval = self.interval_for(every)
        allowed = max(self.host_timeout, MISSED_BEATS * interval)
        self._last[address] = (time.monotonic(), interval)
        if len(self._pending) < MAX_PENDING or address in self._pending:
            self._pending[address] = Beat(address, time.time() + allowed, figures)
        return interval

    def forget(self, address: str) -> None:
        self._last.pop(address, None)
        self._pending.pop(address, None)

    def flush(self) -> None:
        """The beats heard since the last flush, into the registry (kept for the next flush
        when the registry cannot be reached)."""
        pending, self._pending = self._pending, {}
        try:
            self._registry.note_beats(
                [(b.address, b.deadline, b.figures) for b in pending.values()]
            )
        except BaseException:
            for address, beat in pending.items():
                self._pending.setdefault(address, beat)
            raise

    def overdue(self) -> list[tuple[str, float]]:
        """Hosts whose beat is overdue, with how long they have been silent past it."""
        now = time.time()
        return [
            (address, now - deadline)
            for address, deadline in self._registry.overdue(now)
            if now >= self.judge_from or address in self._last
        ]
