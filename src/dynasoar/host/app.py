"""Assembles a Host Provider process: its port, the backend, and registration with an SP."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lxml import etree

from dynasoar import ns
from dynasoar.addresses import OwnAddresses
from dynasoar.deadlines import Deadlines
from dynasoar.errors import DynasoarError
from dynasoar.host.backends import Backend
from dynasoar.host.backends.process import ProcessBackend
from dynasoar.host.hosting import HostProvider
from dynasoar.host.logpump import LogPump
from dynasoar.host.logstore import LogLimits, LogStore
from dynasoar.http import ConnectionPool, Handler, Request, Response
from dynasoar.images import ImageCache
from dynasoar.paths import HOST_PORT as PORT_PATH
from dynasoar.paths import PROVIDER_PORT, contracts_dir
from dynasoar.serve import base_url_of, text, wants_wsdl
from dynasoar.service.endpoint import (
    EndpointConfig,
    ManagementEndpoint,
    fresh_spool,
    upload_limits,
)
from dynasoar.soap.client import SoapClient
from dynasoar.soap.security import Policy
from dynasoar.terms import HostTerms
from dynasoar.tls import client_context

log = logging.getLogger(__name__)


@dataclass
class HostConfig:
    data: Path
    backend: str = "process"
    capacity: int = 8
    service_provider: str | None = None
    start_timeout: float = 60.0
    libvirt_uri: str = "qemu:///system"
    accel: Literal["tcg", "kvm", "auto"] = "tcg"
    image_cache_bytes: int = 20 << 30
    terms: HostTerms = field(default_factory=HostTerms)
    heartbeat: float = 2.0  # seconds between RegisterHost calls to the SP
    service_host: str = "127.0.0.1"  # where deployed services listen (the SP must reach it)
    ca: Path | None = None  # verifies an https:// Service Provider
    security: Policy = field(default_factory=Policy)  # signs replies, believes trusted SPs
    max_upload_bytes: int = 64 << 30  # one MTOM upload (VM images are big)
    #: when stopping, ask the SP to move this host's deployments elsewhere first
    drain: bool = False
    #: runner processes kept started for code packages (0: each starts afresh)
    warm_runners: int = 2
    grace: float = 30.0  # seconds a stop may take to drain (and the SP to move deployments)
    log_bytes: int = LogLimits.bytes_per_deployment  # each deployment's output log, at most
    kept_logs: int = LogLimits.kept_per_service  # logs of ended deployments kept per service
    #: URLs this HP is reached at besides the one it listens on (behind a proxy, say); the
    #: first is the one it registers with its SP.
    public_urls: list[str] = field(default_factory=list)
    soap12_sender_status: int = 400  # HTTP status of a SOAP 1.2 Sender fault


def _sp_port(sp: str) -> str:
    port = sp.rstrip("/")
    return port if port.endswith(PROVIDER_PORT) else port + PROVIDER_PORT


def _backends(config: HostConfig) -> dict[str, Backend]:
    """Code packages always run as processes; VM images need ``--backend libvirt``."""
    backends: dict[str, Backend] = {
        "code": ProcessBackend(host=config.service_host, warm=config.warm_runners)
    }
    if config.backend == "libvirt":
        from dynasoar.host.backends.libvirt import LibvirtBackend, scope_for  # only when asked

        backends["vm"] = LibvirtBackend(
            uri=config.libvirt_uri,
            accel=config.accel,
            scope=scope_for(config.data),
            listen=config.service_host,
        )
    return backends


class HostApp:
    def __init__(self, config: HostConfig) -> None:
        self.config = config
        fresh_spool(config.data / "spool")
        self.pump = LogPump()
        self.host = HostProvider(
            config.data,
            _backends(config),
            config.capacity,
            ImageCache(config.data / "images", config.image_cache_bytes),
            LogStore(
                config.data / "logs",
                LogLimits(bytes_per_deployment=config.log_bytes, kept_per_service=config.kept_logs),
                self.pump,
            ),
            config.start_timeout,
            terms=config.terms,
        )
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="hp-port")
        #: Brought forward when the HP stops: calls still running then get dyn:ShuttingDown.
        self.deadlines = Deadlines()
        self.own = OwnAddresses(config.public_urls)
        from dynasoar.host.port import host_port  # spyne: imported with the port only

        self.port = ManagementEndpoint(
            host_port(),
            EndpointConfig(
                path=PORT_PATH,
                wsdl_file=contracts_dir() / "HostProvider.wsdl",
                spool_dir=config.data / "spool",
                mtom_limits=upload_limits(config.max_upload_bytes),
                # with a trust store, only signed requests from trusted SPs are acted on
                security=config.security,
                own=self.own,
                sender_status=config.soap12_sender_status,
            ),
            self.executor,
            lambda: {"host": self.host},
            self.deadlines,
        )
        self.url = ""
        self._registration: asyncio.Task[None] | None = None
        self._pool = ConnectionPool(ssl_context=client_context(config.ca))
        self._sp_client = SoapClient(self._pool)

    async def start(self, url: str) -> Handler:
        self.own.listening(url)
        self.url = self.config.public_urls[0] if self.config.public_urls else url
        self.host.address = self.url
        if self.config.service_provider:
            self._registration = asyncio.create_task(self._register(self.config.service_provider))
        return self.handle

    async def _register(self, sp: str) -> None:
        """Register with the SP, then keep telling it we are alive (the heartbeat). The SP
        may still be starting, or restart: failures are logged and retried, never fatal."""
        request = etree.Element(f"{{{ns.DYN_SP}}}RegisterHost", nsmap={"sp": ns.DYN_SP})
        etree.SubElement(request, f"{{{ns.DYN_SP}}}address").text = self.url
        etree.SubElement(request, f"{{{ns.DYN_SP}}}heartbeat").text = str(self.config.heartbeat)
        registered = False
        delay = 0.2
        while True:
            try:
                await self._sp_client.call(
                    _sp_port(sp), f"{ns.DYN_SP}/RegisterHost", request, timeout=10.0
                )
                if not registered:
                    log.info("registered with %s", sp)
                registered, delay = True, self.config.heartbeat
            except DynasoarError as exc:
                log.warning("registering with %s: %s", sp, exc.reason)
                registered, delay = False, min(delay * 2, 5.0)
            await asyncio.sleep(delay)

    async def quiesce(self) -> None:
        """Stopping: no more heartbeats, and the SP is told at once (with --drain, after it
        moved this host's stateless deployments elsewhere), so that it sends nothing new."""
        if self._registration is None:
            return
        self._registration.cancel()
        await asyncio.gather(self._registration, return_exceptions=True)
        self._registration = None
        sp = self.config.service_provider
        assert sp is not None
        request = etree.Element(f"{{{ns.DYN_SP}}}DeregisterHost", nsmap={"sp": ns.DYN_SP})
        etree.SubElement(request, f"{{{ns.DYN_SP}}}address").text = self.url
        etree.SubElement(request, f"{{{ns.DYN_SP}}}drain").text = (
            "true" if self.config.drain else "false"
        )
        try:
            reply = await self._sp_client.call(
                _sp_port(sp),
                f"{ns.DYN_SP}/DeregisterHost",
                request,
                timeout=self.config.grace if self.config.drain else 10.0,
            )
        except DynasoarError as exc:
            log.warning("could not deregister from %s: %s", sp, exc.reason)
            return
        moved = reply.body.findtext(f"{{{ns.DYN_SP}}}moved") or "0"
        log.info("deregistered from %s (%s deployment(s) moved elsewhere)", sp, moved)

    def cut_short(self, reason: str) -> None:
        self.deadlines.expire_all(reason)

    async def stop(self) -> None:
        await self.quiesce()
        await asyncio.get_running_loop().run_in_executor(None, self.host.shutdown)
        self.pump.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        await self._pool.close()

    async def handle(self, request: Request) -> Response:
        path = request.path
        if path == "/healthz":
            return text(200, "ok")
        if path == PORT_PATH:
            if request.method == "POST":
                return await self.port.handle(request)
            if request.method == "GET" and wants_wsdl(request.query):
                return self.port.wsdl(base_url_of(request.headers.get("host"), self.url))
            return text(405, "POST SOAP messages here; GET ?wsdl for the contract")
        if path.startswith("/dynasoar/") and path.endswith(".xsd"):
            return self.port.schema(path.rpartition("/")[2]) or text(404, "no such schema")
        return text(404, f"nothing here at {path}; see {PORT_PATH}?wsdl")
