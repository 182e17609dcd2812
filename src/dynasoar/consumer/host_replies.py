"""Reading what a Host Provider answers: its terms, status figures and logs as the SP keeps
them, and its faults as the SP's errors (Busy stays Busy; the rest fail the deployment)."""

from __future__ import annotations

from datetime import datetime

from lxml import etree

from dynasoar import ns
from dynasoar.errors import (
    Busy,
    DeploymentFailed,
    DeploymentTimeout,
    DynasoarError,
    ImageNotHeld,
    RemoteFault,
    SnapshotIncompatible,
)
from dynasoar.images import CacheStats
from dynasoar.logs import LogChunk
from dynasoar.snapshots import SnapshotStats
from dynasoar.terms import HostTerms

_D = f"{{{ns.DYN}}}"


def read_terms(element: etree._Element | None) -> HostTerms:
    if element is None:
        return HostTerms()
    sites = tuple(
        (s.findtext(f"{_D}name") or "", int(s.findtext(f"{_D}distance") or 0))
        for s in element.findall(f"{_D}site")
    )
    labels = tuple(
        (lb.findtext(f"{_D}name") or "", lb.findtext(f"{_D}value") or "")
        for lb in element.findall(f"{_D}label")
    )
    return HostTerms(
        float(element.findtext(f"{_D}price") or 0.0),
        sites,
        labels,
        float(element.findtext(f"{_D}priceGiB") or 0.0),
    )


def read_log(element: etree._Element) -> LogChunk:
    """A dyn:DeploymentLog (raises ValueError when it is not one)."""

    def text(name: str) -> str:
        return element.findtext(f"{_D}{name}") or ""

    def number(name: str) -> int:
        return int(text(name).strip() or "0")

    ended = text("ended").strip()
    return LogChunk(
        deployment=text("deployment"),
        service=text("service"),
        state=text("state"),
        started=datetime.fromisoformat(text("started").strip()),
        ended=datetime.fromisoformat(ended) if ended else None,
        reason=text("reason"),
        first=number("first"),
        start=number("start"),
        next=number("next"),
        end=number("end"),
        text=text("text"),
        host=text("host"),
    )


def read_snapshot_stats(element: etree._Element | None) -> SnapshotStats | None:
    if element is None:
        return None

    def number(name: str) -> int:
        return int(element.findtext(f"{_D}{name}") or 0)

    return SnapshotStats(*(number(n) for n in ("held", "bytes", "taken", "restored", "fallbacks")))


def read_cache_stats(element: etree._Element | None) -> CacheStats | None:
    if element is None:
        return None

    def number(name: str) -> int:
        return int(element.findtext(f"{_D}{name}") or 0)

    return CacheStats(number("images"), number("bytes"), number("capacity"), number("received"))


_BY_SUBCODE: dict[tuple[str, str], type[DynasoarError]] = {
    (ns.DYN, "Busy"): Busy,
    (ns.DYN, "DeploymentTimeout"): DeploymentTimeout,
    (ns.DYN, "ImageNotHeld"): ImageNotHeld,
    (ns.DYN, "SnapshotIncompatible"): SnapshotIncompatible,
}


def host_error(host: str, op: str, fault: RemoteFault) -> DynasoarError:
    """What an HP's fault means to the SP: Busy stays Busy; the rest fail the deployment."""
    codes = [fault.fault.code, *fault.fault.subcodes]
    for code in codes:
        kind = _BY_SUBCODE.get(code)
        if kind is not None:
            return kind(f"{host}: {fault.fault.reason}")
    return DeploymentFailed(f"{host} refused {op}: {fault.fault.reason}")
