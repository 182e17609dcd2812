"""Benchmark (a): the warm relay. The same echo calls, made directly to the deployed service,
through the SP, through a bare forwarder built from the SP's own HTTP parts (the floor of our
layers: ``passthrough.py``), through a hand-rolled one on asyncio.Protocol and httptools (the
floor of any relay in Python here: ``handrolled.py``) and through that hand-rolled one doing the
least an SP must do per message (``minimal.py``: the envelope's WS-Addressing read and checked,
a deadline, metrics, an access line), alternating in one run: throughput ratio, added p50
latency, and each relay's CPU per message against the service's own."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from dynasoar.bench.cluster import BenchCluster, cpu_seconds, pid_of_deployment
from dynasoar.bench.load import command
from dynasoar.paths import samples_dir
from dynasoar.procs import first_line

ECHO_NS = "urn:dynasoar:samples:echo"
BODY = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:wsa="http://www.w3.org/2005/08/addressing"><s:Header>'
    "<wsa:To>{to}</wsa:To><wsa:Action>" + ECHO_NS + "/Echo</wsa:Action>"
    "<wsa:MessageID>urn:uuid:6f1c4a1e-bench-0000-0000-000000000000</wsa:MessageID>"
    '</s:Header><s:Body><e:Echo xmlns:e="' + ECHO_NS + '"><e:text>{text}</e:text></e:Echo>'
    "</s:Body></s:Envelope>"
)


@dataclass
class Run:
    rps: float
    p50: float
    requests: int
    errors: int
    sp_cpu: float
    service_cpu: float


def _load(url: str, body: Path, duration: float, concurrency: int) -> dict[str, float]:
    out = subprocess.run(
        command(url, body, ECHO_NS + "/Echo", "payload", concurrency, duration, 0.5),
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 120,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def _measure(
    url: str, body: Path, duration: float, concurrency: int, sp_pid: int, service_pid: int
) -> Run:
    sp0, svc0 = cpu_seconds(sp_pid), cpu_seconds(service_pid)
    result = _load(url, body, duration, concurrency)
    sp1, svc1 = cpu_seconds(sp_pid), cpu_seconds(service_pid)
    n = max(1, int(result["requests"]))
    # The warm-up requests are in the CPU figures too; count them at the run's own rate.
    total = n * (1 + 0.5 / result["seconds"])
    return Run(
        result["rps"],
        result["p50"],
        n,
        int(result["errors"]),
        (sp1 - sp0) / total,
        (svc1 - svc0) / total,
    )


def warm_relay(work: Path, duration: float = 5.0, rounds: int = 3, concurrency: int = 16) -> None:
    print(
        f"\n(a) warm relay: echo, {concurrency} concurrent callers, {rounds} x {duration:.0f} s "
        "per path, alternating",
        flush=True,
    )
    cluster = BenchCluster.start(work)
    floors: list[subprocess.Popen[bytes]] = []
    try:
        cluster.client.publish(samples_dir() / "echo")
        deployment = cluster.client.call("Deploy", name="Echo")
        direct_url = deployment.endpoint
        relay_url = f"{cluster.sp.url}/services/Echo"
        body = work / "echo.xml"
        body.write_text(BODY.format(to=relay_url, text="payload " * 8))
        service_pid = pid_of_deployment(deployment.id)
        sp_pid = cluster.sp.process.pid
        for module in ("passthrough", "handrolled", "minimal"):
            with (work / f"{module}.log").open("ab") as log:  # minimal.py's access lines
                floors.append(
                    subprocess.Popen(
                        [sys.executable, "-m", f"dynasoar.bench.{module}", direct_url],
                        stdout=subprocess.PIPE,
                        stdin=subprocess.DEVNULL,
                        stderr=log,
                    )
                )
        urls = [first_line(f, 30.0).rpartition(" ")[2].rstrip("/") + "/" for f in floors]
        direct: list[Run] = []
        relayed: list[Run] = []
        bare: list[Run] = []
        hand: list[Run] = []
        least: list[Run] = []
        for _ in range(rounds):
            direct.append(_measure(direct_url, body, duration, concurrency, sp_pid, service_pid))
            relayed.append(_measure(relay_url, body, duration, concurrency, sp_pid, service_pid))
            for runs, url, floor in zip((bare, hand, least), urls, floors, strict=True):
                runs.append(_measure(url, body, duration, concurrency, floor.pid, service_pid))
        _report(direct, relayed, bare, hand, least)
    finally:
        for floor in floors:
            floor.kill()
            floor.wait()
        cluster.stop()


def _report(
    direct: list[Run], relayed: list[Run], bare: list[Run], hand: list[Run], least: list[Run]
) -> None:
    def med(runs: list[Run], attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in runs))

    d_rps, r_rps = med(direct, "rps"), med(relayed, "rps")
    d_p50, r_p50 = med(direct, "p50"), med(relayed, "p50")
    sp_cpu, svc_relayed, svc_direct = (
        med(relayed, "sp_cpu"),
        med(relayed, "service_cpu"),
        med(direct, "service_cpu"),
    )
    errors = sum(r.errors for r in direct + relayed + bare + hand + least)
    print(
        f"    direct:     {d_rps:8.0f} req/s   p50 {d_p50 * 1000:6.2f} ms   "
        f"service CPU {svc_direct * 1e6:5.0f} µs/msg"
    )
    print(
        f"    via SP:     {r_rps:8.0f} req/s   p50 {r_p50 * 1000:6.2f} ms   "
        f"service CPU {svc_relayed * 1e6:5.0f} µs/msg   SP CPU {sp_cpu * 1e6:5.0f} µs/msg"
    )
    print(f"    throughput via SP / direct       {r_rps / d_rps:6.2f}   (target >= 1.00)")
    print(f"    added p50 latency                {(r_p50 - d_p50) * 1000:6.2f} ms")
    print(
        f"    SP CPU / service CPU per message {sp_cpu / svc_direct:6.2f}   (target <= 0.15; "
        "service as called directly)"
    )
    print(
        f"    SP CPU / service CPU per message {sp_cpu / svc_relayed:6.2f}   (target <= 0.15; "
        "service in the same relayed runs)"
    )
    b_rps, b_cpu, svc_bare = med(bare, "rps"), med(bare, "sp_cpu"), med(bare, "service_cpu")
    print(
        f"    bare relay: {b_rps:8.0f} req/s   (our HTTP server and pool only, none of the SP's "
        f"work)   CPU {b_cpu * 1e6:5.0f} µs/msg = {b_cpu / svc_direct:.2f} / {b_cpu / svc_bare:.2f}"
        " of the service's (direct / in its runs)"
    )
    h_rps, h_cpu, svc_hand = med(hand, "rps"), med(hand, "sp_cpu"), med(hand, "service_cpu")
    print(
        f"    hand-rolled: {h_rps:7.0f} req/s   (asyncio.Protocol + httptools, no task, timer or "
        f"layer per message)   CPU {h_cpu * 1e6:5.0f} µs/msg = {h_cpu / svc_direct:.2f} / "
        f"{h_cpu / svc_hand:.2f} of the service's"
    )
    l_rps, l_cpu, svc_least = med(least, "rps"), med(least, "sp_cpu"), med(least, "service_cpu")
    print(
        f"    least SP:   {l_rps:8.0f} req/s   (hand-rolled + WS-Addressing read and checked, "
        f"a deadline, metrics, an access line)   CPU {l_cpu * 1e6:5.0f} µs/msg = "
        f"{l_cpu / svc_direct:.2f} / {l_cpu / svc_least:.2f} of the service's"
    )
    print(
        f"    SP's own work per message        {(sp_cpu - b_cpu) * 1e6:6.0f} µs   (SP CPU minus "
        "the bare relay's)"
    )
    print(f"    failed calls                     {errors}", flush=True)
