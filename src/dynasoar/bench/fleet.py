"""``dynasoar bench fleet --hosts N``: a real SP against N simulated hosts (a LOAD GENERATOR for
the control plane, :mod:`.fleet_hosts`, all in this one process, speaking the real protocol,
signed), measured from outside the SP:

    heartbeats   the SP's CPU while the fleet only beats (its share of one core), and the beats
                 a second it asked for
    placement    the SP's own placement decisions (its log: candidates chosen from the figures
                 in memory, their live Status, the choice), p50 and p99
    cold call    a first call through the SP (placement, shipping the package as MTOM to a
                 simulated host, probing it, relaying), p50
    usage        GetUsage with one deployment in the fleet, p50, and the hosts it asked
    status page  GET / on the SP, p50, and its size
    registry     hosts recorded, and the registry's size on disk

The SP runs as its own process (``dynasoar sp``), the fleet in a thread of this one."""

from __future__ import annotations

import asyncio
import http.client
import re
import statistics
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from dynasoar.bench.cluster import cpu_seconds
from dynasoar.bench.cold import _post
from dynasoar.bench.fleet_hosts import Fleet
from dynasoar.bench.relay import BODY
from dynasoar.consumer.provider_client import ProviderClient
from dynasoar.keys import make_keypair
from dynasoar.paths import samples_dir
from dynasoar.procs import Actor, start_actor
from dynasoar.soap.security import Credentials, TrustStore

T = TypeVar("T")
PLACED = re.compile(r"placement of \S+: \S+ of (\d+) hosts after checking (\d+), in ([\d.]+) ms")


@dataclass
class FleetFigures:
    hosts: int
    registered_seconds: float
    beats_per_second: float
    interval: float  # median of the intervals the hosts were given
    steady_interval: float  # the interval the whole fleet is given once registered
    heartbeat_cpu: float  # share of one core
    placement: list[float]  # ms each
    checked: list[int]  # hosts asked live per decision
    cold: list[float]  # seconds each
    registry_hosts: int
    registry_bytes: int
    refused: int
    failed: int
    statuses: int  # Status calls the simulated hosts answered, all told
    usage: list[float]  # seconds each GetUsage took, with one deployment in the fleet
    usage_asked: list[int]  # hosts each GetUsage asked for their figures
    page: list[float]  # seconds each GET of the status page took
    page_bytes: int


