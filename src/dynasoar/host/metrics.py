"""The Host Provider's metrics, in a Prometheus registry of its own, served at ``/metrics``:
control messages by operation and outcome (a Deploy's time is its package's shipping, unpacking
and start), and, read when scraped, its deployments, capacity and VM image cache. Every name
is listed in docs/operating.md."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from dynasoar.host.hosting import HostProvider
from dynasoar.watch import build_info

CONTROL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class HostMetrics:
    def __init__(self, host: HostProvider) -> None:
        self.registry = r = CollectorRegistry()
        build_info(r, "hp")
        self.control = Counter(
            "dynasoar_hp_control_messages",
            "Control messages (Deploy, Undeploy, Status, List, QueryImages, GetLogs), by "
            "operation and outcome (ok, or the fault's code)",
            ["operation", "outcome"],
            registry=r,
        )
        self.control_seconds = Histogram(
            "dynasoar_hp_control_seconds",
            "Time to answer a control message (a Deploy: receiving, unpacking, starting)",
            ["operation"],
            buckets=CONTROL_BUCKETS,
            registry=r,
        )
        r.register(_StateCollector(host))


class _StateCollector:
    def __init__(self, host: HostProvider) -> None:
        self._host = host

    def collect(self) -> Iterable[Metric]:
        host = self._host
        deployments = GaugeMetricFamily(
            "dynasoar_hp_deployments",
            "Deployments on this host, by kind and state (starting, ready)",
            labels=["kind", "state"],
        )
        counts: dict[tuple[str, str], int] = {
            (kind, state): 0 for kind in host.backends for state in ("starting", "ready")
        }
        for hosted in [*host.hosted(), *host.starting()]:
            key = (hosted.kind, hosted.state)
            counts[key] = counts.get(key, 0) + 1
        for (kind, state), number in sorted(counts.items()):
            deployments.add_metric([kind, state], number)
        yield deployments
        yield GaugeMetricFamily(
            "dynasoar_hp_capacity", "Deployments this host takes at once", value=host.capacity
        )
        stats = host.images.stats()
        yield GaugeMetricFamily(
            "dynasoar_hp_image_cache_images", "VM images held in the cache", value=stats.images
        )
        yield GaugeMetricFamily(
            "dynasoar_hp_image_cache_bytes", "Bytes of the images held", value=stats.bytes
        )
        yield GaugeMetricFamily(
            "dynasoar_hp_image_cache_capacity_bytes",
            "The size above which least-recently-used images not in use are evicted",
            value=stats.capacity,
        )
        yield CounterMetricFamily(
            "dynasoar_hp_image_received_bytes",
            "VM image bytes received with Deploy since the host started",
            value=stats.received,
        )
