"""The Service Provider's metrics, in a Prometheus registry of its own (two SPs in one process
keep theirs apart), served at ``/metrics``. Per-message figures are kept as plain numbers on the
event loop (a metric object's inc/observe takes a lock and costs more than the rest of the
message's bookkeeping) and turned into metric families when scraped; the rarer events
(deployments, undeploys, bytes shipped) are ordinary counters and histograms; gauges (hosts,
replicas, messages in flight) are read from the SP's state when scraped. Every name is listed
in docs/operating.md."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from dynasoar.provider.load import LoadTracker
from dynasoar.provider.registry import Registry
from dynasoar.watch import build_info

#: Relayed messages take milliseconds; cold ones, seconds to minutes (a VM boots).
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0,
)  # fmt: skip
DEPLOY_BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
#: The service label of a message no advertised service matched (its name is the consumer's
#: to choose: never a label value).
NO_SERVICE = "-"


@dataclass
class _Buckets:
    """A histogram's figures: counts per bucket (not yet cumulative), their sum."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def exposed(self) -> list[tuple[str, float]]:
        running, out = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


@dataclass
class _PerService:
    """One service's message figures."""

    outcomes: dict[str, int] = field(default_factory=dict)
    latency: _Buckets = field(default_factory=lambda: _Buckets(LATENCY_BUCKETS))
    cold: _Buckets = field(default_factory=lambda: _Buckets(DEPLOY_BUCKETS))
    received: int = 0
    sent: int = 0
    failovers: int = 0


class ProviderMetrics:
    def __init__(self, state: SpState) -> None:
        self.registry = r = CollectorRegistry()
        build_info(r, "sp")
        #: Per-message figures by service (read and written on the event loop only).
        self.services: dict[str, _PerService] = {}
        self.deploys = Counter(
            "dynasoar_sp_deploys",
            "Deployments made on hosts (first messages, scale-out, explicit), by result",
            ["service", "result"],
            registry=r,
        )
        self.deploy_seconds = Histogram(
            "dynasoar_sp_deploy_seconds",
            "Time to ship a service to a host until its endpoint answered",
            ["service"],
            buckets=DEPLOY_BUCKETS,
            registry=r,
        )
        self.undeploys = Counter(
            "dynasoar_sp_undeploys", "Undeploy requests sent to hosts, by result", ["result"],
            registry=r,
        )  # fmt: skip
        self.shipped = Counter(
            "dynasoar_sp_shipped_bytes",
            "Bytes shipped to hosts with Deploy: packages and VM images",
            ["what"],
            registry=r,
        )
        self.saved = Counter(
            "dynasoar_sp_image_bytes_saved",
            "VM image bytes not shipped because the host's image cache held them already",
            registry=r,
        )
        self.control = Counter(
            "dynasoar_sp_control_messages",
            "Messages to the management port, by operation and outcome",
            ["operation", "outcome"],
            registry=r,
        )
        self.control_seconds = Histogram(
            "dynasoar_sp_control_seconds",
            "Time to answer a management operation",
            ["operation"],
            buckets=DEPLOY_BUCKETS,
            registry=r,
        )
        r.register(_MessageCollector(self.services))
        r.register(_StateCollector(state))

    def message(
        self,
        service: str,
        outcome: str,
        seconds: float,
        received: int,
        sent: int,
        cold: bool = False,
        retried: bool = False,
    ) -> None:
        """One message answered (on the event loop)."""
        figures = self.services.get(service)
        if figures is None:
            figures = self.services[service] = _PerService()
        outcomes = figures.outcomes
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        figures.latency.observe(seconds)
        figures.received += received
        figures.sent += sent
        if cold:
            figures.cold.observe(seconds)
        if retried:
            figures.failovers += 1


