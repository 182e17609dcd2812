"""A client of the Service Provider's management port. Publish streams the package as an MTOM
attachment (zeep cannot send MTOM); the other operations go through zeep and the served WSDL."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from dynasoar import ns
from dynasoar.consumer.host_client import image_element
from dynasoar.consumer.publish import Upload, prepare
from dynasoar.consumer.zeep_client import invoke, new_client
from dynasoar.http import ConnectionPool
from dynasoar.paths import PROVIDER_PORT as PORT_PATH
from dynasoar.soap.client import SoapClient
from dynasoar.soap.mtom_writer import OutgoingAttachment
from dynasoar.soap.xop import xop_include
from dynasoar.tls import client_context


def port_url(sp: str) -> str:
    sp = sp.rstrip("/")
    return sp if sp.endswith(PORT_PATH) else sp + PORT_PATH


@dataclass
class PublishedService:
    name: str
    version: str
    kind: str
    stateless: bool
    sha256: str
    size: int
    images_sent: int = 0
    #: what publishing did to the service's route: the shares now, and a word where needed
    traffic: tuple[tuple[str, int], ...] = ()
    note: str = ""
    started: int = 0  # deployments of the new version made for the rollout
    retired: int = 0  # deployments of other versions drained and undeployed after it


class ProviderClient:
    def __init__(self, sp: str, timeout: float = 180.0) -> None:
        self.url = port_url(sp)
        self.timeout = timeout
        self._service: Any = None

    @property
    def service(self) -> Any:
        if self._service is None:
            self._service = new_client(self.url + "?wsdl", self.timeout).service
        return self._service

    def call(self, operation: str, **kwargs: Any) -> Any:
        return invoke(self.service, operation, **kwargs)

    def publish(
        self,
        package: Path,
        on_progress: Callable[[int, int], None] | None = None,
        rollout: bool = True,
    ) -> PublishedService:
        """Upload a package directory or archive (.zip / .tar.gz). With ``rollout`` (the
        default), a deployed stateless service moves to the new version."""
        with tempfile.TemporaryDirectory(prefix="dynasoar-publish-") as tmp:
            upload = prepare(package, Path(tmp))
            return self.send(upload, on_progress, rollout)

    def send(
        self,
        upload: Upload,
        on_progress: Callable[[int, int], None] | None = None,
        rollout: bool = True,
    ) -> PublishedService:
        """Publish what ``upload`` holds as it is (``publish`` prepares and checks it first)."""
        return asyncio.run(self._publish(upload, on_progress, rollout))

    async def _publish(
        self, upload: Upload, on_progress: Callable[[int, int], None] | None, rollout: bool
    ) -> PublishedService:
        pool = ConnectionPool(ssl_context=client_context(None))
        try:
            soap = SoapClient(pool)
            held = await self._held(soap, [ref.sha256 for ref, _ in upload.images])
            request, attachments = _publish_request(upload, held)
            if not rollout:
                etree.SubElement(request, f"{{{ns.DYN_SP}}}rollout").text = "false"
            reply = await soap.call(
                self.url,
                f"{ns.DYN_SP}/Publish",
                request,
                timeout=self.timeout,
                attachments=attachments,
                on_progress=on_progress,
            )
        finally:
            await pool.close()
        info = reply.body.find(f"{{{ns.DYN_SP}}}service")
        assert info is not None
        outcome = reply.body.find(f"{{{ns.DYN_SP}}}rollout")

        def field(name: str) -> str:
            return (info.findtext(f"{{{ns.DYN}}}{name}") or "").strip()

        def shares() -> tuple[tuple[str, int], ...]:
            if outcome is None:
                return ()
            return tuple(
                (
                    s.findtext(f"{{{ns.DYN}}}version") or "",
                    int(s.findtext(f"{{{ns.DYN}}}percent") or 0),
                )
                for s in outcome.findall(f"{{{ns.DYN}}}share")
            )

        def count(name: str) -> int:
            return len(outcome.findall(f"{{{ns.DYN}}}{name}")) if outcome is not None else 0

        return PublishedService(
            traffic=shares(),
            note=(outcome.findtext(f"{{{ns.DYN}}}note") or "") if outcome is not None else "",
            started=count("started"),
            retired=count("retired"),
            name=field("name"),
            version=field("version"),
            kind=field("kind"),
            stateless=field("stateless") == "true",
            sha256=field("sha256"),
            size=int(field("size") or 0),
            images_sent=len(attachments) - 1,
        )

    async def _held(self, soap: SoapClient, digests: list[str]) -> set[str]:
        """Which of these images the SP's repository holds already (they are not sent)."""
        if not digests:
            return set()
        request = etree.Element(f"{{{ns.DYN_SP}}}QueryImages", nsmap={"sp": ns.DYN_SP})
        for digest in digests:
            etree.SubElement(request, f"{{{ns.DYN_SP}}}sha256").text = digest
        reply = await soap.call(self.url, f"{ns.DYN_SP}/QueryImages", request, timeout=self.timeout)
        return {(h.text or "").strip() for h in reply.body.findall(f"{{{ns.DYN_SP}}}held")}


def _publish_request(
    upload: Upload, held: set[str]
) -> tuple[etree._Element, list[OutgoingAttachment]]:
    request = etree.Element(f"{{{ns.DYN_SP}}}Publish", nsmap={"sp": ns.DYN_SP})
    etree.SubElement(request, f"{{{ns.DYN_SP}}}package").append(xop_include("package@dynasoar"))
    attachments = [
        OutgoingAttachment("package@dynasoar", "application/octet-stream", upload.archive)
    ]
    for number, (ref, path) in enumerate(upload.images):
        element = image_element(f"{{{ns.DYN_SP}}}image", ref)
        if ref.sha256 not in held:
            content_id = f"image{number}@dynasoar"
            etree.SubElement(element, f"{{{ns.DYN}}}content").append(xop_include(content_id))
            attachments.append(OutgoingAttachment(content_id, "application/octet-stream", path))
        request.append(element)
    return request, attachments
