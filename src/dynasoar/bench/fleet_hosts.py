"""The fleet simulator's hosts: a LOAD GENERATOR for a Service Provider's control plane, and
nothing else. N lightweight Host Provider endpoints in one process, each at its own address
(``http://127.0.0.1:PORT/fleet/N``), speaking the real HostProvider protocol on the wire to a
real SP: RegisterHost heartbeats with their figures (WS-Addressing, signed when given a key),
and Status, List, Deploy (the package arrives as MTOM and is read, then dropped), Undeploy,
QueryImages and GetUsage (each deployment running, nothing consumed) answered as a Host
Provider answers them (signed when given a key). A host may offer terms (its price, sites,
labels: in its beats and Status), or be silent: down behind its address (every call answered
HTTP 503), never beating, for an SP that was given its address (``--hp``).
Every call a host's port takes is journaled in order of arrival (:attr:`Fleet.calls`, bounded),
so a caller can tell which hosts the SP asked what, and when relative to each other.
A "deployed" service is an echo answered in this process: no code is ever run. It is used by
``dynasoar bench fleet`` only; nothing else may use it as a host."""

from __future__ import annotations

import asyncio
import functools
import heapq
import random
import shutil
import tempfile
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from dynasoar import beats, ns
from dynasoar.errors import DynasoarError
from dynasoar.http import ConnectionPool, HttpServer, Request, Response
from dynasoar.paths import HOST_PORT, PROVIDER_PORT
from dynasoar.soap import addressing
from dynasoar.soap.client import SoapClient
from dynasoar.soap.envelope import SoapVersion, build_envelope, parse_envelope, serialize
from dynasoar.soap.mtom_feed import read_mtom
from dynasoar.soap.security import Credentials, Policy, TrustStore, sign
from dynasoar.terms import HostTerms

_H = f"{{{ns.DYN_HP}}}"
_D = f"{{{ns.DYN}}}"
ECHO_NS = "urn:dynasoar:samples:echo"
WSDL = b'<?xml version="1.0"?><definitions xmlns="http://schemas.xmlsoap.org/wsdl/"/>'
MAX_MESSAGE = 64 << 20
#: Calls kept in the journal (the oldest are dropped): a long bench must not grow it forever.
CALLS_KEPT = 100_000


@dataclass
class SimHost:
    address: str
    capacity: int
    #: id -> (service, owner, version)
    deployments: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    interval: float = 2.0  # as the SP last asked
    beats: int = 0
    registered: bool = False
    usage_asks: int = 0  # GetUsage calls it answered
    terms: HostTerms = field(default_factory=HostTerms)  # in its beats and Status
    silent: bool = False  # down: never beats, every call to its port answered HTTP 503


@dataclass
class FleetStats:
    beats_sent: int = 0
    beats_refused: int = 0
    beats_failed: int = 0
    statuses: int = 0
    usages: int = 0
    deploys: int = 0
    echoes: int = 0


