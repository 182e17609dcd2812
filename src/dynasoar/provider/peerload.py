"""One load for several SPs: with a shared registry each SP relays a part of the messages, and
the SP leading the control loop must judge a deployment idle, or a service busy, by all of
them. Every SP writes, once a second with its other chores, the counts of the deployments it
relayed to since it last wrote (messages in flight, the last one's time); the leader reads the
others' counts before each look (one query: a row per deployment and SP) into its
:class:`~.load.LoadTracker`. An SP that stops writing stops counting for messages in flight
after :data:`FRESH` seconds; its last messages still count, so a deployment another SP kept
busy is not idle until it has been quiet everywhere for the idle timeout."""

from __future__ import annotations

import time

from dynasoar.provider.load import LoadTracker
from dynasoar.provider.registry import Registry

#: Seconds an SP's counts of messages in flight are believed after it wrote them (it writes
#: every second while it relays).
FRESH = 5.0
#: Seconds between deletions of the counts of deployments that are no more.
PRUNE_EVERY = 60.0


class SharedLoad:
    def __init__(self, registry: Registry, load: LoadTracker) -> None:
        self._registry = registry
        self._load = load
        self._shared_to = float("-inf")  # monotonic: what happened since was not written yet
        self._pruned = time.monotonic()

    def share(self) -> None:
        """This SP's counts since the last time, into the registry (every SP, every second;
        nothing without a shared registry). A failed write is done again the next time."""
        if not self._registry.shared:
            return
        since = time.monotonic()
        activity = self._load.active_since(self._shared_to)
        self._registry.share_load(activity, time.time())
        self._shared_to = since

    def read(self) -> None:
        """The other SPs' counts, into the load tracker (the leader, before each look)."""
        if not self._registry.shared:
            return
        self._load.peers = self._registry.peer_load(time.time() - FRESH)
        if time.monotonic() - self._pruned >= PRUNE_EVERY:
            self._pruned = time.monotonic()
            self._registry.prune_load()
