"""The courier: sends the replies in the reply store to their ReplyTo / FaultTo addresses.
Each attempt goes through named phases, built in one place (:func:`build_courier`), as a
message goes through the routing chain:

    claim    take the delivery for this attempt (counted now: an attempt a crash cuts short
             still counts)
    check    its address still allowed (the allow-list may have changed across a restart),
             its time not over
    send     POST it with a deadline; the answer is read (bounded) and dropped
    settle   delivered (a 2xx); tried again later, with backoff, if nothing came back or a
             408/425/429/5xx but 501 did; else given up (logged and counted)

A reply is delivered successfully at most once: once an attempt has had its 2xx, the row is
``delivered`` and no attempt follows. An attempt whose answer a crash cut off is made again
after the restart; the reply's MessageID stays the same, so its receiver can tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from dynasoar.errors import DynasoarError, PayloadTooLarge
from dynasoar.http import ConnectionPool
from dynasoar.provider.deliveries import Delivery, DeliveryStore
from dynasoar.provider.reply_policy import ReplyDestinations

log = logging.getLogger(__name__)

PHASES = ("claim", "check", "send", "settle")
#: Seconds one attempt may take: connecting, sending, the answer.
ATTEMPT_TIMEOUT = 10.0
#: The most of an answer read (then dropped) before the connection is let go.
ANSWER_LIMIT = 64 * 1024
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
#: Attempts made at once.
PARALLEL = 8
#: Finished rows kept for the record.
KEEP_FINISHED = 1000
#: How long the courier sleeps when nothing is due (a new reply wakes it at once).
IDLE_WAIT = 5.0
RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


class Verdict(enum.Enum):
    SKIP = "skip"  # not ours to try (another attempt took it)
    DELIVERED = "delivered"
    RETRY = "retry"
    GIVE_UP = "give up"


@dataclass
class Attempt:
    delivery: Delivery
    verdict: Verdict | None = None
    status: int | None = None
    error: str = ""


class Phase(Protocol):
    phase: str

    async def handle(self, attempt: Attempt) -> None: ...


def backoff(attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones."""
    return float(min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** max(0, attempts - 1)))


class Claim:
    phase = "claim"

    def __init__(self, store: DeliveryStore) -> None:
        self._store = store

    async def handle(self, attempt: Attempt) -> None:
        if not self._store.claim(attempt.delivery.id):
            attempt.verdict = Verdict.SKIP


class CheckDestination:
    phase = "check"

    def __init__(self, destinations: ReplyDestinations) -> None:
        self._destinations = destinations

    async def handle(self, attempt: Attempt) -> None:
        refusal = self._destinations.refusal(attempt.delivery.address)
        if refusal is not None:
            attempt.verdict, attempt.error = Verdict.GIVE_UP, refusal
        elif time.time() > attempt.delivery.deadline:
            attempt.verdict, attempt.error = Verdict.GIVE_UP, "its time to be delivered is over"


class Send:
    phase = "send"

    def __init__(self, pool: ConnectionPool, timeout: float = ATTEMPT_TIMEOUT) -> None:
        self._pool = pool
        self._timeout = timeout

    async def handle(self, attempt: Attempt) -> None:
        delivery = attempt.delivery
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._pool.request(
                    delivery.address,
                    "POST",
                    headers=delivery.head,
                    body=delivery.body,
                    timeout=self._timeout,
                )
                try:
                    await response.read_all(ANSWER_LIMIT)
                except PayloadTooLarge:
                    pass  # what it says does not matter, only that it answered
                finally:
                    await response.aclose()
        except TimeoutError:
            attempt.error = f"no answer within {self._timeout:.0f} s"
            return
        except DynasoarError as exc:
            attempt.error = exc.reason
            return
        attempt.status = response.status


