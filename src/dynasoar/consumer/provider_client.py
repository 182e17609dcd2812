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
from dynasoar.consumer.zeep_client import invoke, new_client
from dynasoar.errors import InvalidPackage
from dynasoar.http import ConnectionPool
from dynasoar.package import pack
from dynasoar.soap.client import SoapClient
from dynasoar.soap.mtom import OutgoingAttachment, xop_include

PORT_PATH = "/dynasoar/ServiceProvider"


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
        self, package: Path, on_progress: Callable[[int, int], None] | None = None
    ) -> PublishedService:
        """Upload a package directory or archive (.zip / .tar.gz)."""
        with tempfile.TemporaryDirectory(prefix="dynasoar-publish-") as tmp:
            if package.is_dir():
                archive = pack(package, Path(tmp) / "package.tar.gz")
            elif package.is_file():
                archive = package
            else:
                raise InvalidPackage(f"{package} is neither a package directory nor an archive")
            return asyncio.run(self._publish(archive, on_progress))

    async def _publish(
        self, archive: Path, on_progress: Callable[[int, int], None] | None
    ) -> PublishedService:
        request = etree.Element(f"{{{ns.DYN_SP}}}Publish", nsmap={"sp": ns.DYN_SP})
        etree.SubElement(request, f"{{{ns.DYN_SP}}}package").append(xop_include("package@dynasoar"))
        attachment = OutgoingAttachment("package@dynasoar", "application/octet-stream", archive)
        pool = ConnectionPool()
        try:
            reply = await SoapClient(pool).call(
                self.url,
                f"{ns.DYN_SP}/Publish",
                request,
                timeout=self.timeout,
                attachments=[attachment],
                on_progress=on_progress,
            )
        finally:
            await pool.close()
        info = reply.body.find(f"{{{ns.DYN_SP}}}service")
        assert info is not None

        def field(name: str) -> str:
            return (info.findtext(f"{{{ns.DYN}}}{name}") or "").strip()

        return PublishedService(
            name=field("name"),
            version=field("version"),
            kind=field("kind"),
            stateless=field("stateless") == "true",
            sha256=field("sha256"),
            size=int(field("size") or 0),
        )