class Fleet:
    def __init__(
        self,
        count: int,
        sp: str | None,
        *,
        capacity: int = 8,
        credentials: Credentials | None = None,
        trust: TrustStore | None = None,
        heartbeat: float = 2.0,
        concurrency: int = 32,
    ) -> None:
        self.count = count
        self.sp_port = ""  # where the hosts beat: the SP's port (see beat_to)
        if sp is not None:
            self.beat_to(sp)
        self.capacity = capacity
        self.heartbeat = heartbeat
        self.security = Policy(credentials=credentials, trust=trust)
        self.hosts: list[SimHost] = []
        self.stats = FleetStats()
        #: (operation, host address) of every call the hosts' ports took, in order of arrival.
        self.calls: deque[tuple[str, str]] = deque(maxlen=CALLS_KEPT)
        self._server = HttpServer(self.handle)
        self._pool = ConnectionPool(max_idle_per_origin=concurrency)
        self._client = SoapClient(self._pool, security=Policy(credentials=credentials))
        self._slots = asyncio.Semaphore(concurrency)
        #: Where Deploy's attachments are spooled while read (removed by close).
        self.spool = Path(tempfile.mkdtemp(prefix="dynasoar-fleet-"))
        self._due: list[tuple[float, int]] = []
        self.base = ""
        self._beating: asyncio.Task[None] | None = None

    def beat_to(self, sp: str) -> None:
        """The SP the hosts beat to (given later when the SP is started after the fleet, to
        be told the addresses of its silent hosts)."""
        self.sp_port = sp.rstrip("/") + PROVIDER_PORT

    async def start(self) -> None:
        host, port = await self._server.start("127.0.0.1", 0)
        self.base = f"http://{host}:{port}"
        self.hosts = [SimHost(f"{self.base}/fleet/{i}", self.capacity) for i in range(self.count)]

    async def close(self) -> None:
        if self._beating is not None:
            self._beating.cancel()
            await asyncio.gather(self._beating, return_exceptions=True)
        await self._server.close(grace=1.0)
        await self._pool.close()
        shutil.rmtree(self.spool, ignore_errors=True)

    # -- heartbeats ------------------------------------------------------------------------

    async def register_all(self, per_second: float) -> float:
        """Every host but the silent ones registers (its first beat), ``per_second`` at most;
        returns seconds."""
        self._to_sp()
        started = time.monotonic()
        tasks = []
        beating = [i for i, h in enumerate(self.hosts) if not h.silent]
        for n, index in enumerate(beating):
            due = started + n / per_second
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            tasks.append(asyncio.create_task(self._beat(index)))
        await asyncio.gather(*tasks)
        now = time.monotonic()
        # From here each host beats at the interval the SP gave it, at a random phase.
        self._due = [(now + random.uniform(0.3, 1.3) * self.hosts[i].interval, i) for i in beating]
        heapq.heapify(self._due)
        return now - started

    async def beat(self) -> None:
        """From now on, every host beats at its interval (until :meth:`close`)."""
        self._to_sp()
        self._beating = asyncio.create_task(self._beat_forever())

    def _to_sp(self) -> None:
        if not self.sp_port:
            raise RuntimeError("the fleet was not told which SP to beat to (beat_to)")

    async def _beat_forever(self) -> None:
        while True:
            if not self._due:
                await asyncio.sleep(0.5)
                continue
            due, index = self._due[0]
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(min(wait, 0.5))
                continue
            heapq.heappop(self._due)
            await self._slots.acquire()
            task = asyncio.create_task(self._beat(index, slot=True))
            task.add_done_callback(functools.partial(self._again, index))

    def _again(self, index: int, _task: object = None) -> None:
        heapq.heappush(self._due, (time.monotonic() + self.hosts[index].interval, index))

    async def _beat(self, index: int, slot: bool = False) -> None:
        host = self.hosts[index]
        try:
            if not slot:
                await self._slots.acquire()
            request = beats.register_host(
                host.address,
                self.heartbeat,
                backend="fleet-simulator",
                capacity=host.capacity,
                deployments=len(host.deployments),
                load=0.0,
                terms=host.terms,
            )
            try:
                reply = await self._client.call(self.sp_port, beats.ACTION, request, timeout=30.0)
            except DynasoarError as exc:
                if "Busy" in exc.reason or "too often" in exc.reason:
                    self.stats.beats_refused += 1
                else:
                    self.stats.beats_failed += 1
                return
            host.interval = beats.interval_of(reply.body, self.heartbeat)
            host.registered = True
            host.beats += 1
            self.stats.beats_sent += 1
        finally:
            self._slots.release()

    # -- the HostProvider port, and the "deployed" echoes ------------------------------------

    async def handle(self, request: Request) -> Response:
        parts = request.path.split("/")  # "", "fleet", N, ...
        if len(parts) < 4 or parts[1] != "fleet" or not parts[2].isdigit():
            return Response(404, [("Content-Type", "text/plain")], b"not a simulated host")
        index = int(parts[2])
        if index >= len(self.hosts):
            return Response(404, [("Content-Type", "text/plain")], b"no such simulated host")
        rest = "/" + "/".join(parts[3:])
        if rest == HOST_PORT and request.method == "POST":
            return await self._port(self.hosts[index], request)
        if rest.startswith("/svc/"):
            if request.method == "GET":
                return Response(200, [("Content-Type", "text/xml")], WSDL)
            return await self._echo(request)
        return Response(404, [("Content-Type", "text/plain")], b"nothing here")

    async def _port(self, host: SimHost, request: Request) -> Response:
        content_type = request.headers.get("content-type") or ""
        if content_type.startswith("multipart/related"):
            with await read_mtom(request.body, content_type, self.spool) as message:
                data = message.root  # the package and images are read, and dropped
        else:
            data = await request.body.read_all(MAX_MESSAGE)
        envelope = parse_envelope(data)
        self.security.check(envelope.root)  # the SP's signature, when the fleet trusts it
        wsa = addressing.read_headers(envelope.header_blocks)
        assert envelope.body is not None
        op = next((c for c in envelope.body if isinstance(c.tag, str)), None)
        name = etree.QName(op).localname if op is not None else ""
        self.calls.append((name, host.address))
        if host.silent:
            return Response(503, [("Content-Type", "text/plain")], b"this host is down")
        body = self._operation(host, name, op)
        reply = addressing.reply_headers(wsa, f"{ns.DYN_HP}/{name}Response")
        root = build_envelope(envelope.version, [body], addressing.write_headers(reply))
        if self.security.credentials is not None:
            sign(root, self.security.credentials)
        return Response(
            200,
            [("Content-Type", envelope.version.content_type(None))],
            serialize(root),
        )

    def _operation(
        self, host: SimHost, name: str, op: etree._Element | None
    ) -> etree._Element:
        out = etree.Element(f"{_H}{name}Response", nsmap={"hp": ns.DYN_HP, "dyn": ns.DYN})
        if name == "Status":
            self.stats.statuses += 1
            out.append(
                beats.host_status(
                    f"{_H}status",
                    host.address,
                    backend="fleet-simulator",
                    capacity=host.capacity,
                    deployments=len(host.deployments),
                    load=0.0,
                    terms=host.terms,
                )
            )
        elif name == "GetUsage":  # each deployment running, having consumed nothing: no code runs
            self.stats.usages += 1
            host.usage_asks += 1
            for deployment, (service, _, version) in host.deployments.items():
                item = etree.SubElement(out, f"{_H}deployment")
                for field_name, value in (
                    ("id", deployment),
                    ("service", service),
                    ("version", version),
                    ("state", "running"),
                    ("cpuSeconds", "0"),
                    ("memoryGiBSeconds", "0"),
                    ("imageBytes", "0"),
                ):
                    etree.SubElement(item, f"{_D}{field_name}").text = value
        elif name == "Deploy" and op is not None:
            self.stats.deploys += 1
            deployment = op.findtext(f"{_H}deploymentId") or uuid.uuid4().hex
            host.deployments[deployment] = (
                op.findtext(f"{_H}service") or "",
                op.findtext(f"{_H}owner") or "",
                op.findtext(f"{_H}version") or "",
            )
            etree.SubElement(out, f"{_H}deploymentId").text = deployment
            endpoint = etree.SubElement(out, f"{_H}endpoint")
            etree.SubElement(endpoint, f"{{{ns.WSA}}}Address").text = (
                f"{host.address}/svc/{deployment}"
            )
        elif name == "Undeploy" and op is not None:
            gone = host.deployments.pop(op.findtext(f"{_H}deploymentId") or "", None)
            etree.SubElement(out, f"{_H}undeployed").text = "true" if gone else "false"
        elif name == "List":
            for deployment, (service, owner, _) in host.deployments.items():
                item = etree.SubElement(out, f"{_H}deployment")
                for field_name, value in (
                    ("id", deployment),
                    ("service", service),
                    ("state", "ready"),
                    ("owner", owner),
                ):
                    etree.SubElement(item, f"{_D}{field_name}").text = value
        return out  # QueryImages (none held): empty

    async def _echo(self, request: Request) -> Response:
        self.stats.echoes += 1
        data = await request.body.read_all(MAX_MESSAGE)
        text = parse_envelope(data).root.findtext(f".//{{{ECHO_NS}}}text") or ""
        body = etree.Element(f"{{{ECHO_NS}}}EchoResponse", nsmap={"e": ECHO_NS})
        etree.SubElement(body, f"{{{ECHO_NS}}}text").text = text
        root = build_envelope(SoapVersion.SOAP11, [body])
        return Response(200, [("Content-Type", "text/xml; charset=utf-8")], serialize(root))
