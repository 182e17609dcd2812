"""Assembles a Host Provider process: its port, the backend, registration with an SP, and what
operators watch (metrics, readiness, an access line per control message)."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lxml import etree

from dynasoar import beats, ns
from dynasoar.addresses import OwnAddresses
from dynasoar.deadlines import Deadlines
from dynasoar.errors import DynasoarError
from dynasoar.host.backends import Backend
from dynasoar.host.backends.process import ProcessBackend
from dynasoar.host.hosting import HostProvider
from dynasoar.host.logpump import LogPump
from dynasoar.host.logstore import LogLimits, LogStore
from dynasoar.host.metrics import HostMetrics
from dynasoar.http import ConnectionPool, Handler, Request, Response
from dynasoar.images import ImageCache
from dynasoar.paths import HOST_PORT as PORT_PATH
from dynasoar.paths import PROVIDER_PORT, contracts_dir
from dynasoar.portlog import PortLog
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
from dynasoar.watch import HEALTH_PATH, METRICS_PATH, READY_PATH, Readiness, metrics_response

log = logging.getLogger(__name__)


@dataclass
class HostConfig:
    data: Path
    backend: str = "process"
    capacity: int = 8
    service_provider: str | None = None
    start_timeout: float = 60.0
    libvirt_uri: str = "qemu:///system"
    libvirt_template: Path | None = None  # the domain XML template (None: the default one)
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
            template=config.libvirt_template,
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
        self.metrics = HostMetrics(self.host)
        self.port_log = PortLog(
            self.port.contract,
            self.metrics.control,
            self.metrics.control_seconds,
            routine=frozenset({"Status"}),
        )
        self.readiness = Readiness(self._unready)
        #: The SP has heard from this host lately (its last registration or heartbeat went
        #: through); always True without --sp.
        self.registered = not config.service_provider
        self.url = ""
        self._registration: asyncio.Task[None] | None = None
        #: Set when stopping: the heartbeat loop ends after the beat it may be sending.
        self._unregistering = asyncio.Event()
        self._pool = ConnectionPool(ssl_context=client_context(config.ca))
        # Heartbeats are signed with the host's key (when it has one): the SP believes the
        # figures they carry only from hosts it trusts.
        self._sp_client = SoapClient(
            self._pool, security=Policy(credentials=config.security.credentials)
        )

    async def start(self, url: str) -> Handler:
        self.own.listening(url)
        self.url = self.config.public_urls[0] if self.config.public_urls else url
        self.host.address = self.url
        if self.config.service_provider:
            self._registration = asyncio.create_task(self._register(self.config.service_provider))
        self.readiness.ready()
        return self.handle

    async def _unready(self) -> list[str]:
        """Why this host cannot take work now: a backend unusable (libvirt gone), or the SP
        not hearing from it."""
        loop = asyncio.get_running_loop()
        reasons = []
        for backend in self.host.backends.values():
            problem = getattr(backend, "problem", None)
            if problem is not None:
                found = await loop.run_in_executor(None, problem)
                if found:
                    reasons.append(found)
        if not self.registered:
            reasons.append(f"not registered with {self.config.service_provider} (yet)")
        return reasons

    async def _register(self, sp: str) -> None:
        """Register with the SP, then keep telling it we are alive (the heartbeat), with our
        figures (signed, when we have a key), at the interval the SP answers with. The SP may
        still be starting, or restart: failures are logged and retried, never fatal."""
        registered = False
        delay = retry = beats.FIRST_RETRY
        every = self.config.heartbeat
        while not self._unregistering.is_set():
            status = self.host.status()
            request = beats.register_host(
                self.url,
                self.config.heartbeat,
                backend=str(status["backend"]),
                capacity=int(status["capacity"]),  # type: ignore[call-overload]
                deployments=int(status["deployments"]),  # type: ignore[call-overload]
                load=float(status["load"]),  # type: ignore[arg-type]
                cache=self.host.images.stats(),
                terms=self.config.terms,
                snapshots=self.host.snapshots.store.stats(),
            )
            try:
                # Bounded by the interval: an SP that hung with this beat (behind a load
                # balancer, one of several) is given up on while the SP's deadline can be met.
                reply = await self._sp_client.call(
                    _sp_port(sp), beats.ACTION, request, timeout=beats.beat_timeout(every)
                )
                every = beats.interval_of(reply.body, self.config.heartbeat)
                if not registered:
                    log.info("registered with %s (heartbeat every %.1f s)", sp, every)
                registered, delay, retry = True, every, beats.FIRST_RETRY
            except DynasoarError as exc:
                log.warning("registering with %s: %s", sp, exc.reason)
                # soon at first (a beat lost with an SP that died), then less and less often
                registered, delay = False, retry
                retry = min(retry * 2, beats.RETRY_CEILING)
            self.registered = registered
            try:
                await asyncio.wait_for(self._unregistering.wait(), delay)
            except TimeoutError:
                pass

    async def quiesce(self) -> None:
        """Stopping: no more heartbeats, and the SP is told at once (with --drain, after it
        moved this host's stateless deployments elsewhere), so that it sends nothing new."""
        self.readiness.stopping()
        if self._registration is None:
            return
        # A beat already sent is let finish (its reply awaited, BEAT_TIMEOUT at most): cut
        # short, the SP might still take it after the DeregisterHost below, and think this
        # host up again.
        self._unregistering.set()
        _, pending = await asyncio.wait({self._registration}, timeout=beats.BEAT_TIMEOUT + 1.0)
        for task in pending:
            task.cancel()
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
        if path == HEALTH_PATH:
            return text(200, "ok")
        if path == PORT_PATH:
            if request.method == "POST":
                return await self.port_log(self.port.handle, request)
            if request.method == "GET" and wants_wsdl(request.query):
                return self.port.wsdl(base_url_of(request.headers.get("host"), self.url))
            return text(405, "POST SOAP messages here; GET ?wsdl for the contract")
        if path.startswith("/dynasoar/") and path.endswith(".xsd"):
            return self.port.schema(path.rpartition("/")[2]) or text(404, "no such schema")
        if path in (METRICS_PATH, READY_PATH):
            if request.method != "GET":
                return text(405, f"{path} is read-only: GET it")
            if path == READY_PATH:
                return await self.readiness.response()
            # Reading the deployments asks the backends whether they live: not on the loop.
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                None, metrics_response, self.metrics.registry, request
            )
        return text(404, f"nothing here at {path}; see {PORT_PATH}?wsdl")
