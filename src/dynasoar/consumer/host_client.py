"""A client of the Host Provider port (the Service Provider uses it): Deploy with the package as
an MTOM attachment, Undeploy, List, Status, GetLogs. HP faults come back as dynasoar errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from lxml import etree

from dynasoar import ns
from dynasoar.errors import (
    Busy,
    DeploymentFailed,
    DeploymentTimeout,
    DynasoarError,
    ImageNotHeld,
    RemoteFault,
)
from dynasoar.images import CacheStats, ImageRef
from dynasoar.logs import LogChunk
from dynasoar.paths import HOST_PORT
from dynasoar.soap.client import SoapClient
from dynasoar.soap.mtom_writer import OutgoingAttachment
from dynasoar.soap.xop import xop_include
from dynasoar.terms import HostTerms

PATH = HOST_PORT
_T = f"{{{ns.DYN_HP}}}"
_D = f"{{{ns.DYN}}}"


def port_url(host: str) -> str:
    return host.rstrip("/") + PATH


def normalize(address: str) -> str:
    """A host's base URL (``http://H:P``), whether given as that or as its port URL."""
    address = address.strip().rstrip("/")
    if address.endswith(PATH):
        address = address[: -len(PATH)]
    return address


@dataclass(frozen=True)
class HostStatus:
    address: str
    backend: str
    capacity: int
    deployments: int
    load: float
    version: str
    cache: CacheStats | None = None
    terms: HostTerms = HostTerms()


@dataclass(frozen=True)
class DeploymentUsage:
    """What a deployment consumed on its host, cumulative since it started."""

    id: str
    service: str
    version: str
    state: str  # "running" | "ended"
    cpu_seconds: float
    memory_gib_seconds: float
    image_bytes: int


@dataclass(frozen=True)
class ShippedImage:
    """An image named in a Deploy; ``path`` is None when the host holds it (no content sent)."""

    ref: ImageRef
    path: Path | None


@dataclass(frozen=True)
class PackageShipment:
    service: str
    version: str
    kind: str
    stateless: bool
    path: Path
    sha256: str
    images: tuple[ShippedImage, ...] = ()


