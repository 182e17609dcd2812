"""How busy each deployment is: messages in flight and when it last had one. The relay counts,
the router spreads messages over replicas by it, the autoscaler scales out and undeploys idle
deployments by it. Used from the event loop only, so it needs no lock.

With several SPs on one registry, each relays a part of the messages: what the others counted
(:mod:`.peerload`) is kept beside this SP's own count, and the control loop's judgements (idle,
busy) use both; routing a message uses this SP's own count."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence

from dynasoar.provider.registry import DeploymentRecord


class LoadTracker:
    def __init__(self) -> None:
        self._outstanding: Counter[str] = Counter()
        self._last_used: dict[str, float] = {}
        #: Messages per (deployment, signed consumer's subject): who uses what, and how much.
        self._by_consumer: Counter[tuple[str, str]] = Counter()
        #: Other SPs' counts, per deployment: messages in flight there, and when one of them
        #: last had a message for it (epoch seconds).
        self.peers: dict[str, tuple[int, float]] = {}
        #: When a deployment with no message here yet was first asked about (monotonic).
        self._seen: dict[str, float] = {}

    def count(self, deployment_id: str, consumer: str) -> None:
        self._by_consumer[(deployment_id, consumer)] += 1

    def consumers(self, deployment_id: str) -> list[tuple[str, int]]:
        return sorted((c, n) for (d, c), n in self._by_consumer.items() if d == deployment_id)

    # begin and end run twice per relayed message: plain dict calls (a Counter's missing key
    # is a Python-level call).
    def begin(self, deployment_id: str) -> None:
        outstanding = self._outstanding
        outstanding[deployment_id] = outstanding.get(deployment_id, 0) + 1
        self._last_used[deployment_id] = time.monotonic()

    def end(self, deployment_id: str) -> None:
        outstanding = self._outstanding
        left = outstanding.get(deployment_id, 0) - 1
        if left <= 0:
            outstanding.pop(deployment_id, None)
        else:
            outstanding[deployment_id] = left
        self._last_used[deployment_id] = time.monotonic()

    def outstanding(self, deployment_id: str) -> int:
        return self._outstanding[deployment_id]

    async def answered(
        self, deployment_id: str, until: float | None = None, every: float = 0.02
    ) -> bool:
        """Wait until no message is in flight to the deployment here (True), or until
        ``until`` (monotonic) comes first (False)."""
        while self._outstanding.get(deployment_id, 0):
            if until is not None and time.monotonic() >= until:
                return False
            await asyncio.sleep(every)
        return True

    def everywhere(self, deployment_id: str) -> int:
        """Messages in flight to the deployment through this SP and the others."""
        peer = self.peers.get(deployment_id)
        return self._outstanding[deployment_id] + (peer[0] if peer is not None else 0)

    def idle_for(self, deployment_id: str) -> float:
        """Seconds since the deployment last had a message, through any SP (since first seen
        here, if never)."""
        now = time.monotonic()
        if self._outstanding[deployment_id] > 0:
            return 0.0
        last = self._last_used.get(deployment_id)
        if last is None:
            last = self._seen.setdefault(deployment_id, now)
        idle = now - last
        peer = self.peers.get(deployment_id)
        if peer is not None:
            if peer[0] > 0:
                return 0.0
            idle = min(idle, max(0.0, time.time() - peer[1]))
        return idle

    def state_of(self, deployment_id: str) -> tuple[int, float]:
        """Messages in flight to the deployment here, and when it last had one here (epoch
        seconds; 0 if never)."""
        used = self._last_used.get(deployment_id)
        return (
            self._outstanding.get(deployment_id, 0),
            0.0 if used is None else used + time.time() - time.monotonic(),
        )

    def active_since(self, since: float) -> list[tuple[str, int, float]]:
        """This SP's deployments with messages in flight or a message since ``since``
        (monotonic): (id, in flight, when it last had one, in epoch seconds)."""
        offset = time.time() - time.monotonic()
        outstanding = self._outstanding
        return [
            (deployment_id, outstanding.get(deployment_id, 0), used + offset)
            for deployment_id, used in self._last_used.items()
            if used >= since or outstanding.get(deployment_id, 0) > 0
        ]

    def least_busy(self, records: Sequence[DeploymentRecord]) -> DeploymentRecord:
        """The replica with the fewest messages in flight (the oldest among equals)."""
        return min(records, key=lambda d: (self._outstanding[d.id], d.created))

    def forget(self, deployment_id: str) -> None:
        self._outstanding.pop(deployment_id, None)
        self._last_used.pop(deployment_id, None)
        self.peers.pop(deployment_id, None)
        self._seen.pop(deployment_id, None)
        for key in [k for k in self._by_consumer if k[0] == deployment_id]:
            del self._by_consumer[key]
