"""What the Service Provider has been doing, as its status page and metrics tell it: the latest
deployments (made or failed, how long they took), the latest faults it answered, the bytes it
shipped to hosts and those the hosts' image caches saved. The shipper reports here
(:class:`ShipObserver`), and so does every message's access line."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from dynasoar.errors import DynasoarError
from dynasoar.provider.metrics import ProviderMetrics
from dynasoar.provider.records import DeploymentRecord, ServiceRecord

#: Events kept for the status page, each kind.
KEPT_EVENTS = 50
#: A reason on the page is cut to this many characters (the full one is in the log).
MAX_REASON = 500


class ShipObserver(Protocol):
    """What the shipper tells about each deployment it makes and ends."""

    def shipped(self, package_bytes: int, image_bytes: int, saved_bytes: int) -> None: ...

    def deployed(self, record: DeploymentRecord, seconds: float) -> None: ...

    def deploy_failed(
        self, service: ServiceRecord, host: str, error: BaseException, seconds: float
    ) -> None: ...

    def undeployed(self, host: str, deployment_id: str, ok: bool) -> None: ...


class Unobserved:
    """A shipper nobody watches."""

    def shipped(self, package_bytes: int, image_bytes: int, saved_bytes: int) -> None:
        pass

    def deployed(self, record: DeploymentRecord, seconds: float) -> None:
        pass

    def deploy_failed(
        self, service: ServiceRecord, host: str, error: BaseException, seconds: float
    ) -> None:
        pass

    def undeployed(self, host: str, deployment_id: str, ok: bool) -> None:
        pass


@dataclass(frozen=True)
class DeployEvent:
    at: float  # time.time()
    service: str
    version: str
    host: str
    seconds: float
    deployment: str | None  # None: it failed
    reason: str = ""


@dataclass(frozen=True)
class FaultEvent:
    at: float
    service: str
    code: str
    reason: str
    message_id: str


class Activity:
    def __init__(self, metrics: ProviderMetrics) -> None:
        self.metrics = metrics
        self.deploys: deque[DeployEvent] = deque(maxlen=KEPT_EVENTS)
        self.faults: deque[FaultEvent] = deque(maxlen=KEPT_EVENTS)
        #: Bytes shipped to hosts since start: packages, images; images hosts held already.
        self.shipped_package = 0
        self.shipped_images = 0
        self.saved = 0

    # -- the shipper's reports ---------------------------------------------------------------

    def shipped(self, package_bytes: int, image_bytes: int, saved_bytes: int) -> None:
        self.shipped_package += package_bytes
        self.shipped_images += image_bytes
        self.saved += saved_bytes
        self.metrics.shipped.labels("package").inc(package_bytes)
        if image_bytes:
            self.metrics.shipped.labels("image").inc(image_bytes)
        if saved_bytes:
            self.metrics.saved.inc(saved_bytes)

    def deployed(self, record: DeploymentRecord, seconds: float) -> None:
        self.metrics.deploys.labels(record.service, "ok").inc()
        self.metrics.deploy_seconds.labels(record.service).observe(seconds)
        event = DeployEvent(
            time.time(), record.service, record.version, record.host, seconds, record.id
        )
        self.deploys.append(event)

    def deploy_failed(
        self, service: ServiceRecord, host: str, error: BaseException, seconds: float
    ) -> None:
        self.metrics.deploys.labels(service.name, "failed").inc()
        reason = error.reason if isinstance(error, DynasoarError) else repr(error)
        self.deploys.append(
            DeployEvent(
                time.time(), service.name, service.version, host, seconds, None, _cut(reason)
            )
        )

    def undeployed(self, host: str, deployment_id: str, ok: bool) -> None:
        self.metrics.undeploys.labels("ok" if ok else "failed").inc()

    # -- faults the SP answered ----------------------------------------------------------------

    def fault(self, service: str, code: str, reason: str, message_id: str) -> None:
        self.faults.append(FaultEvent(time.time(), service, code, _cut(reason), message_id))


def _cut(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[:MAX_REASON] + "…"