class HostClient:
    def __init__(self, soap: SoapClient) -> None:
        self._soap = soap

    async def deploy(
        self,
        host: str,
        package: PackageShipment,
        timeout: float,
        *,
        deployment_id: str | None = None,
        owner: str | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> tuple[str, str]:
        """Ship ``package``; returns (deployment id, endpoint address) once the HP has it ready.
        ``deployment_id`` is the id to run it under (the host picks one when None); ``owner``
        names who asks, so that the host can tell whose deployments it runs; ``on_progress``
        hears of the bytes sent (sent, total)."""
        request = etree.Element(f"{_T}Deploy", nsmap={"hp": ns.DYN_HP})
        for name, value in (
            ("service", package.service),
            ("version", package.version),
            ("kind", package.kind),
            ("stateless", "true" if package.stateless else "false"),
        ):
            etree.SubElement(request, f"{_T}{name}").text = value
        etree.SubElement(request, f"{_T}package").append(xop_include("package@dynasoar"))
        etree.SubElement(request, f"{_T}sha256").text = package.sha256
        attachments = [
            OutgoingAttachment("package@dynasoar", "application/octet-stream", package.path)
        ]
        for number, image in enumerate(package.images):
            element = image_element(f"{_T}image", image.ref)
            if image.path is not None:
                content_id = f"image{number}@dynasoar"
                etree.SubElement(element, f"{_D}content").append(xop_include(content_id))
                attachments.append(
                    OutgoingAttachment(content_id, "application/octet-stream", image.path)
                )
            request.append(element)
        for name, given in (("deploymentId", deployment_id), ("owner", owner)):
            if given is not None:
                etree.SubElement(request, f"{_T}{name}").text = given
        reply = await self._call(host, "Deploy", request, timeout, attachments, on_progress)
        deployment_id = reply.findtext(f"{_T}deploymentId") or ""
        endpoint = reply.findtext(f"{_T}endpoint/{{{ns.WSA}}}Address") or ""
        if not deployment_id or not endpoint:
            raise DeploymentFailed(f"{host} answered Deploy without a deployment id or endpoint")
        return deployment_id, endpoint

    async def undeploy(self, host: str, deployment_id: str, timeout: float) -> bool:
        request = etree.Element(f"{_T}Undeploy", nsmap={"hp": ns.DYN_HP})
        etree.SubElement(request, f"{_T}deploymentId").text = deployment_id
        reply = await self._call(host, "Undeploy", request, timeout)
        return (reply.findtext(f"{_T}undeployed") or "").strip() == "true"

    async def query_images(self, host: str, digests: list[str], timeout: float) -> set[str]:
        """Which of ``digests`` the host's image cache holds."""
        request = etree.Element(f"{_T}QueryImages", nsmap={"hp": ns.DYN_HP})
        for digest in digests:
            etree.SubElement(request, f"{_T}sha256").text = digest
        reply = await self._call(host, "QueryImages", request, timeout)
        return {(held.text or "").strip() for held in reply.findall(f"{_T}held")}

    async def status(self, host: str, timeout: float) -> HostStatus:
        reply = await self._call(host, "Status", etree.Element(f"{_T}Status"), timeout)
        status = reply.find(f"{_T}status")
        if status is None:
            raise DeploymentFailed(f"{host} answered Status without a status")
        return HostStatus(
            address=status.findtext(f"{_D}address") or host,
            backend=status.findtext(f"{_D}backend") or "",
            capacity=int(status.findtext(f"{_D}capacity") or 0),
            deployments=int(status.findtext(f"{_D}deployments") or 0),
            load=float(status.findtext(f"{_D}load") or 0.0),
            version=status.findtext(f"{_D}version") or "",
            cache=read_cache_stats(status.find(f"{_D}cache")),
            terms=read_terms(status.find(f"{_D}terms")),
        )

    async def usage(self, host: str, timeout: float) -> list[DeploymentUsage]:
        reply = await self._call(host, "GetUsage", etree.Element(f"{_T}GetUsage"), timeout)
        return [
            DeploymentUsage(
                id=item.findtext(f"{_D}id") or "",
                service=item.findtext(f"{_D}service") or "",
                version=item.findtext(f"{_D}version") or "",
                state=item.findtext(f"{_D}state") or "",
                cpu_seconds=float(item.findtext(f"{_D}cpuSeconds") or 0.0),
                memory_gib_seconds=float(item.findtext(f"{_D}memoryGiBSeconds") or 0.0),
                image_bytes=int(item.findtext(f"{_D}imageBytes") or 0),
            )
            for item in reply.findall(f"{_T}deployment")
        ]

    async def list_deployments(self, host: str, timeout: float) -> list[dict[str, str]]:
        reply = await self._call(host, "List", etree.Element(f"{_T}List"), timeout)
        return [
            {etree.QName(field).localname: field.text or "" for field in item}
            for item in reply.findall(f"{_T}deployment")
        ]

    async def get_logs(
        self,
        host: str,
        service: str,
        timeout: float,
        *,
        deployment: str | None = None,
        tail: int | None = None,
        cursors: Mapping[str, int] | None = None,
    ) -> list[LogChunk]:
        """The output logs of ``service``'s deployments on ``host`` (see dyn:DeploymentLog)."""
        request = etree.Element(f"{_T}GetLogs", nsmap={"hp": ns.DYN_HP, "dyn": ns.DYN})
        etree.SubElement(request, f"{_T}service").text = service
        if deployment is not None:
            etree.SubElement(request, f"{_T}deployment").text = deployment
        if tail is not None:
            etree.SubElement(request, f"{_T}tail").text = str(tail)
        for deployment_id, offset in (cursors or {}).items():
            cursor = etree.SubElement(request, f"{_T}cursor")
            etree.SubElement(cursor, f"{_D}deployment").text = deployment_id
            etree.SubElement(cursor, f"{_D}offset").text = str(offset)
        reply = await self._call(host, "GetLogs", request, timeout)
        try:
            return [read_log(item) for item in reply.findall(f"{_T}log")]
        except ValueError as exc:
            raise DeploymentFailed(f"{host} answered GetLogs with a malformed log: {exc}") from exc

    async def _call(
        self,
        host: str,
        op: str,
        request: etree._Element,
        timeout: float,
        attachments: list[OutgoingAttachment] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> etree._Element:
        try:
            reply = await self._soap.call(
                port_url(host),
                f"{ns.DYN_HP}/{op}",
                request,
                timeout=timeout,
                attachments=attachments or (),
                on_progress=on_progress,
            )
        except RemoteFault as exc:
            raise host_error(host, op, exc) from exc
        return reply.body


def image_element(tag: str, ref: ImageRef) -> etree._Element:
    """A dyn:ImageUpload element naming ``ref`` (content, if any, is appended by the caller)."""
    element = etree.Element(tag, nsmap={"dyn": ns.DYN})
    for name, value in (("name", ref.name), ("sha256", ref.sha256), ("size", str(ref.size))):
        etree.SubElement(element, f"{_D}{name}").text = value
    return element


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
}


def host_error(host: str, op: str, fault: RemoteFault) -> DynasoarError:
    """What an HP's fault means to the SP: Busy stays Busy; the rest fail the deployment."""
    codes = [fault.fault.code, *fault.fault.subcodes]
    for code in codes:
        kind = _BY_SUBCODE.get(code)
        if kind is not None:
            return kind(f"{host}: {fault.fault.reason}")
    return DeploymentFailed(f"{host} refused {op}: {fault.fault.reason}")
