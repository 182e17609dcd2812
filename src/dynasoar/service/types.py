"""spyne models of the types both ports share (dynasoar.xsd)."""

from __future__ import annotations

from spyne import AnyUri, ComplexModel, DateTime, Double, Integer, Long, Unicode

from dynasoar import ns
from dynasoar.errors import InvalidRequest
from dynasoar.images import CacheStats
from dynasoar.logs import LogChunk
from dynasoar.service.snapshot_types import SnapshotStatsModel
from dynasoar.terms import HostTerms

#: A string element both ports require (present, not nil).
Required = Unicode(min_occurs=1, nillable=False)


class ImageCache(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    images = Integer
    bytes = Long
    capacity = Long
    received = Long


class Site(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    name = Unicode
    distance = Integer


class Label(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    name = Unicode
    value = Unicode


class HostTermsModel(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    __type_name__ = "HostTerms"
    price = Double
    priceGiB = Double
    site = Site.customize(max_occurs="unbounded")
    label = Label.customize(max_occurs="unbounded")


def host_terms(terms: HostTerms | None) -> HostTermsModel | None:
    if terms is None:
        return None
    return HostTermsModel(
        price=terms.price,
        priceGiB=terms.price_gib,
        site=[Site(name=n, distance=d) for n, d in terms.sites],
        label=[Label(name=n, value=v) for n, v in terms.labels],
    )


def image_cache(stats: CacheStats | None) -> ImageCache | None:
    if stats is None:
        return None
    return ImageCache(
        images=stats.images, bytes=stats.bytes, capacity=stats.capacity, received=stats.received
    )


class LogCursor(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    deployment = Unicode
    offset = Long


class DeploymentLog(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    deployment = Unicode
    service = Unicode
    host = AnyUri
    state = Unicode
    started = DateTime
    ended = DateTime
    reason = Unicode
    first = Long
    start = Long
    next = Long
    end = Long
    text = Unicode


def deployment_log(chunk: LogChunk) -> DeploymentLog:
    return DeploymentLog(
        deployment=chunk.deployment,
        service=chunk.service,
        host=chunk.host or None,
        state=chunk.state,
        started=chunk.started,
        ended=chunk.ended,
        reason=chunk.reason or None,
        first=chunk.first,
        start=chunk.start,
        next=chunk.next,
        end=chunk.end,
        text=chunk.text,
    )


def log_request(tail: int | None, cursors: list[LogCursor] | None) -> dict[str, int]:
    """A GetLogs request's cursors by deployment, once its numbers are checked."""
    if tail is not None and tail < 0:
        raise InvalidRequest(f"tail is a number of lines, not {tail}")
    found: dict[str, int] = {}
    for cursor in cursors or []:
        if not cursor.deployment or cursor.offset is None or cursor.offset < 0:
            raise InvalidRequest("a cursor names a deployment and an offset (0 or more)")
        found[cursor.deployment] = cursor.offset
    return found


class HostStatus(ComplexModel):  # type: ignore[misc]
    """A host's figures (dyn:HostStatus): its Status reply, and what its heartbeat carries."""

    __namespace__ = ns.DYN
    address = AnyUri
    backend = Unicode
    capacity = Integer
    deployments = Integer
    load = Double
    version = Unicode
    cache = ImageCache
    terms = HostTermsModel
    snapshots = SnapshotStatsModel
