"""Benchmark (g): vm-counter moved between two hosts while 8 clients keep calling it through the
SP: how long the move took (``dynasoar move`` returns once the route has switched), how long
messages were held at the SP, and the longest pause a client saw (its slowest call against the
usual one); every answer must come once, in sequence."""

from __future__ import annotations

import statistics
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from lxml import etree

from dynasoar.bench.cluster import BenchCluster
from dynasoar.bench.vm import start_libvirt, vm_available
from dynasoar.paths import SOURCE_ROOT

COUNTER = SOURCE_ROOT / "deploy" / "services" / "vm-counter" / "build" / "vm-counter"
NS = "urn:dynasoar:samples:counter"
BODY = (
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
    f'<c:Increment xmlns:c="{NS}"/></s:Body></s:Envelope>'
).encode()


class Callers:
    """``clients`` threads calling Increment in a loop: (started, seconds, value or None)."""

    def __init__(self, url: str, clients: int = 8) -> None:
        self.url = url
        self.calls: list[tuple[float, float, int | None]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            value: int | None = None
            try:
                request = urllib.request.Request(
                    self.url, BODY, {"Content-Type": "text/xml", "SOAPAction": f'"{NS}/Increment"'}
                )
                with urllib.request.urlopen(request, timeout=120) as response:
                    found = etree.fromstring(response.read()).findtext(f".//{{{NS}}}value")
                    value = int(found) if found is not None else None
            except (OSError, ValueError, etree.XMLSyntaxError):
                value = None
            with self._lock:
                self.calls.append((started, time.monotonic() - started, value))

    def count(self) -> int:
        with self._lock:
            return len(self.calls)

    def stop(self) -> list[tuple[float, float, int | None]]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=150)
        return self.calls


def move_under_load(work: Path, clients: int = 8) -> None:
    why = vm_available()
    if why is None and not (COUNTER / "dynasoar.toml").is_file():
        why = "the vm-counter image is not built (make vm-image)"
    if why is not None:
        print(f"\n(g) moving vm-counter: skipped ({why})")
        return
    start_libvirt()
    print(
        f"\n(g) vm-counter moved between two hosts (TCG) while {clients} clients call it",
        flush=True,
    )
    cluster = BenchCluster.start(work / "cluster", hosts=2, hp_args=["--backend", "libvirt"])
    try:
        source, target = (hp.url for hp in cluster.hps)
        cluster.client.publish(COUNTER)
        cluster.client.call("Deploy", name="VmCounter", host=source)
        callers = Callers(f"{cluster.sp.url}/services/VmCounter", clients)
        _wait(lambda: callers.count() >= 4 * clients)
        began = time.monotonic()
        moved: Any = cluster.client.call("Move", name="VmCounter", host=target)
        ended = time.monotonic()
        before = callers.count()
        _wait(lambda: callers.count() >= before + 4 * clients)
        calls = callers.stop()
    finally:
        cluster.stop()
    values = sorted(v for _, _, v in calls if v is not None)
    failed = sum(1 for _, _, v in calls if v is None)
    in_sequence = values == list(range(1, len(values) + 1))
    usual = statistics.median(s for started, s, _ in calls if started + s < began)
    during = [s for started, s, _ in calls if started < ended and started + s > began]
    print(f"    the move (Move, until the route switched)   {moved.seconds:6.2f} s")
    print(f"    messages held at the SP meanwhile           {moved.held:6.2f} s")
    print(f"    state shipped                               {moved.bytes / (1 << 20):6.1f} MiB")
    print(
        f"    longest pause a client saw                  {max(during, default=0.0):6.2f} s   "
        f"(a call usually takes {usual:.2f} s)"
    )
    print(
        f"    {len(calls)} calls: {failed} failed, answers "
        + ("all in sequence, none twice" if in_sequence else "NOT in sequence"),
        flush=True,
    )


def _wait(condition: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the clients made no progress")
        time.sleep(0.05)
