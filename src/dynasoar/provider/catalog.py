"""The catalog of advertised services, as the message path reads it (in memory): each service's
routed versions, their shares of its messages, and the contract it advertises (that of the
version with the largest share). Messages are spread over the versions by smooth weighted
round-robin (as nginx spreads over weighted upstreams): over any run of 100 messages, each
version gets its share to within one message."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from dynasoar.provider.registry import Registry, Route, ServiceRecord
from dynasoar.wsdl import ServiceContract, read_contract


@dataclass(frozen=True)
class Version:
    record: ServiceRecord
    contract: ServiceContract


class Advertised:
    """One advertised service. ``record`` and ``contract`` are its primary version's."""

    def __init__(self, route: Route, versions: dict[str, Version]) -> None:
        self.route = route
        self.versions = versions
        primary = versions[route.primary]
        self.record: ServiceRecord = primary.record
        self.contract: ServiceContract = primary.contract
        self._shares = [(versions[v].record, w) for v, w in route.traffic]
        self._current = [0] * len(self._shares)
        self._total = sum(w for _, w in self._shares)

    def pick(self) -> ServiceRecord:
        """The version the next message goes to (called from the event loop only)."""
        if len(self._shares) == 1:
            return self._shares[0][0]
        best = 0
        for i, (_, weight) in enumerate(self._shares):
            self._current[i] += weight
            if self._current[i] > self._current[best]:
                best = i
        self._current[best] -= self._total
        return self._shares[best][0]


class Catalog:
    """Every advertised service, rebuilt from the registry when its versions or route change."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._services: dict[str, Advertised] = {}
        self._contracts: dict[tuple[str, str, str], ServiceContract] = {}
        self._lock = threading.Lock()
        for route in registry.routes():
            self.refresh(route.service)

    def get(self, name: str) -> Advertised | None:
        return self._services.get(name)

    def all(self) -> list[Advertised]:
        return list(self._services.values())

    def refresh(self, name: str) -> Advertised | None:
        """Read ``name``'s route and routed versions again (after a publish or a rollout)."""
        with self._lock:
            route = self._registry.route(name)
            versions: dict[str, Version] = {}
            for version, _ in route.traffic if route is not None else ():
                record = self._registry.version(name, version)
                if record is not None:
                    versions[version] = Version(record, self._contract(record))
            if route is None or route.primary not in versions:
                self._services.pop(name, None)
                return None
            routed = tuple((v, w) for v, w in route.traffic if v in versions)
            advertised = Advertised(
                Route(route.service, routed, route.previous, route.changed), versions
            )
            self._services[name] = advertised
            return advertised

    def _contract(self, record: ServiceRecord) -> ServiceContract:
        key = (record.name, record.version, record.sha256)
        contract = self._contracts.get(key)
        if contract is None:
            if len(self._contracts) > 1024:
                self._contracts.clear()
            contract = self._contracts[key] = read_contract(record.wsdl)
        return contract
