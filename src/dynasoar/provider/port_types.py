"""The data types of the Service Provider's management port (wsdl/dynasoar.xsd), as spyne
models, and how the registry's records become them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from spyne import AnyUri, Boolean, ComplexModel, Date, DateTime, Double, Integer, Long, Unicode

from dynasoar import ns
from dynasoar.images import CacheStats
from dynasoar.provider.load import LoadTracker
from dynasoar.provider.moves import MoveOutcome
from dynasoar.provider.records import NEVER_SEEN
from dynasoar.provider.registry import DeploymentRecord, HostRecord, Route, ServiceRecord, Traffic
from dynasoar.provider.rollout import Outcome
from dynasoar.provider.usage import BillRow
from dynasoar.service.snapshot_types import SnapshotStatsModel, snapshot_stats
from dynasoar.service.types import HostStatus, HostTermsModel, ImageCache, host_terms, image_cache
from dynasoar.snapshots import SnapshotStats
from dynasoar.terms import HostTerms


class UsageRow(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    day = Date
    consumer = Unicode
    service = Unicode
    version = Unicode
    host = AnyUri
    messages = Long
    bytesIn = Long
    bytesOut = Long
    wallSeconds = Double
    cpuSeconds = Double
    memoryGiBSeconds = Double
    imageBytes = Long
    priceCpu = Double
    priceGiB = Double
    cost = Double


def usage_row(row: BillRow) -> UsageRow:
    k, t = row.key, row.tally
    return UsageRow(
        day=date.fromisoformat(k.day),
        consumer=k.consumer,
        service=k.service,
        version=k.version,
        host=k.host,
        messages=t.messages,
        bytesIn=t.bytes_in,
        bytesOut=t.bytes_out,
        wallSeconds=round(t.wall_seconds, 6),
        cpuSeconds=round(t.cpu_seconds, 6),
        memoryGiBSeconds=round(t.memory_gib_seconds, 6),
        imageBytes=t.image_bytes,
        priceCpu=row.price_cpu,
        priceGiB=row.price_gib,
        cost=round(row.cost, 9),
    )


class MoveInfo(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    service = Unicode
    source = AnyUri
    target = AnyUri
    deployment = Unicode
    seconds = Double
    held = Double
    bytes = Long


def move_info(outcome: MoveOutcome) -> MoveInfo:
    return MoveInfo(
        service=outcome.service,
        source=outcome.source,
        target=outcome.target,
        deployment=outcome.deployment,
        seconds=round(outcome.seconds, 3),
        held=round(outcome.held, 3),
        bytes=outcome.bytes,
    )


class TrafficShare(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    version = Unicode
    percent = Integer


class RolloutInfo(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    service = Unicode
    share = TrafficShare.customize(max_occurs="unbounded")
    started = Unicode(max_occurs="unbounded")
    retired = Unicode(max_occurs="unbounded")
    note = Unicode
    seconds = Double


class ServiceInfo(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    name = Unicode
    version = Unicode
    kind = Unicode
    stateless = Boolean
    sha256 = Unicode
    size = Long
    published = DateTime
    deployments = Integer
    share = TrafficShare.customize(max_occurs="unbounded")
    available = Unicode(max_occurs="unbounded")
    snapshot = Unicode
    snapshotBytes = Long


class ConsumerCount(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    subject = Unicode
    messages = Long


class DeploymentInfo(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    id = Unicode
    service = Unicode
    host = AnyUri
    endpoint = AnyUri
    state = Unicode
    created = DateTime
    outstanding = Integer
    lastUsed = DateTime
    deployedFor = Unicode
    consumer = ConsumerCount.customize(max_occurs="unbounded")
    reason = Unicode
    changed = DateTime
    version = Unicode
    sha256 = Unicode


class HostInfo(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    address = AnyUri
    state = Unicode
    capacity = Integer
    deployments = Integer
    load = Double
    cache = ImageCache
    terms = HostTermsModel
    snapshots = SnapshotStatsModel
    lastSeen = DateTime


def host_figures(address: str, status: HostStatus | None) -> HostRecord | None:
    """The figures a heartbeat carried, as a host record ("up", seen now); None without any,
    or with figures that make no sense (placement must not trust them)."""
    if status is None or status.capacity is None or status.deployments is None:
        return None
    capacity, deployments = int(status.capacity), int(status.deployments)
    load = float(status.load or 0.0)
    if not (0 <= capacity <= 1_000_000 and 0 <= deployments <= 1_000_000 and load >= 0):
        return None
    cache = status.cache
    terms = status.terms
    return HostRecord(
        address=address,
        state="up",
        capacity=capacity,
        deployments=deployments,
        load=load,
        last_seen=datetime.now(UTC),
        cache=CacheStats(
            int(cache.images or 0), int(cache.bytes or 0), int(cache.capacity or 0),
            int(cache.received or 0),
        )
        if cache is not None
        else None,
        terms=HostTerms(
            float(terms.price or 0.0),
            tuple((str(s.name or ""), int(s.distance or 0)) for s in terms.site or []),
            tuple((str(lb.name or ""), str(lb.value or "")) for lb in terms.label or []),
            float(terms.priceGiB or 0.0),
        )
        if terms is not None
        else HostTerms(),
        snapshots=SnapshotStats(
            *(int(getattr(status.snapshots, n) or 0) for n in SnapshotStats.__dataclass_fields__)
        )
        if status.snapshots is not None
        else None,
    )


def shares(traffic: Traffic) -> list[TrafficShare]:
    return [TrafficShare(version=v, percent=w) for v, w in traffic]


def rollout_info(outcome: Outcome) -> RolloutInfo:
    return RolloutInfo(
        service=outcome.service,
        share=shares(outcome.traffic),
        started=outcome.started,
        retired=outcome.retired,
        note=outcome.note or None,
        seconds=round(outcome.seconds, 3),
    )


def service_info(
    s: ServiceRecord,
    deployments: int,
    route: Route | None = None,
    available: list[str] | None = None,
    snapshot: tuple[str, int] | None = None,
) -> ServiceInfo:
    return ServiceInfo(
        name=s.name,
        version=s.version,
        kind=s.kind,
        stateless=s.stateless,
        sha256=s.sha256,
        size=s.size,
        published=s.published,
        deployments=deployments,
        share=shares(route.traffic) if route is not None else [],
        available=available or [],
        snapshot=snapshot[0] if snapshot else None,
        snapshotBytes=snapshot[1] if snapshot else None,
    )


def deployment_info(d: DeploymentRecord, load: LoadTracker) -> DeploymentInfo:
    return DeploymentInfo(
        id=d.id,
        service=d.service,
        host=d.host,
        endpoint=d.endpoint,
        state=d.state,
        created=d.created,
        outstanding=load.outstanding(d.id),
        lastUsed=datetime.now(UTC) - timedelta(seconds=load.idle_for(d.id)),
        deployedFor=d.deployed_for,
        consumer=[ConsumerCount(subject=s, messages=n) for s, n in load.consumers(d.id)],
        reason=d.reason,
        changed=d.changed,
        version=d.version,
        sha256=d.sha256 or None,
    )


def host_info(h: HostRecord) -> HostInfo:
    return HostInfo(
        address=h.address,
        state=h.state,
        capacity=h.capacity,
        deployments=h.deployments,
        load=h.load,
        cache=image_cache(h.cache),
        terms=host_terms(h.terms),
        snapshots=snapshot_stats(h.snapshots),
        lastSeen=h.last_seen if h.last_seen > NEVER_SEEN else None,  # None: never heard from
    )
