"""Placement: which Host Provider gets a new deployment. Least-loaded among hosts with room."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class HostView:
    """A host as placement sees it: live figures from its Status reply."""

    address: str
    capacity: int
    deployments: int
    load: float

    @property
    def has_room(self) -> bool:
        return self.deployments < self.capacity

    @property
    def utilisation(self) -> float:
        return self.deployments / self.capacity if self.capacity else 1.0


def least_loaded(hosts: Sequence[HostView]) -> list[HostView]:
    """Hosts with room, best first: lowest utilisation, then fewest deployments, then CPU load."""
    candidates = [h for h in hosts if h.has_room]
    return sorted(candidates, key=lambda h: (h.utilisation, h.deployments, h.load, h.address))
