"""Assembles a Service Provider process: state under ``--data``, the management port, the
routing interceptor, what operators watch (status page, metrics, readiness, access lines), and
the HTTP routes that lead to them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import unquote

from dynasoar.addresses import OwnAddresses
from dynasoar.consumer.host_client import HostClient, normalize
from dynasoar.deadlines import Deadlines
from dynasoar.errors import DynasoarError
from dynasoar.http import ConnectionPool, Handler, Request, Response
from dynasoar.images import CacheStats
from dynasoar.paths import PROVIDER_PORT as PORT_PATH
from dynasoar.paths import contracts_dir
from dynasoar.portlog import PortLog
from dynasoar.provider.access import MessageObserver
from dynasoar.provider.activity import Activity
from dynasoar.provider.autoscaler import Autoscaler
from dynasoar.provider.chain import build_chain
from dynasoar.provider.config import ProviderConfig
from dynasoar.provider.courier import build_courier
from dynasoar.provider.deliveries import DeliveryStore
from dynasoar.provider.deployer import Deployer
from dynasoar.provider.detach import resume
from dynasoar.provider.following import Following
from dynasoar.provider.heartbeats import Heartbeats
from dynasoar.provider.hosts import HostDirectory
from dynasoar.provider.image_holders import ImageHolders
from dynasoar.provider.image_peers import IMAGES_PATH, PeerImages
from dynasoar.provider.interceptors import SERVICES
from dynasoar.provider.leader import Leadership
from dynasoar.provider.load import LoadTracker
from dynasoar.provider.logs import ServiceLogs
from dynasoar.provider.metrics import ProviderMetrics, SpState
from dynasoar.provider.move_recovery import MoveRecovery
from dynasoar.provider.move_watch import MoveWatch
from dynasoar.provider.moves import Mover
from dynasoar.provider.page import StatusPage
from dynasoar.provider.peerload import SharedLoad
from dynasoar.provider.reconcile import Reconciler
from dynasoar.provider.registry import HostRecord, Registry
from dynasoar.provider.replies import ReplyRouter
from dynasoar.provider.reply_policy import ReplyDestinations
from dynasoar.provider.repository import Repository
from dynasoar.provider.service_provider import ServiceProvider
from dynasoar.provider.shipper import Shipper
from dynasoar.provider.snapshots import SnapshotLibrary
from dynasoar.provider.usage import Usage
from dynasoar.serve import base_url_of, text, wants_wsdl
from dynasoar.service.endpoint import (
    EndpointConfig,
    ManagementEndpoint,
    fresh_spool,
    upload_limits,
)
from dynasoar.soap.client import SoapClient
from dynasoar.soap.envelope import SoapVersion
from dynasoar.soap.security import Policy
from dynasoar.tls import client_context
from dynasoar.watch import HEALTH_PATH, METRICS_PATH, READY_PATH, Readiness, metrics_response
from dynasoar.wsdl import rewrite_addresses

log = logging.getLogger(__name__)

WSDL_CACHE_SIZE = 256
T = TypeVar("T")


class ProviderApp:
    """The SP process's parts, wired together; ``handle`` is its HTTP entry point."""

    def __init__(self, config: ProviderConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.loop = loop
        data = config.data
        fresh_spool(data / "spool")
        self.pool = ConnectionPool(ssl_context=client_context(config.ca))
        self.registry = Registry(config.registry or data / "registry.sqlite")
        # While this process runs, its instance lock says so to the SPs sharing the registry.
        self.registry.hold_instance()
        # Requests to hosts are signed with the SP's key; their replies must verify against
        # the hosts the SP trusts (config.security).
        host_client = HostClient(SoapClient(self.pool, SoapVersion.SOAP12, config.security))
        self.hosts = HostDirectory(self.registry, host_client)
        repository = Repository(data / "repository", self.registry)
        self.repository = repository
        # VM images travel between SPs sharing the registry: who holds which, fetched by digest.
        self.image_holders = ImageHolders(self.registry, config.security.max_skew)
        repository.on_held = self.image_holders.hold
        self.peer_images = PeerImages(
            self.image_holders, repository.images, self.pool, config.deploy_timeout
        )
        #: Every wait of a message, and of each call to a host (keyed by host): brought
        #: forward when a host is marked down, or when the SP stops.
        self.deadlines = Deadlines()
        shipper = Shipper(
            self.registry,
            host_client,
            self.pool,
            repository.images,
            config.deploy_timeout,
            packages=repository.package_path,
            snapshots=SnapshotLibrary(
                self.registry, repository.images, host_client, data / "spool"
            ),
            fetch=self.peer_images.ensure,
        )
        self.deployer = Deployer(
            self.registry, self.hosts, shipper, LoadTracker(), self.deadlines, config.placement
        )
        self.reconciler = Reconciler(
            self.registry,
            host_client,
            self.deployer,
            grace=min(10.0, config.scaling.reconcile_interval),
        )
        self.hosts.on_up = self.reconciler.soon
        shipper.on_count = self.hosts.counted
        # Moves other SPs make hold this SP's messages too (a shared registry); those left by
        # an SP that died (this one, before a restart) are settled.
        self.move_recovery = MoveRecovery(self.registry, self.deployer, host_client)
        self.move_watch = MoveWatch(
            self.registry, self.deployer.gates, self.deployer.load, loop, self.move_recovery
        )
        mover = Mover(
            self.registry,
            self.hosts,
            self.deployer,
            host_client,
            data / "spool",
            watch=self.move_watch,
        )
        self.provider = ServiceProvider(
            data,
            self.registry,
            repository,
            self.hosts,
            self.deployer,
            mover,
            keep_versions=config.keep_versions,
        )
        images = repository.images
        self.metrics = ProviderMetrics(
            SpState(
                self.registry,
                self.deployer.load,
                lambda: len(self.provider.catalog()),
                lambda: _held(images.stats()),
            )
        )
        self.activity = Activity(self.metrics)
        shipper.observer = self.activity
        self.page = StatusPage(
            self.provider, self.registry, self.deployer.load, images, self.activity
        )
        self.readiness = Readiness()
        self.logs = ServiceLogs(self.registry, host_client)
        self.usage = Usage(self.registry, host_client)
        self.heartbeats = Heartbeats(
            self.registry, config.scaling.host_timeout, config.heartbeat_rate
        )
        # With several SPs, each shares how busy it finds the deployments; the leader sums.
        self.shared_load = SharedLoad(self.registry, self.deployer.load)
        self.autoscaler = Autoscaler(
            self.provider,
            self.registry,
            self.deployer,
            config.scaling,
            self.reconciler,
            self.usage,
            self.heartbeats,
            self.shared_load,
        )
        self.provider.on_heartbeat = self._heartbeat
        self.provider.too_soon = self.heartbeats.too_soon
        # One SP at a time runs the control loop: the one leading (always this one on SQLite).
        self.leadership = Leadership(
            self.registry,
            self.heartbeats,
            self.autoscaler.run,
            chores=[self.registry.hold_instance, self.usage.flush, self.shared_load.share],
        )
        self._leading: asyncio.Task[None] | None = None
        self.following = Following(self.registry, self.provider, self.hosts, self.move_watch, loop)
        self.own = OwnAddresses(config.public_urls)
        # Replies to ReplyTo / FaultTo addresses: kept in the registry, sent by the courier.
        self.destinations = ReplyDestinations(config.reply_to_allow)
        self.deliveries = DeliveryStore(self.registry, config.reply_retry_for)
        self.courier = build_courier(self.deliveries, self.pool, self.destinations)
        self._courier: asyncio.Task[None] | None = None
        self._resume: asyncio.Task[None] | None = None
        self.chain, self.relay = build_chain(
            self.provider,
            self.deployer,
            self.pool,
            Policy(trust=config.consumer_trust, max_skew=config.security.max_skew),
            self.deadlines,
            message_timeout=config.message_timeout,
            call_timeout=config.call_timeout,
            usage=self.usage,
            own=self.own,
            destinations=self.destinations,
            store=self.deliveries,
            router=ReplyRouter(self.deliveries, self.courier.wake, config.soap12_sender_status),
            observe=MessageObserver(self.metrics, self.activity),
        )
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="sp-port")
        from dynasoar.provider.port import provider_port  # spyne: imported with the port only

        self.port = ManagementEndpoint(
            provider_port(),
            EndpointConfig(
                path=PORT_PATH,
                wsdl_file=contracts_dir() / "ServiceProvider.wsdl",
                spool_dir=data / "spool",
                mtom_limits=upload_limits(config.max_upload_bytes),
                # consumers need not sign management calls; the SP signs what it answers; a
                # signed one (a host's heartbeat) is checked against the hosts it trusts
                security=Policy(
                    credentials=config.security.credentials,
                    trust=config.security.trust,
                    max_skew=config.security.max_skew,
                    optional=True,
                ),
                own=self.own,
                sender_status=config.soap12_sender_status,
            ),
            self.executor,
            lambda: {
                "provider": self.provider,
                "run": self._run_on_loop,
                "drain_timeout": config.message_timeout * 0.8,
                "logs": self.logs,
                "usage": self.usage,
                # a heartbeat's figures are believed from a trusted host, if hosts are trusted
                "hosts_trusted": lambda signer: config.security.trust is None or signer is not None,
            },
            self.deadlines,
        )
        self.port_log = PortLog(
            self.port.contract,
            self.metrics.control,
            self.metrics.control_seconds,
            routine=frozenset({"RegisterHost"}),
        )
        self._wsdl_cache: dict[tuple[str, str, str], bytes] = {}
        self.url = ""

    def _run_on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """From a port worker thread: run ``coro`` on the SP's loop and wait for it."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=self.config.message_timeout)

    async def start(self, url: str) -> Handler:
        """Restore before serving: moves left by a crash are settled, deployments recorded
        before a restart are checked against their hosts (reused, lost, or cleaned up after a
        crash), then the control loop runs, the courier sends replies kept for later, and
        messages accepted before the restart are taken up again."""
        self.own.listening(url)
        self.url = url
        self.image_holders.start(self.config.peer_url or url, self.repository.held_images())
        for address in self.config.hosts:
            self.hosts.add(address)
        await self.move_recovery.settle_left()  # before the restore resumes paused guests
        await self.reconciler.at_start()
        if self.config.hosts:  # the hosts named here are checked now; the others beat
            await self.hosts.survey([normalize(a) for a in self.config.hosts])
        self.following.start()
        self.heartbeats.listening()
        self.leadership.look()  # the control loop starts now, if this SP leads
        self._leading = asyncio.create_task(self.leadership.run())
        self._courier = asyncio.create_task(self.courier.run())
        self._resume = asyncio.create_task(self._take_up(url))
        self.readiness.ready()
        return self.handle

    def _heartbeat(self, address: str, every: float, figures: HostRecord | None) -> float:
        self.heartbeats.fleet = len(self.hosts.views)
        return self.heartbeats.beat(address, every, figures)

    async def _take_up(self, url: str) -> None:
        """Messages accepted (202) before a restart: processed now, a few at a time."""
        try:
            taken_up = await resume(
                self.deliveries,
                self.provider,
                url,
                self.config.message_timeout,
                self.chain.run_accepted,
                self.chain.fail,
            )
        except DynasoarError as exc:
            log.error("messages accepted before the restart not taken up: %s", exc.reason)
            return
        if taken_up:
            log.info("%d messages accepted before the restart taken up again", taken_up)

    async def quiesce(self) -> None:
        """Stopping: the control loop first. Nobody hears the hosts' heartbeats from now on,
        and judging them would undo every deployment; the registry stays as it is. Messages
        accepted before the last restart and not yet taken up wait for the next start."""
        self.readiness.stopping()
        for task in (self._leading, self._resume):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._leading = self._resume = None
        await self.following.stop()
        await self.leadership.stop()

    def cut_short(self, reason: str) -> None:
        ended = self.deadlines.expire_all(reason)
        log.warning("grace period over: %d message(s) answered dyn:ShuttingDown", ended)

    async def stop(self) -> None:
        await self.quiesce()
        if self._courier is not None:  # replies not sent yet are kept for the next start
            self._courier.cancel()
            await asyncio.gather(self._courier, return_exceptions=True)
        await self.chain.close()
        self.peer_images.close()
        await self.reconciler.close()
        await self.move_watch.close()
        await self.deployer.close()
        self.usage.flush()
        self.executor.shutdown(wait=False, cancel_futures=True)
        await self.pool.close()
        self.registry.close()

    async def handle(self, request: Request) -> Response:
        path = request.path
        if path == HEALTH_PATH:
            return text(200, "ok")
        base = base_url_of(request.headers.get("host"), self.url)
        if path == PORT_PATH:
            if request.method == "POST":
                return await self.port_log(self.port.handle, request)
            if request.method == "GET" and wants_wsdl(request.query):
                return self.port.wsdl(base)
            return text(405, "POST SOAP messages here; GET ?wsdl for the contract")
        if path.startswith(IMAGES_PATH):  # a peer SP fetching a VM image it lacks
            return await self.peer_images.serve(request)
        if path.startswith("/dynasoar/") and path.endswith(".xsd"):
            return self.port.schema(path.rpartition("/")[2]) or text(404, "no such schema")
        if path == SERVICES or path.startswith(SERVICES + "/"):
            if request.method == "POST":
                return await self.chain(request, base)
            if request.method == "GET" and wants_wsdl(request.query):
                return self._service_wsdl(path, base)
            return text(405, "POST SOAP messages here; GET ?wsdl for the service's contract")
        if path in ("/", METRICS_PATH, READY_PATH):
            if request.method != "GET":
                return text(405, f"{path} is read-only: GET it")
            if path == READY_PATH:
                return await self.readiness.response()
            if path == METRICS_PATH:
                return metrics_response(self.metrics.registry, request)
            return self.page.response(base)
        return text(404, f"nothing here at {path}; see / or {PORT_PATH}?wsdl")

    def _service_wsdl(self, path: str, base: str) -> Response:
        name = unquote(path[len(SERVICES) :].strip("/"))
        advertised = self.provider.advertised(name)
        if advertised is None:
            return text(404, f"no service named {name!r} is advertised here")
        key = (name, advertised.record.sha256, base)
        body = self._wsdl_cache.get(key)
        if body is None:
            body = rewrite_addresses(advertised.record.wsdl, f"{base}{SERVICES}/{name}")
            if len(self._wsdl_cache) >= WSDL_CACHE_SIZE:  # Host headers are the client's to pick
                self._wsdl_cache.clear()
            self._wsdl_cache[key] = body
        return Response(200, [("Content-Type", "text/xml; charset=utf-8")], body)


def _held(stats: CacheStats) -> tuple[int, int]:
    return stats.images, stats.bytes