class _Loop:
    """The fleet's event loop, in a thread of its own (the driver blocks on the SP)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 600.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def measure(
    work: Path, hosts: int, *, window: float = 20.0, cold_calls: int = 30, rate: float = 400.0
) -> FleetFigures:
    work.mkdir(parents=True, exist_ok=True)
    keys = work / "keys"
    sp_key, sp_cert = make_keypair(keys, "sp", overwrite=True)
    fleet_key, fleet_cert = make_keypair(keys, "fleet", overwrite=True)
    sp = start_actor(
        "sp",
        [
            "--port", "0", "--data", str(work / "sp"),
            "--key", str(sp_key), "--cert", str(sp_cert), "--trust", str(fleet_cert),
            "--host-timeout", "600",
        ],
        work / "sp.log",
    )
    loop = _Loop()
    fleet = Fleet(
        hosts,
        sp.url,
        credentials=Credentials.load(fleet_key, fleet_cert),
        trust=TrustStore.from_paths([sp_cert]),
    )
    try:
        loop.run(fleet.start())
        registered = loop.run(fleet.register_all(rate), timeout=hosts / rate + 600)
        loop.run(fleet.beat())
        time.sleep(min(10.0, 2.0 + hosts / 1000))  # the reconciliations of new hosts settle
        beats0, cpu0, t0 = fleet.stats.beats_sent, cpu_seconds(sp.process.pid), time.monotonic()
        time.sleep(window)
        beats1, cpu1, t1 = fleet.stats.beats_sent, cpu_seconds(sp.process.pid), time.monotonic()
        cold = _cold_calls(sp, work, cold_calls)
        placements = [m.groups() for m in PLACED.finditer(sp.log())]
        statuses = fleet.stats.statuses
        usage, usage_asked = _get_usage(sp, fleet)  # (its first call is not a figure above)
        page, page_bytes = _status_page(sp)
        intervals = [h.interval for h in fleet.hosts if h.registered]
        return FleetFigures(
            hosts=hosts,
            registered_seconds=registered,
            beats_per_second=(beats1 - beats0) / (t1 - t0),
            interval=statistics.median(intervals) if intervals else float("nan"),
            steady_interval=max(intervals, default=float("nan")),
            heartbeat_cpu=(cpu1 - cpu0) / (t1 - t0),
            placement=[float(ms) for _, _, ms in placements],
            checked=[int(k) for _, k, _ in placements],
            cold=cold,
            registry_hosts=sum(1 for h in fleet.hosts if h.registered),
            registry_bytes=sum(
                f.stat().st_size for f in (work / "sp").glob("registry.sqlite*") if f.is_file()
            ),
            refused=fleet.stats.beats_refused,
            failed=fleet.stats.beats_failed,
            statuses=statuses,
            usage=usage,
            usage_asked=usage_asked,
            page=page,
            page_bytes=page_bytes,
        )
    finally:
        try:
            loop.run(fleet.close(), timeout=30)
        finally:
            loop.close()
            sp.stop()


def _cold_calls(sp: Actor, work: Path, rounds: int) -> list[float]:
    """First calls to a published, undeployed echo through the SP (undeployed after each)."""
    client = ProviderClient(sp.url)
    client.publish(samples_dir() / "echo")
    url = f"{sp.url}/services/Echo"
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        _post(url, BODY.format(to=url, text="cold").encode())
        seconds.append(time.perf_counter() - started)
        client.call("Undeploy", name="Echo")
    return seconds


def _get_usage(sp: Actor, fleet: Fleet, rounds: int = 5) -> tuple[list[float], list[int]]:
    """GetUsage, timed from outside, with one Echo deployed (by a first call) in the fleet;
    and how many hosts each asked (the fleet counts their GetUsage calls)."""
    client = ProviderClient(sp.url)
    url = f"{sp.url}/services/Echo"
    _post(url, BODY.format(to=url, text="billed").encode())
    client.call("GetUsage")  # the hosts earlier deployments ended on: their figures, once
    seconds, asked = [], []
    for _ in range(rounds):
        before = fleet.stats.usages
        started = time.perf_counter()
        client.call("GetUsage")
        seconds.append(time.perf_counter() - started)
        asked.append(fleet.stats.usages - before)
    client.call("Undeploy", name="Echo")
    return seconds, asked


def _status_page(sp: Actor, rounds: int = 5) -> tuple[list[float], int]:
    """The status page, fetched as a browser would, timed from outside; and its size."""
    parts = urlsplit(sp.url)
    seconds, size = [], 0
    for _ in range(rounds):
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        try:
            started = time.perf_counter()
            conn.request("GET", "/")
            response = conn.getresponse()
            size = len(response.read())
            seconds.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(f"the status page answered HTTP {response.status}")
        finally:
            conn.close()
    return seconds, size


def report(f: FleetFigures) -> None:
    print(f"    fleet                {f.hosts} simulated hosts, registered in "
          f"{f.registered_seconds:.1f} s", flush=True)
    per_beat = f.heartbeat_cpu / f.beats_per_second if f.beats_per_second else float("nan")
    steady = f.hosts / max(f.steady_interval, 1e-9)
    print(f"    heartbeats           {per_beat * steady * 100:.1f} % of one core at the steady "
          f"{steady:.1f} beats/s (every {f.steady_interval:.0f} s each; goal <= 10 %)")
    print(f"      measured           {f.heartbeat_cpu * 100:.1f} % of one core at "
          f"{f.beats_per_second:.1f} beats/s while the fleet settles: "
          f"{per_beat * 1000:.1f} ms of SP CPU per beat")
    print(f"    placement            p50 {_percentile(f.placement, 0.5):.1f} ms "
          f"p99 {_percentile(f.placement, 0.99):.1f} ms "
          f"({len(f.placement)} decisions, {max(f.checked, default=0)} hosts asked at most; "
          "goal p99 <= 10 ms)")
    print(f"    cold call            p50 {statistics.median(f.cold) * 1000:.0f} ms "
          f"({len(f.cold)} calls)")
    asked = max(f.usage_asked, default=0)
    print(f"    usage (GetUsage)     p50 {statistics.median(f.usage) * 1000:.1f} ms "
          f"({asked} {'host' if asked == 1 else 'hosts'} asked of {f.hosts}, one holding a "
          "deployment)")
    print(f"    status page          p50 {statistics.median(f.page) * 1000:.1f} ms, "
          f"{f.page_bytes / 1024:.0f} KiB")
    print(f"    registry             {f.registry_hosts} hosts, {f.registry_bytes / 1024:.0f} KiB")
    if f.refused or f.failed:
        print(f"    beats refused        {f.refused} (too often), {f.failed} failed")


def fleet_bench(work: Path, sizes: tuple[int, ...] = (3, 1000, 10000), quick: bool = False) -> None:
    print(
        "\n(f) the control plane against a simulated fleet (a load generator in one process, "
        "speaking the HostProvider protocol, signed)",
        flush=True,
    )
    figures = []
    for size in sizes:
        print(f"  {size} hosts", flush=True)
        f = measure(work / f"fleet-{size}", size, window=10.0 if quick else 20.0)
        report(f)
        figures.append(f)
    base = figures[0]
    for f in figures[1:]:
        ratio = statistics.median(f.cold) / statistics.median(base.cold)
        print(f"    cold call at {f.hosts} / at {base.hosts} hosts   {ratio:.2f}   (goal <= 1.2)")


def run_fleet(hosts: int, out: Path | None = None, quick: bool = False) -> int:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="dynasoar-fleet-") as tmp:
        work = out or Path(tmp)
        print(f"dynasoar bench fleet: {hosts} simulated hosts (a load generator)", flush=True)
        if quick:  # a look at the figures, not a measurement to quote
            report(measure(work, hosts, window=5.0, cold_calls=5))
        else:
            report(measure(work, hosts))
    return 0
