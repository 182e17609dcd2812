"""What each deployment on a Host Provider consumes, for the bill: CPU seconds (read from the
service process's own accounting, or from libvirt's domain statistics for a guest), memory as
GiB-seconds (its resident memory, sampled every few seconds and integrated), and the image bytes
its Deploy brought to the host. Figures are cumulative from the deployment's start; an ended
deployment's final figures are kept for a while (bounded), so that what it consumed after the
Service Provider last asked is not lost."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

log = logging.getLogger(__name__)

GIB = float(1 << 30)
#: Ended deployments whose final figures are kept.
ENDED_KEPT = 1024

#: Reads a running deployment's (CPU seconds so far, resident bytes now).
Reader = Callable[[], tuple[float, int]]


@dataclass(frozen=True)
class Consumption:
    id: str
    service: str
    version: str
    state: str  # "running" | "ended"
    cpu_seconds: float
    memory_gib_seconds: float
    image_bytes: int
    started: datetime
    ended: datetime | None = None


@dataclass
class _Tracked:
    figures: Consumption
    read: Reader
    last_sample: float
    last_rss: int


class UsageMeter:
    """Thread-safe; :meth:`start` runs the sampler thread, :meth:`close` stops it."""

    def __init__(self, interval: float = 2.0) -> None:
        self.interval = interval
        self._tracked: dict[str, _Tracked] = {}
        self._ended: OrderedDict[str, Consumption] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="usage-meter", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def track(
        self, deployment_id: str, service: str, version: str, image_bytes: int, read: Reader
    ) -> None:
        figures = Consumption(
            deployment_id, service, version, "running", 0.0, 0.0, image_bytes, datetime.now(UTC)
        )
        with self._lock:
            self._tracked[deployment_id] = _Tracked(figures, read, time.monotonic(), 0)
        self._sample(deployment_id)

    def end(self, deployment_id: str) -> None:
        """The deployment is stopping: take its last figures now (before it is gone)."""
        self._sample(deployment_id)
        with self._lock:
            tracked = self._tracked.pop(deployment_id, None)
            if tracked is None:
                return
            self._ended[deployment_id] = replace(
                tracked.figures, state="ended", ended=datetime.now(UTC)
            )
            while len(self._ended) > ENDED_KEPT:
                self._ended.popitem(last=False)

    def all(self) -> list[Consumption]:
        """Every running deployment's figures (sampled now) and the ended ones kept."""
        for deployment_id in list(self._tracked):
            self._sample(deployment_id)
        with self._lock:
            return [t.figures for t in self._tracked.values()] + list(self._ended.values())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for deployment_id in list(self._tracked):
                self._sample(deployment_id)

    def _sample(self, deployment_id: str) -> None:
        with self._lock:
            tracked = self._tracked.get(deployment_id)
        if tracked is None:
            return
        try:
            cpu, rss = tracked.read()
        except Exception as exc:  # it is going away: keep what was measured
            log.debug("reading %s's usage: %s", deployment_id, exc)
            return
        now = time.monotonic()
        with self._lock:
            if self._tracked.get(deployment_id) is not tracked:
                return
            # The trapezoid between two samples: memory changes smoothly enough for a bill.
            gib_seconds = (tracked.last_rss + rss) / 2 / GIB * (now - tracked.last_sample)
            tracked.figures = replace(
                tracked.figures,
                cpu_seconds=max(cpu, tracked.figures.cpu_seconds),
                memory_gib_seconds=tracked.figures.memory_gib_seconds + gib_seconds,
            )
            tracked.last_sample, tracked.last_rss = now, rss
