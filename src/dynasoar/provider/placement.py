"""Placement: which Host Provider gets a new deployment.

Every policy orders the *eligible* hosts, best first; eligibility is the same for all: room
left (a full host is never chosen), the service's required labels, the consumer's preferred
hosts, and not already running this service (a replica goes elsewhere). Policies:

    least-loaded   lowest share of capacity in use, then fewest deployments, then CPU load
    round-robin    the next eligible host after the one chosen last
    cheapest       lowest price per deployment-hour
    data-locality  nearest to the service's data site; hosts not near it at all come last
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from dynasoar.terms import HostTerms

DEFAULT_POLICY = "least-loaded"


@dataclass(frozen=True)
class HostView:
    """A host as placement sees it: live figures from its Status reply."""

    address: str
    capacity: int
    deployments: int
    load: float
    terms: HostTerms = HostTerms()

    @property
    def has_room(self) -> bool:
        return self.deployments < self.capacity

    @property
    def utilisation(self) -> float:
        return self.deployments / self.capacity if self.capacity else 1.0


@dataclass(frozen=True)
class Need:
    """What one deployment asks of its host."""

    labels: Mapping[str, str] = field(default_factory=dict)
    data_site: str | None = None
    preferred: frozenset[str] | None = None  # the consumer's PreferredHosts, if it sent any
    exclude: frozenset[str] = frozenset()  # hosts already running the service


class Policy(Protocol):
    name: str

    def order(self, hosts: Sequence[HostView], need: Need) -> list[HostView]: ...


def _load_key(h: HostView) -> tuple[float, int, float, str]:
    return (h.utilisation, h.deployments, h.load, h.address)


class LeastLoaded:
    name = "least-loaded"

    def order(self, hosts: Sequence[HostView], need: Need) -> list[HostView]:
        return sorted(hosts, key=_load_key)


class Cheapest:
    name = "cheapest"

    def order(self, hosts: Sequence[HostView], need: Need) -> list[HostView]:
        return sorted(hosts, key=lambda h: (h.terms.price, *_load_key(h)))


class DataLocality:
    name = "data-locality"

    def order(self, hosts: Sequence[HostView], need: Need) -> list[HostView]:
        def distance(h: HostView) -> float:
            d = h.terms.distance_to(need.data_site) if need.data_site else None
            return float("inf") if d is None else d

        return sorted(hosts, key=lambda h: (distance(h), *_load_key(h)))


class RoundRobin:
    name = "round-robin"

    def __init__(self) -> None:
        self._turn = itertools.count()

    def order(self, hosts: Sequence[HostView], need: Need) -> list[HostView]:
        ring = sorted(hosts, key=lambda h: h.address)
        if not ring:
            return []
        start = next(self._turn) % len(ring)
        return ring[start:] + ring[:start]


def policies() -> dict[str, Policy]:
    """One instance of each policy (round-robin keeps its turn between calls)."""
    return {p.name: p for p in (LeastLoaded(), RoundRobin(), Cheapest(), DataLocality())}


def eligible(hosts: Sequence[HostView], need: Need) -> list[HostView]:
    return [
        h
        for h in hosts
        if h.has_room
        and h.address not in need.exclude
        and (need.preferred is None or h.address in need.preferred)
        and h.terms.satisfies(need.labels)
    ]


def least_loaded(hosts: Sequence[HostView]) -> list[HostView]:
    """Hosts with room, best first, by the default policy."""
    return LeastLoaded().order(eligible(hosts, Need()), Need())
