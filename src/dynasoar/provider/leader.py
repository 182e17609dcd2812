"""One SP at a time runs the control loop (scaling, idle undeploys, judging heartbeats,
reconciling): the one holding the registry's leader lock. With PostgreSQL that is a session
advisory lock, which the server frees the moment the leader's session ends, so when the leader
dies another SP takes over at its next look (every ``interval`` seconds). With SQLite the one SP
always leads.

Every SP, leader or not, writes the heartbeats it heard (and its other ``chores``: the usage it
counted) to the registry at each look."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from dynasoar.errors import DynasoarError
from dynasoar.provider.heartbeats import Heartbeats
from dynasoar.provider.registry import Registry

log = logging.getLogger(__name__)

LEADER_LOCK = "dynasoar:leader"


class Leadership:
    def __init__(
        self,
        registry: Registry,
        heartbeats: Heartbeats,
        control_loop: Callable[[], Coroutine[Any, Any, None]],
        interval: float = 1.0,
        chores: Sequence[Callable[[], None]] = (),
    ) -> None:
        self._chores = tuple(chores)
        self._registry = registry
        self._heartbeats = heartbeats
        self._control_loop = control_loop
        self.interval = interval
        self._control: asyncio.Task[None] | None = None

    @property
    def leading(self) -> bool:
        return self._control is not None and not self._control.done()

    def look(self) -> None:
        """Flush the beats heard; take the lead if it is free, or let it go if it was lost."""
        for chore in (self._heartbeats.flush, *self._chores):
            try:
                chore()
            except DynasoarError as exc:
                log.warning("not written to the registry yet (kept for later): %s", exc.reason)
        if self.leading:
            if not self._registry.db.holds(LEADER_LOCK):
                log.warning("this SP lost the lead of the control loop (its session ended)")
                self._stop_control()
            return
        try:
            taken = self._registry.db.try_lock(LEADER_LOCK)
        except DynasoarError as exc:
            log.info("cannot contend for the control loop now: %s", exc.reason)
            return
        if taken:
            log.info("this SP leads the control loop (%s)", self._registry.instance)
            self._control = asyncio.create_task(self._control_loop())

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.interval)
                try:
                    self.look()
                except Exception:  # the look must outlive any one failure
                    log.exception("leadership look failed")
        finally:
            await self.stop()

    def _stop_control(self) -> None:
        if self._control is not None:
            self._control.cancel()
            self._control = None

    async def stop(self) -> None:
        """Stop the control loop (if led here) and let go of the lead."""
        task, self._control = self._control, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        try:
            self._registry.db.unlock(LEADER_LOCK)
        except DynasoarError:
            pass  # a lost session holds no lock