class _MessageCollector:
    def __init__(self, services: dict[str, _PerService]) -> None:
        self._services = services

    def collect(self) -> Iterable[Metric]:
        messages = CounterMetricFamily(
            "dynasoar_sp_messages",
            "Messages to advertised services, by service and outcome (ok, service_fault: the "
            "service's own fault, or the fault the SP answered with)",
            labels=["service", "outcome"],
        )
        latency = HistogramMetricFamily(
            "dynasoar_sp_message_seconds",
            "Time from a message's arrival to its reply's head, by service",
            labels=["service"],
        )
        received = CounterMetricFamily(
            "dynasoar_sp_request_bytes", "Bytes of messages received, by service",
            labels=["service"],
        )  # fmt: skip
        sent = CounterMetricFamily(
            "dynasoar_sp_response_bytes", "Bytes of replies sent, by service", labels=["service"]
        )
        cold = HistogramMetricFamily(
            "dynasoar_sp_cold_start_seconds",
            "Messages that waited for their service to be deployed (cold starts), and how long "
            "they took",
            labels=["service"],
        )
        failovers = CounterMetricFamily(
            "dynasoar_sp_failovers",
            "Messages of stateless services sent once more, to a new deployment, after theirs "
            "was lost",
            labels=["service"],
        )
        for name, figures in sorted(self._services.items()):
            for outcome, number in sorted(figures.outcomes.items()):
                messages.add_metric([name, outcome], number)
            latency.add_metric([name], figures.latency.exposed(), figures.latency.total)
            received.add_metric([name], figures.received)
            sent.add_metric([name], figures.sent)
            if any(figures.cold.counts):
                cold.add_metric([name], figures.cold.exposed(), figures.cold.total)
            if figures.failovers:
                failovers.add_metric([name], figures.failovers)
        yield from (messages, latency, received, sent, cold, failovers)


@dataclass
class SpState:
    """Where the gauges are read from, when scraped."""

    registry: Registry
    load: LoadTracker
    catalog_size: Callable[[], int]
    repository_stats: Callable[[], tuple[int, int]]  # images held, their bytes


class _StateCollector:
    def __init__(self, state: SpState) -> None:
        self._state = state

    def collect(self) -> Iterable[Metric]:
        state = self._state
        hosts = GaugeMetricFamily(
            "dynasoar_sp_hosts", "Host Providers known, by state", labels=["state"]
        )
        by_state: dict[str, int] = dict.fromkeys(("up", "down", "unknown", "draining", "left"), 0)
        for host_state in state.registry.host_states().values():  # memory: no fleet query
            by_state[host_state] = by_state.get(host_state, 0) + 1
        for name, number in sorted(by_state.items()):
            hosts.add_metric([name], number)
        yield hosts
        deployments = GaugeMetricFamily(
            "dynasoar_sp_deployments", "Deployments recorded, by state", labels=["state"]
        )
        replicas = GaugeMetricFamily(
            "dynasoar_sp_replicas", "Ready deployments of each service", labels=["service"]
        )
        outstanding = GaugeMetricFamily(
            "dynasoar_sp_outstanding_messages",
            "Messages relayed to a service's deployments and not yet answered",
            labels=["service"],
        )
        counts: dict[str, int] = dict.fromkeys(("deploying", "ready", "lost"), 0)
        ready: dict[str, int] = {}
        waiting: dict[str, int] = {}
        for record in state.registry.deployments():
            counts[record.state] = counts.get(record.state, 0) + 1
            if record.state == "ready":
                ready[record.service] = ready.get(record.service, 0) + 1
            waiting[record.service] = waiting.get(record.service, 0) + state.load.outstanding(
                record.id
            )
        for name, number in sorted(counts.items()):
            deployments.add_metric([name], number)
        for name in sorted(set(ready) | set(waiting)):
            replicas.add_metric([name], ready.get(name, 0))
            outstanding.add_metric([name], waiting.get(name, 0))
        yield deployments
        yield replicas
        yield outstanding
        yield GaugeMetricFamily(
            "dynasoar_sp_services", "Services advertised", value=state.catalog_size()
        )
        images, size = state.repository_stats()
        yield GaugeMetricFamily(
            "dynasoar_sp_repository_images", "VM images held by the SP's repository", value=images
        )
        yield GaugeMetricFamily(
            "dynasoar_sp_repository_image_bytes", "Bytes of those images", value=size
        )
