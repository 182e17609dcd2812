"""Usage and the bill ("payment for the use of resources", one of Dynasoar's concerns).

For every message relayed, the Service Provider counts who sent it (the signer's certificate
subject when signed; else the ``dyn:Consumer`` it claims; else its address), to which service,
version and host, its bytes in and out, and its wall time. Each host reports what each
deployment consumed (CPU seconds, memory GiB-seconds, image bytes received: ``GetUsage``); the
SP shares a deployment's consumption out among the consumers whose messages it served, by their
wall time there since its last report (what it consumed with no message in flight goes to whom
it was deployed for). Everything is kept in the registry, per consumer, service, version,
host and day, surviving undeploys and restarts; the bill prices it at each host's terms (per
CPU-second, per GiB moved).

Only the hosts that can have figures not yet taken are asked (:meth:`Usage.owed`), never the
whole fleet: those holding deployments, and those that held one since they were last asked (a
deployment undeployed, moved or lost with its host, here or by another SP sharing the
registry; the host keeps an ended deployment's final figures until then). A host stays owed
until its figures are taken: one that does not answer, or whose figures the registry could
not take (unreachable meanwhile), is asked again at the next poll. The taking itself, safe
among SPs that share the registry, is :mod:`.usage_take`'s, and so is the ledger of what was
taken, which forgets a deployment once its host and the registry have both forgotten it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime

from dynasoar.consumer.host_client import DeploymentUsage, HostClient
from dynasoar.errors import DynasoarError
from dynasoar.provider.records import HOST_COLUMNS, host_of
from dynasoar.provider.registry import DeploymentRecord, Registry
from dynasoar.provider.usage_take import LEFT, PRUNE_AFTER, forget_unreported, take

log = logging.getLogger(__name__)

GIB = float(1 << 30)
#: Who is billed for what nobody's message was using.
NOBODY = "(unattributed)"
#: Deployments gone whose final figures are awaited, at most.
ENDING_KEPT = 4096


@dataclass(frozen=True)
class Key:
    day: str
    consumer: str
    service: str
    version: str
    host: str


@dataclass
class Tally:
    messages: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    memory_gib_seconds: float = 0.0
    image_bytes: int = 0


@dataclass(frozen=True)
class BillRow:
    key: Key
    tally: Tally
    price_cpu: float  # per CPU-second, the host's
    price_gib: float  # per GiB moved, the host's

    @property
    def gib(self) -> float:
        return (self.tally.bytes_in + self.tally.bytes_out + self.tally.image_bytes) / GIB

    @property
    def cost(self) -> float:
        return self.tally.cpu_seconds * self.price_cpu + self.gib * self.price_gib


COLUMNS = [f.name for f in fields(Tally)]


_days: dict[int, str] = {}


def today() -> str:
    """The UTC date, as the book keys it (cheap: it is asked once per message)."""
    number = int(time.time() // 86400)
    day = _days.get(number)
    if day is None:
        _days.clear()
        day = _days[number] = datetime.now(UTC).date().isoformat()
    return day


class Usage:
    def __init__(
        self,
        registry: Registry,
        client: HostClient,
        timeout: float = 10.0,
        prune_after: float = PRUNE_AFTER,
    ) -> None:
        self._registry = registry
        #: Seconds before what was taken of a deployment its host forgot is forgotten too.
        self._prune_after = prune_after
        self._client = client
        self._timeout = timeout
        self._pending: dict[Key, Tally] = {}
        #: The same tallies by a plain tuple of the key's fields: a message finds its tally
        #: without making a Key (a frozen dataclass: dear to make and to hash, per message).
        self._by_fields: dict[tuple[str, str, str, str, str], Tally] = {}
        #: deployment -> consumer -> wall seconds of its messages since the host last reported
        self._walls: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        #: deployment -> the consumer whose message deployed it (billed its image bytes)
        self._deployed_for: dict[str, str] = {}
        self._polling: asyncio.Lock | None = None
        #: Hosts whose deployments had messages, or ended, since they were last asked for their
        #: figures. Only added to and taken from whole (set operations the GIL keeps atomic):
        #: the message path adds without a lock, another SP's changes from the registry's thread.
        self._touched: set[str] = set()
        #: Deployments gone from the registry whose host has not yet reported them ended
        #: (id -> host): their host stays owed until it does (their final figures).
        self._ending: dict[str, str] = {}
        self._ending_lock = threading.Lock()  # (told from the registry's thread, too)
        registry.on_deployment_gone.append(self.ended)

    # -- the message path ----------------------------------------------------------------

    def message(
        self,
        consumer: str,
        deployment: DeploymentRecord,
        bytes_in: int,
        bytes_out: int,
        seconds: float,
        cold: bool = False,
    ) -> None:
        fields = (today(), consumer, deployment.service, deployment.version, deployment.host)
        tally = self._by_fields.get(fields)
        if tally is None:
            tally = self._by_fields[fields] = self._tally(Key(*fields))
        tally.messages += 1
        tally.bytes_in += bytes_in
        tally.bytes_out += bytes_out
        tally.wall_seconds += seconds
        self._touched.add(deployment.host)
        self._walls[deployment.id][consumer] += seconds
        if cold:
            self._deployed_for.setdefault(deployment.id, consumer)

    # -- hosts' figures ------------------------------------------------------------------

    def touched(self) -> set[str]:
        """Hosts whose deployments had messages, or ended, since their figures were last
        asked for."""
        return set(self._touched)

    def ended(self, record: DeploymentRecord) -> None:
        """A deployment went (undeployed, moved, lost with its host; here or by another SP):
        its host keeps its final figures, to be taken with the next poll."""
        self._touched.add(record.host)
        with self._ending_lock:
            self._ending[record.id] = record.host
            while len(self._ending) > ENDING_KEPT:  # ended unseen (a host gone): the oldest go
                self._ending.pop(next(iter(self._ending)))

    def owed(self) -> list[str]:
        """The hosts that can have figures not yet taken, and can be asked now: those up or
        draining that hold a deployment or held one since they were last asked. Read from
        memory; a host that is down stays owed until it is back (or forgotten)."""
        states = self._registry.host_states()
        holding = {r.host for r in self._registry.deployments()}
        touched = self.touched()  # a copy: another thread may add to it meanwhile
        self._touched.difference_update({h for h in touched if h not in states})
        return sorted(h for h in holding | touched if states.get(h) in ("up", "draining"))

    async def poll(self, hosts: list[str]) -> None:
        """Ask ``hosts`` what their deployments consumed, and share it out. A host whose
        figures were not all taken (it did not answer, the registry failed meanwhile, the
        poll was cancelled) stays owed, to be asked again at the next poll: an ended
        deployment's final figures are asked for nowhere else. A registry that fails is
        logged here, once; the figures wait for it."""
        self._touched.difference_update(hosts)
        taken: set[str] = set()
        failures: tuple[type[BaseException], ...] = (DynasoarError, *self._registry.errors)
        try:
            if self._polling is None:
                self._polling = asyncio.Lock()
            async with self._polling:  # one at a time: the shares depend on the last report
                reports = await asyncio.gather(
                    *(self._client.usage(h, self._timeout) for h in hosts),
                    return_exceptions=True,
                )
                self.flush()  # this SP's walls join the other SPs' in the registry, to share
                live = {r.id for r in self._registry.deployments()}
                for host, report in zip(hosts, reports, strict=True):
                    if isinstance(report, BaseException):
                        if not isinstance(report, DynasoarError):
                            raise report
                        log.info("no usage from %s: %s", host, report.reason)
                        continue  # its figures are still to be taken
                    for figures in report:
                        self._figures(host, figures)
                    self._still_ending(host, report)
                    reported = {figures.id for figures in report}
                    forget_unreported(self._registry, host, reported, live, self._prune_after)
                    taken.add(host)  # (recorded taken; the tallies are flushed, or kept)
                self.flush()
        except failures as exc:  # the registry's: the figures wait for it
            log.warning(
                "the usage of %d host(s) was not taken (%s); asked again at the next poll",
                len(set(hosts) - taken),
                exc.reason if isinstance(exc, DynasoarError) else exc,
            )
        finally:
            self._touched.update(set(hosts) - taken)

    def _still_ending(self, host: str, report: list[DeploymentUsage]) -> None:
        """A deployment that went from the registry while its host was still stopping it
        (asked in between): the host stays owed until it reports it ended."""
        with self._ending_lock:
            for figures in report:
                if figures.id in self._ending:
                    if figures.state == "ended":  # its final figures, just taken
                        del self._ending[figures.id]
                    else:
                        self._touched.add(host)

    def _figures(self, host: str, now: DeploymentUsage) -> None:
        """Take what the deployment consumed since its figures were last taken, by this SP or
        another sharing the registry, and share it out among who used it."""
        taken = take(
            self._registry,
            host,
            now,
            lambda: self._owner(now.id, self._registry.deployment(now.id)),
        )
        if taken == LEFT:
            self._touched.add(host)  # asked again next time
            return
        if taken is None:
            return
        owner, cpu, memory, images, walls = taken
        day = today()
        walls = walls or {owner: 1.0}
        total = sum(walls.values()) or 1.0
        for consumer, wall in walls.items():
            tally = self._tally(Key(day, consumer, now.service, now.version, host))
            tally.cpu_seconds += cpu * wall / total
            tally.memory_gib_seconds += memory * wall / total
        if images:
            self._tally(Key(day, owner, now.service, now.version, host)).image_bytes += images

    def _owner(self, deployment_id: str, record: DeploymentRecord | None) -> str:
        found = self._deployed_for.pop(deployment_id, None)
        if found is None and record is not None:
            found = record.deployed_for
        return found or NOBODY

    def _tally(self, key: Key) -> Tally:
        tally = self._pending.get(key)
        if tally is None:
            tally = self._pending[key] = Tally()
        return tally

    # -- the book --------------------------------------------------------------------------

    def flush(self) -> None:
        """Add what was counted since the last flush to the registry: the book's tallies, and
        the wall time of each consumer's messages per deployment (whichever SP next takes
        the deployment's figures shares them out by it)."""
        pending, self._pending = self._pending, {}
        self._by_fields = {}
        walls, self._walls = self._walls, defaultdict(lambda: defaultdict(float))
        if not pending and not walls:
            return
        sets = ", ".join(f"{c} = usage.{c} + excluded.{c}" for c in COLUMNS)
        try:
            self._write(pending, sets, walls)
        except BaseException:
            # the registry cannot be reached: kept, added to what the next flush writes
            for key, tally in pending.items():
                into = self._tally(key)
                for column in COLUMNS:
                    setattr(into, column, getattr(into, column) + getattr(tally, column))
            for deployment_id, seconds in walls.items():
                for consumer, wall in seconds.items():
                    self._walls[deployment_id][consumer] += wall
            raise

    def _write(
        self, pending: dict[Key, Tally], sets: str, walls: dict[str, dict[str, float]]
    ) -> None:
        with self._registry.transaction() as db:
            db.executemany(
                "INSERT INTO deployment_walls (deployment_id, consumer, seconds) VALUES (?,?,?) "
                "ON CONFLICT (deployment_id, consumer) "
                "DO UPDATE SET seconds = deployment_walls.seconds + excluded.seconds",
                [(d, c, wall) for d, seconds in walls.items() for c, wall in seconds.items()],
            )
            db.executemany(
                f"INSERT INTO usage (day, consumer, service, version, host, {', '.join(COLUMNS)}) "
                f"VALUES (?,?,?,?,?,{','.join('?' * len(COLUMNS))}) "
                f"ON CONFLICT (day, consumer, service, version, host) DO UPDATE SET {sets}",
                [
                    (
                        k.day,
                        k.consumer,
                        k.service,
                        k.version,
                        k.host,
                        *(getattr(t, c) for c in COLUMNS),
                    )
                    for k, t in pending.items()
                ],
            )

    def bill(self, consumer: str | None = None, since: date | None = None) -> list[BillRow]:
        """The book, priced at each host's terms (as last reported)."""
        self.flush()
        where, args = [], []
        if consumer:
            where.append("consumer = ?")
            args.append(consumer)
        if since is not None:
            where.append("day >= ?")
            args.append(since.isoformat())
        condition = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._registry.query(
            f"SELECT day, consumer, service, version, host, {', '.join(COLUMNS)} FROM usage"
            + condition
            + " ORDER BY day, consumer, service, version, host",
            args,
        )
        # the terms of the hosts billed, in one query: not the whole fleet's
        hosts = self._registry.query(
            f"SELECT {HOST_COLUMNS} FROM hosts "
            f"WHERE address IN (SELECT DISTINCT host FROM usage{condition})",
            args,
        )
        terms = {h.address: h.terms for h in map(host_of, hosts)}
        bill = []
        for row in rows:
            key = Key(*(str(v) for v in row[:5]))
            tally = Tally(*row[5:])
            host_terms = terms.get(key.host)
            bill.append(
                BillRow(
                    key,
                    tally,
                    host_terms.price if host_terms else 0.0,
                    host_terms.price_gib if host_terms else 0.0,
                )
            )
        return bill
