"""Benchmark (b): the cold first call through the SP (choose a host, ship the package, start
it, probe, relay) against starting the same service by hand (a fresh runner process) and
calling it once. The Host Providers keep runners pre-started (``hp --warm-runners``)."""

from __future__ import annotations

import http.client
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

from dynasoar.bench.cluster import BenchCluster
from dynasoar.bench.relay import BODY, ECHO_NS
from dynasoar.host.backends.process import runner_command
from dynasoar.package import load_manifest
from dynasoar.paths import samples_dir
from dynasoar.procs import first_line


def _post(url: str, body: bytes) -> bytes:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
    try:
        conn.request(
            "POST",
            parts.path or "/",
            body=body,
            headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{ECHO_NS}/Echo"'},
        )
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {data[:300]!r}")
        return data
    finally:
        conn.close()


def by_hand(work: Path) -> float:
    """Start the echo package's runner ourselves, call it once; seconds from start to answer."""
    root = work / "by-hand"
    shutil.copytree(samples_dir() / "echo", root, dirs_exist_ok=True)
    manifest = load_manifest(root)
    started = time.perf_counter()
    process = subprocess.Popen(
        runner_command(root, manifest),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = first_line(process, 60).removeprefix("listening on ")
        _post(endpoint, BODY.format(to=endpoint, text="cold").encode())
        return time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(10)


def through_sp(cluster: BenchCluster, name: str) -> float:
    """Seconds for the first call to a published, undeployed service through the SP."""
    url = f"{cluster.sp.url}/services/{name}"
    started = time.perf_counter()
    _post(url, BODY.format(to=url, text="cold").encode())
    elapsed = time.perf_counter() - started
    cluster.client.call("Undeploy", name=name)
    return elapsed


def cold_start(work: Path, rounds: int = 5) -> None:
    print(f"\n(b) cold first call: through the SP vs by hand, {rounds} rounds each", flush=True)
    cluster = BenchCluster.start(work, hosts=2)
    try:
        cluster.client.publish(samples_dir() / "echo")
        hand, sp = [], []
        for _ in range(rounds):
            hand.append(by_hand(work))
            sp.append(through_sp(cluster, "Echo"))
    finally:
        cluster.stop()
    h, s = statistics.median(hand), statistics.median(sp)
    print(f"    by hand (start + first call)     {h * 1000:7.0f} ms")
    print(f"    through the SP (cold call)       {s * 1000:7.0f} ms")
    print(
        f"    cold via SP / by hand            {s / h:7.2f}   (goal <= 1.0: the HP hands the "
        "package to a pre-started runner)",
        flush=True,
    )
