"""The Service Provider's metrics, in a Prometheus registry of its own (two SPs in one process
keep theirs apart), served at ``/metrics``. Counters and histograms move as messages and
deployments happen; gauges (hosts, replicas, messages in flight) are read from the SP's state
when scraped. Every name is listed in docs/operating.md."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dynasoar.provider.load import LoadTracker
from dynasoar.provider.registry import Registry
from dynasoar.watch import build_info

#: Relayed messages take milliseconds; cold ones, seconds to minutes (a VM boots).
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0,
)
DEPLOY_BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
#: The service label of a message no advertised service matched (its name is the consumer's
#: to choose: never a label value).
NO_SERVICE = "-"


@dataclass
class _PerService:
    """One service's labelled metrics, looked up once (labels() costs more than inc())."""

    latency: Histogram
    request_bytes: Counter
    response_bytes: Counter
    outcomes: dict[str, Counter]


class ProviderMetrics:
    def __init__(self, state: SpState) -> None:
        self.registry = r = CollectorRegistry()
        build_info(r, "sp")
        self.messages = Counter(
            "dynasoar_sp_messages",
            "Messages to advertised services, by service and outcome (ok, service_fault: the "
            "service's own fault, or the fault the SP answered with)",
            ["service", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "dynasoar_sp_message_seconds",
            "Time from a message's arrival to its reply's head, by service",
            ["service"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.request_bytes = Counter(
            "dynasoar_sp_request_bytes", "Bytes of messages received, by service", ["service"],
            registry=r,
        )
        self.response_bytes = Counter(
            "dynasoar_sp_response_bytes", "Bytes of replies sent, by service", ["service"],
            registry=r,
        )
        self.cold = Histogram(
            "dynasoar_sp_cold_start_seconds",
            "Messages that waited for their service to be deployed (cold starts), and how long "
            "they took",
            ["service"],
            buckets=DEPLOY_BUCKETS,
            registry=r,
        )
        self.failovers = Counter(
            "dynasoar_sp_failovers",
            "Messages of stateless services sent once more, to a new deployment, after theirs "
            "was lost",
            ["service"],
            registry=r,
        )
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
        )
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
        r.register(_StateCollector(state))
        self._services: dict[str, _PerService] = {}

    def service(self, name: str) -> _PerService:
        found = self._services.get(name)
        if found is None:
            found = self._services[name] = _PerService(
                self.latency.labels(name),
                self.request_bytes.labels(name),
                self.response_bytes.labels(name),
                {},
            )
        return found

    def message(self, name: str, outcome: str, seconds: float, received: int, sent: int) -> None:
        per = self.service(name)
        counter = per.outcomes.get(outcome)
        if counter is None:
            counter = per.outcomes[outcome] = self.messages.labels(name, outcome)
        counter.inc()
        per.latency.observe(seconds)
        if received:
            per.request_bytes.inc(received)
        if sent:
            per.response_bytes.inc(sent)


@dataclass
class SpState:
    """Where the gauges are read from, when scraped."""

    registry: Registry
    load: LoadTracker
    catalog_size: Callable[[], int]
    repository_stats: Callable[[], tuple[int, int]]  # images held, their bytes


class _StateCollector(Collector):
    def __init__(self, state: SpState) -> None:
        self._state = state

    def collect(self) -> Iterable[Metric]:
        state = self._state
        hosts = GaugeMetricFamily(
            "dynasoar_sp_hosts", "Host Providers known, by state", labels=["state"]
        )
        by_state: dict[str, int] = dict.fromkeys(("up", "down", "unknown", "draining", "left"), 0)
        for host in state.registry.hosts():
            by_state[host.state] = by_state.get(host.state, 0) + 1
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
