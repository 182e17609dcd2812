"""The heartbeat a host sends its Service Provider: ``RegisterHost`` with its address, the
interval it means to beat at, and its figures now (``dyn:HostStatus``: capacity, deployments,
load, image cache, snapshots, terms and labels), so that the SP needs no Status call per beat;
and the interval the SP answers with. Built the same way by a Host Provider and by the fleet
simulator (``dynasoar bench fleet``), which speaks the real protocol."""

from __future__ import annotations

from lxml import etree

from dynasoar import __version__, ns
from dynasoar.images import CacheStats
from dynasoar.snapshots import SnapshotStats
from dynasoar.terms import HostTerms

_S = f"{{{ns.DYN_SP}}}"
_D = f"{{{ns.DYN}}}"
ACTION = f"{ns.DYN_SP}/RegisterHost"
#: A host whose beat failed (its SP away: restarting, say) tries again within this many seconds.
RETRY_CEILING = 5.0
#: After a failed beat the host tries again this soon, then twice as late each time up to
#: RETRY_CEILING: through a load balancer the next try reaches another SP, in time for the SP's
#: deadline (three intervals), which a retry an interval or two later would miss.
FIRST_RETRY = 0.2
#: A beat unanswered after this many seconds (or its interval, if longer) is given up and sent
#: again: an SP that hung with a beat must not hold it past the host's deadline.
BEAT_TIMEOUT = 10.0
MIN_BEAT_TIMEOUT = 2.0


def beat_timeout(every: float) -> float:
    """How long a host waits for the answer to a beat sent every ``every`` seconds."""
    return min(BEAT_TIMEOUT, max(MIN_BEAT_TIMEOUT, every))


def register_host(
    address: str,
    heartbeat: float,
    *,
    backend: str,
    capacity: int,
    deployments: int,
    load: float,
    cache: CacheStats | None = None,
    terms: HostTerms = HostTerms(),
    snapshots: SnapshotStats | None = None,
) -> etree._Element:
    request = etree.Element(f"{_S}RegisterHost", nsmap={"sp": ns.DYN_SP, "dyn": ns.DYN})
    etree.SubElement(request, f"{_S}address").text = address
    etree.SubElement(request, f"{_S}heartbeat").text = repr(float(heartbeat))
    request.append(
        host_status(
            f"{_S}status",
            address,
            backend=backend,
            capacity=capacity,
            deployments=deployments,
            load=load,
            cache=cache,
            terms=terms,
            snapshots=snapshots,
        )
    )
    return request


def host_status(
    tag: str,
    address: str,
    *,
    backend: str,
    capacity: int,
    deployments: int,
    load: float,
    cache: CacheStats | None = None,
    terms: HostTerms = HostTerms(),
    snapshots: SnapshotStats | None = None,
) -> etree._Element:
    """A dyn:HostStatus element named ``tag``."""
    status = etree.Element(tag, nsmap={"dyn": ns.DYN})
    for name, value in (
        ("address", address),
        ("backend", backend),
        ("capacity", str(capacity)),
        ("deployments", str(deployments)),
        ("load", repr(float(load))),
        ("version", __version__),
    ):
        etree.SubElement(status, f"{_D}{name}").text = value
    if cache is not None:
        element = etree.SubElement(status, f"{_D}cache")
        for name, number in (
            ("images", cache.images),
            ("bytes", cache.bytes),
            ("capacity", cache.capacity),
            ("received", cache.received),
        ):
            etree.SubElement(element, f"{_D}{name}").text = str(number)
    element = etree.SubElement(status, f"{_D}terms")
    etree.SubElement(element, f"{_D}price").text = repr(float(terms.price))
    etree.SubElement(element, f"{_D}priceGiB").text = repr(float(terms.price_gib))
    for site, distance in terms.sites:
        item = etree.SubElement(element, f"{_D}site")
        etree.SubElement(item, f"{_D}name").text = site
        etree.SubElement(item, f"{_D}distance").text = str(distance)
    for label, value in terms.labels:
        item = etree.SubElement(element, f"{_D}label")
        etree.SubElement(item, f"{_D}name").text = label
        etree.SubElement(item, f"{_D}value").text = value
    if snapshots is not None:
        element = etree.SubElement(status, f"{_D}snapshots")
        for name in ("held", "bytes", "taken", "restored", "fallbacks"):
            etree.SubElement(element, f"{_D}{name}").text = str(getattr(snapshots, name))
    return status


def interval_of(reply_body: etree._Element, asked: float) -> float:
    """The interval the SP's reply asks for (the host's own when the SP says none)."""
    text = reply_body.findtext(f"{_S}heartbeat")
    try:
        given = float(text) if text else asked
    except ValueError:
        return asked
    return given if given >= asked else asked
