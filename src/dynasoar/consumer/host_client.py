"""A client of the Host Provider port (the Service Provider uses it): Deploy with the package as
an MTOM attachment, Undeploy, List, Status, GetLogs. HP faults come back as dynasoar errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from dynasoar import ns
from dynasoar.consumer.host_replies import (
    host_error,
    read_cache_stats,
    read_log,
    read_snapshot_stats,
    read_terms,
)
from dynasoar.errors import (
    DeploymentFailed,
    DynasoarError,
    InvalidRequest,
    RemoteFault,
)
from dynasoar.images import CacheStats, ImageRef
from dynasoar.logs import LogChunk
from dynasoar.paths import HOST_PORT
from dynasoar.snapshots import Snapshot, SnapshotStats, read_snapshot, snapshot_element
from dynasoar.soap.client import Reply, SoapClient
from dynasoar.soap.mtom import MtomLimits
from dynasoar.soap.mtom_writer import OutgoingAttachment
from dynasoar.soap.xop import xop_include
from dynasoar.terms import HostTerms

PATH = HOST_PORT
#: An MTOM reply (a snapshot's parts) holds a few files, each at most this big.
SNAPSHOT_REPLY_LIMITS = MtomLimits(
    max_parts=66, max_attachment_bytes=64 << 30, max_total_attachment_bytes=64 << 30
)
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
    snapshots: SnapshotStats | None = None


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
class ShippedSnapshot:
    """A snapshot named in a Deploy; ``paths`` has the parts whose content goes along (the
    host holds the others). ``required``: restore it or fail (a move)."""

    snapshot: Snapshot
    paths: Mapping[str, Path]
    required: bool = False


@dataclass(frozen=True)
class PackageShipment:
    service: str
    version: str
    kind: str
    stateless: bool
    path: Path
    sha256: str
    images: tuple[ShippedImage, ...] = ()
    snapshot: ShippedSnapshot | None = None


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
        shipped = package.snapshot
        if shipped is not None:
            contents = {}
            for number, (digest, path) in enumerate(sorted(shipped.paths.items())):
                contents[digest] = f"snapshot{number}@dynasoar"
                attachments.append(
                    OutgoingAttachment(contents[digest], "application/octet-stream", path)
                )
            request.append(
                snapshot_element(f"{_T}snapshot", shipped.snapshot, contents, shipped.required)
            )
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
        held, _ = await self.query_cache(host, digests, timeout)
        return held

    async def query_cache(
        self, host: str, digests: list[str], timeout: float
    ) -> tuple[set[str], list[Snapshot]]:
        """Which of ``digests`` the host's image cache holds, and the snapshots it holds."""
        request = etree.Element(f"{_T}QueryImages", nsmap={"hp": ns.DYN_HP})
        for digest in digests:
            etree.SubElement(request, f"{_T}sha256").text = digest
        reply = await self._call(host, "QueryImages", request, timeout)
        held = {(item.text or "").strip() for item in reply.findall(f"{_T}held")}
        snapshots = []
        for item in reply.findall(f"{_T}snapshot"):
            try:
                snapshots.append(read_snapshot(item).snapshot)
            except InvalidRequest as exc:
                raise DeploymentFailed(f"{host} listed a malformed snapshot: {exc.reason}") from exc
        return held, snapshots

    async def get_snapshot(
        self, host: str, digest: str, have: set[str], spool: Path, timeout: float
    ) -> tuple[Snapshot, dict[str, Path]]:
        """A snapshot the host holds, with the parts not in ``have``: files in ``spool``
        (the caller's now), by digest, each checked against it."""
        request = etree.Element(f"{_T}GetSnapshot", nsmap={"hp": ns.DYN_HP})
        etree.SubElement(request, f"{_T}sha256").text = digest
        for held in sorted(have):
            etree.SubElement(request, f"{_T}have").text = held
        reply = await self._exchange(host, "GetSnapshot", request, timeout, spool=spool)
        files = {a.content_id: a for a in reply.attachments.values()}
        try:
            element = reply.body.find(f"{_T}snapshot")
            if element is None:
                raise DeploymentFailed(f"{host} answered GetSnapshot without a snapshot")
            received = read_snapshot(element)
            if received.snapshot.digest != digest:
                raise DeploymentFailed(f"{host} answered GetSnapshot with another snapshot")
            paths = {}
            for part, content in received.contents.items():
                include = content.find(f"{{{ns.XOP}}}Include")
                cid = (include.get("href", "") if include is not None else "").removeprefix("cid:")
                attachment = files.get(cid)
                if attachment is None or attachment.sha256 != part:
                    raise DeploymentFailed(
                        f"{host} sent the snapshot's part {part[:12]} altered or not at all"
                    )
                paths[part] = attachment.path
        except (DynasoarError, ValueError) as exc:
            for attachment in files.values():
                attachment.delete()
            reason = exc.reason if isinstance(exc, DynasoarError) else str(exc)
            raise DeploymentFailed(f"{host}: {reason}") from exc
        return received.snapshot, paths

    async def save_state(self, host: str, deployment_id: str, timeout: float) -> Snapshot:
        """Pause the deployment and save its state (to move it)."""
        request = etree.Element(f"{_T}SaveState", nsmap={"hp": ns.DYN_HP})
        etree.SubElement(request, f"{_T}deploymentId").text = deployment_id
        reply = await self._call(host, "SaveState", request, timeout)
        element = reply.find(f"{_T}snapshot")
        if element is None:
            raise DeploymentFailed(f"{host} answered SaveState without a snapshot")
        try:
            return read_snapshot(element).snapshot
        except InvalidRequest as exc:
            raise DeploymentFailed(f"{host} saved a malformed snapshot: {exc.reason}") from exc

    async def resume(self, host: str, deployment_id: str, timeout: float) -> bool:
        request = etree.Element(f"{_T}Resume", nsmap={"hp": ns.DYN_HP})
        etree.SubElement(request, f"{_T}deploymentId").text = deployment_id
        reply = await self._call(host, "Resume", request, timeout)
        return (reply.findtext(f"{_T}resumed") or "").strip() == "true"

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
            snapshots=read_snapshot_stats(status.find(f"{_D}snapshots")),
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
        return (
            await self._exchange(host, op, request, timeout, attachments, on_progress=on_progress)
        ).body

    async def _exchange(
        self,
        host: str,
        op: str,
        request: etree._Element,
        timeout: float,
        attachments: list[OutgoingAttachment] | None = None,
        spool: Path | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> Reply:
        """The call; a reply's attachments (only with a ``spool``) are the caller's."""
        try:
            return await self._soap.call(
                port_url(host),
                f"{ns.DYN_HP}/{op}",
                request,
                timeout=timeout,
                attachments=attachments or (),
                on_progress=on_progress,
                spool=spool,
                reply_limits=SNAPSHOT_REPLY_LIMITS,
            )
        except RemoteFault as exc:
            raise host_error(host, op, exc) from exc


def image_element(tag: str, ref: ImageRef) -> etree._Element:
    """A dyn:ImageUpload element naming ``ref`` (content, if any, is appended by the caller)."""
    element = etree.Element(tag, nsmap={"dyn": ns.DYN})
    for name, value in (("name", ref.name), ("sha256", ref.sha256), ("size", str(ref.size))):
        etree.SubElement(element, f"{_D}{name}").text = value
    return element
