"""Where messages for a moving deployment wait (:mod:`dynasoar.provider.moves`): the relay
asks for the deployment's gate before it sends; while a move is under way the message waits
(a bounded number of them, each within its own deadline), then goes where the deployment went,
or gets the move's fault. Gates of moves that ended are kept a while, for messages that picked
the old deployment just before the switch."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from dynasoar.errors import Busy, DeploymentTimeout, DynasoarError, InvalidRequest
from dynasoar.provider.registry import DeploymentRecord

#: Messages that may wait for one moving deployment; more are refused with dyn:Busy.
MAX_WAITING = 1000
#: Moves that ended are remembered this long.
REMEMBERED = 600.0


class MoveGate:
    """Where messages for a moving deployment wait, and what they go to when it opens."""

    def __init__(self, record: DeploymentRecord, limit: int = MAX_WAITING) -> None:
        self.record = record
        self.closed_at = time.monotonic()
        self.opened_at: float | None = None
        self._limit = limit
        self._waiting = 0
        self._open = asyncio.Event()
        self._to: DeploymentRecord | None = None
        self._error: DynasoarError | None = None

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    @property
    def stayed(self) -> bool:
        """The move is over and the deployment did not move (its messages go to it). By id:
        the record it opened onto may be a copy read again from the registry (had that copy
        counted as a move, the relay would pass the open gate again and again, never waiting)."""
        return (
            self.is_open
            and self._error is None
            and self._to is not None
            and self._to.id == self.record.id
        )

    async def passage(self, timeout: float) -> DeploymentRecord:
        """The deployment a waiting message goes to once the move is over."""
        if not self._open.is_set():
            if self._waiting >= self._limit:
                raise Busy(
                    f"{self.record.service} is moving and {self._waiting} messages wait for it "
                    "already; retry shortly"
                )
            self._waiting += 1
            try:
                async with asyncio.timeout(max(0.0, timeout)):
                    await self._open.wait()
            except TimeoutError:
                raise DeploymentTimeout(
                    f"{self.record.service} is still moving to another host; the message was "
                    "not sent: send it again"
                ) from None
            finally:
                self._waiting -= 1
        if self._error is not None:
            raise self._error
        assert self._to is not None
        return self._to

    def open(self, to: DeploymentRecord | None = None, error: DynasoarError | None = None) -> None:
        if self._open.is_set():
            return
        self._to, self._error = to, error
        self.opened_at = time.monotonic()
        self._open.set()


class MoveGates:
    """The gates of deployments moving now, and of those moved lately."""

    def __init__(self) -> None:
        self._gates: OrderedDict[str, MoveGate] = OrderedDict()

    def get(self, deployment_id: str) -> MoveGate | None:
        return self._gates.get(deployment_id) if self._gates else None

    def close(self, record: DeploymentRecord) -> MoveGate:
        if record.id in self._gates and not self._gates[record.id].is_open:
            raise InvalidRequest(f"{record.service}'s deployment {record.id} is moving already")
        now = time.monotonic()
        while self._gates:  # forget moves that ended long ago
            oldest = next(iter(self._gates.values()))
            if oldest.opened_at is None or now - oldest.opened_at < REMEMBERED:
                break
            self._gates.popitem(last=False)
        gate = self._gates[record.id] = MoveGate(record)
        self._gates.move_to_end(record.id)
        return gate