class Settle:
    phase = "settle"

    def __init__(self, store: DeliveryStore) -> None:
        self._store = store

    async def handle(self, attempt: Attempt) -> None:
        delivery = attempt.delivery
        status = attempt.status
        if attempt.verdict is None:
            if status is not None and 200 <= status < 300:
                attempt.verdict = Verdict.DELIVERED
            elif status is not None and status not in RETRYABLE:
                attempt.verdict, attempt.error = Verdict.GIVE_UP, f"refused with HTTP {status}"
            else:
                attempt.error = attempt.error or f"answered HTTP {status}"
                late = time.time() + backoff(delivery.attempts + 1) > delivery.deadline
                attempt.verdict = Verdict.GIVE_UP if late else Verdict.RETRY
        if attempt.verdict is Verdict.DELIVERED:
            self._store.delivered(delivery.id)
            log.info("reply to %s delivered to %s", delivery.message_id, delivery.address)
        elif attempt.verdict is Verdict.RETRY:
            at = time.time() + backoff(delivery.attempts + 1)
            self._store.retry(delivery.id, at, attempt.error)
            log.info("reply to %s: %s; trying again", delivery.address, attempt.error)
        elif attempt.verdict is Verdict.GIVE_UP:
            count = self._store.give_up(delivery.id, attempt.error)
            log.warning(
                "reply to message %s is undeliverable to %s after %d attempt(s): %s "
                "(%d undeliverable so far)",
                delivery.message_id,
                delivery.address,
                delivery.attempts + 1,
                attempt.error,
                count,
            )


class Pipeline:
    def __init__(self, phases: Sequence[Phase]) -> None:
        names = tuple(p.phase for p in phases)
        if names != PHASES:
            raise ValueError(f"delivery phases out of order: {names}")
        self.phases = tuple(phases)

    async def __call__(self, delivery: Delivery) -> Attempt:
        attempt = Attempt(delivery)
        for phase in self.phases:
            if attempt.verdict is Verdict.SKIP:
                break
            if attempt.verdict is not None and phase.phase != "settle":
                continue  # decided already: straight to settle
            await phase.handle(attempt)
        return attempt


class Courier:
    """Runs the pipeline for every due delivery, a few at a time, until stopped."""

    def __init__(self, store: DeliveryStore, pipeline: Pipeline, parallel: int = PARALLEL) -> None:
        self._store = store
        self._pipeline = pipeline
        self._parallel = parallel
        self._wake = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        recovered = self._store.recover()
        if recovered:
            log.info("%d reply deliveries cut short by a stop will be tried again", recovered)
        try:
            while True:
                self._wake.clear()
                self._start_due()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._wait()):
                        await self._wake.wait()
        finally:
            for task in self._inflight.values():
                task.cancel()

    def _start_due(self) -> None:
        room = self._parallel - len(self._inflight)
        if room <= 0:
            return
        try:
            due = self._store.due(time.time(), room + len(self._inflight))
            self._store.prune(KEEP_FINISHED)
        except DynasoarError as exc:
            log.error("the courier cannot read the reply store: %s", exc.reason)
            return
        for delivery in due:
            if delivery.id in self._inflight or len(self._inflight) >= self._parallel:
                continue
            task = asyncio.create_task(self._attempt(delivery))
            self._inflight[delivery.id] = task

    async def _attempt(self, delivery: Delivery) -> None:
        try:
            await self._pipeline(delivery)
        except DynasoarError as exc:
            log.error("delivering the reply to %s failed: %s", delivery.address, exc.reason)
        except Exception:
            log.exception("delivering the reply to %s failed", delivery.address)
        finally:
            self._inflight.pop(delivery.id, None)
            self._wake.set()

    def _wait(self) -> float:
        try:
            next_due = self._store.next_due()
        except DynasoarError:
            return IDLE_WAIT
        if next_due is None:
            return IDLE_WAIT
        return min(IDLE_WAIT, max(0.05, next_due - time.time()))


def build_courier(
    store: DeliveryStore, pool: ConnectionPool, destinations: ReplyDestinations
) -> Courier:
    return Courier(
        store,
        Pipeline([Claim(store), CheckDestination(destinations), Send(pool), Settle(store)]),
    )
