"""The registry's tables for a grid of SPs and hosts, beside its records (mixed into
:class:`~dynasoar.provider.registry.Registry`): package archives kept in the database for SPs
that share it but not a disk, hosts' heartbeat deadlines written in batches and read back by
the leader, which SP instances are alive (each holds a lock of its own while it runs), how
busy each SP finds the deployments it relays to (:mod:`.peerload`), the moves under way
(:mod:`.move_watch`); and following what the other SPs change (their announcements)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from dynasoar.provider.database import Change, Database
from dynasoar.provider.records import (
    DEPLOYMENT_COLUMNS,
    HOST_COLUMNS,
    DeploymentRecord,
    HostRecord,
    Route,
    deployment_of,
    host_of,
    host_row,
    upsert,
)

log = logging.getLogger(__name__)

#: What one SP relays to one deployment: (id, messages in flight, last message, epoch s).
Activity = tuple[str, int, float]


@dataclass(frozen=True)
class MoveRecord:
    """A deployment some SP is moving: new messages for it wait at every SP until it ends."""

    deployment_id: str
    service: str
    target: str
    instance: str  # the SP moving it
    started: float  # epoch seconds


#: A host's figures (its columns after address and state), as ``UPDATE ... SET`` assigns them.
FIGURES = ", ".join(f"{c.strip()} = ?" for c in HOST_COLUMNS.split(",")[2:])


class GridTables:
    """The registry's grid half; what it uses of the other half is declared here."""

    db: Database
    instance: str
    shared: bool
    _lock: threading.RLock
    _records: dict[str, list[DeploymentRecord]]
    _host_states: dict[str, str]
    on_route_change: list[Callable[[str], None]]
    on_host_change: list[Callable[[str], None]]
    on_move_change: list[Callable[[str, MoveRecord | None], None]]

    def _announce(self, kind: str, key: str) -> None:
        raise NotImplementedError  # the registry's: tells the other SPs

    def _index(self, service: str, records: list[DeploymentRecord]) -> None:
        raise NotImplementedError

    def _remember(self, record: DeploymentRecord) -> None:
        raise NotImplementedError

    def _gone(self, records: Sequence[DeploymentRecord]) -> None:
        raise NotImplementedError  # the registry's: tells on_deployment_gone

    def reload(self) -> None:
        raise NotImplementedError

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def host(self, address: str) -> HostRecord | None:
        raise NotImplementedError

    # -- what other SPs changed ------------------------------------------------------------

    def follow(self) -> None:
        """Keep this SP's memory in step with the others' changes (a shared registry)."""
        if self.shared:
            self.db.listen(self._changed)

    def _changed(self, change: Change | None) -> None:
        """Another SP changed something (called from the listening thread)."""
        try:
            if change is None:
                self.reload()
                names = [r.service for r in self.routes()]
                for name in names:
                    for callback in self.on_route_change:
                        callback(name)
                return
            kind, key = change
            if kind == "deployment":
                self.refresh_deployment(key)
            elif kind == "service":
                self.refresh_service(key)
            elif kind == "route":
                for callback in self.on_route_change:
                    callback(key)
            elif kind == "move":
                move = self.move_of(key)
                for on_move in self.on_move_change:
                    on_move(key, move)
            elif kind == "host":
                host = self.host(key)
                with self._lock:
                    if host is None:
                        self._host_states.pop(key, None)
                    else:
                        self._host_states[key] = host.state
                for on_host in self.on_host_change:
                    on_host(key)
        except Exception as exc:  # the next announcement, or the next reload, brings it
            log.warning("following the registry's change %s: %s", change, exc)

    def refresh_deployment(self, deployment_id: str) -> None:
        """One deployment's record read again (another SP changed it)."""
        rows = self.db.query(
            f"SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = ?", (deployment_id,)
        )
        gone = []
        with self._lock:
            found = deployment_of(rows[0]) if rows else None
            for service, records in list(self._records.items()):
                if any(r.id == deployment_id for r in records) and (
                    found is None or found.service != service
                ):
                    gone += [r for r in records if r.id == deployment_id and found is None]
                    self._index(service, [r for r in records if r.id != deployment_id])
            if found is not None:
                self._remember(found)
        self._gone(gone)

    def refresh_service(self, service: str) -> None:
        """A service's deployment records read again (before deciding to deploy it)."""
        if not self.shared:
            return
        rows = self.db.query(
            f"SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE service = ? ORDER BY created",
            (service,),
        )
        with self._lock:
            self._index(service, [deployment_of(r) for r in rows])


    # -- package archives, for SPs that share this registry but not a disk ------------------

    def put_package(self, sha256: str, content: bytes) -> None:
        with self.db.transaction() as db:
            db.execute(upsert("package_blobs", "sha256, content", "sha256"), (sha256, content))

    def package(self, sha256: str) -> bytes | None:
        rows = self.db.query("SELECT content FROM package_blobs WHERE sha256 = ?", (sha256,))
        return bytes(rows[0][0]) if rows else None

    def remove_package(self, sha256: str) -> None:
        with self.db.transaction() as db:
            db.execute("DELETE FROM package_blobs WHERE sha256 = ?", (sha256,))

    # -- heartbeats, and the SP instances alive ----------------------------------------------

    def note_beats(self, beats: Sequence[tuple[str, float, HostRecord | None]]) -> None:
        """Hosts heard from: (address, when its next beat is overdue, in epoch seconds, its
        figures as it reported them or None). One transaction for a batch of them."""
        if not beats:
            return
        with self.db.transaction() as db:
            db.executemany(
                "UPDATE hosts SET beat_deadline = ? WHERE address = ? AND beat_deadline < ?",
                [(deadline, address, deadline) for address, deadline, _ in beats],
            )
            # A beat's figures, never its state: that changes at once (registry.put_host), and
            # a beat heard before a DeregisterHost must not bring the host back with this batch.
            figures = [(*host_row(h)[2:], h.address) for _, _, h in beats if h is not None]
            if figures:
                db.executemany(
                    f"UPDATE hosts SET {FIGURES} WHERE address = ? AND state IN ('up', 'draining')",
                    figures,
                )

    def hosts_seen_since(self, since: datetime) -> list[HostRecord]:
        """The hosts heard from at ``since`` or later (by any SP: their beats' batches)."""
        rows = self.db.query(
            f"SELECT {HOST_COLUMNS} FROM hosts WHERE last_seen >= ?", (since.isoformat(),)
        )
        return [host_of(r) for r in rows]

    def overdue(self, at: float) -> list[tuple[str, float]]:
        """Hosts up (or draining) whose heartbeat is overdue at ``at`` (epoch seconds), with
        the deadline they missed. Hosts that never promised a beat (deadline 0) are not."""
        rows = self.db.query(
            "SELECT address, beat_deadline FROM hosts WHERE beat_deadline > 0 "
            "AND beat_deadline < ? AND state IN ('up', 'draining')",
            (at,),
        )
        return [(str(r[0]), float(r[1])) for r in rows]

    def alive(self, instances: Sequence[str]) -> set[str]:
        """Which of these SP instances are running (each holds its own lock while it does)."""
        held = self.db.held([f"dynasoar:instance:{i}" for i in instances if i])
        return {name.rpartition(":")[2] for name in held}

    def hold_instance(self) -> None:
        """This SP instance is alive for as long as its process is: the lock goes with its
        session, so it is taken again, at each of the SP's looks, when the session was lost
        (the registry restarted). Else the others would take a running SP for dead: settle
        its moves, take over its replies."""
        name = f"dynasoar:instance:{self.instance}"
        if not self.db.holds(name):
            self.db.try_lock(name)

    # -- how busy each SP finds the deployments ------------------------------------------------

    def share_load(self, activity: Sequence[Activity], at: float) -> None:
        """This SP's counts of the deployments it relays to (written at ``at``, epoch s)."""
        if not activity:
            return
        with self.db.transaction() as db:
            db.executemany(
                upsert(
                    "deployment_load",
                    "instance, deployment_id, outstanding, last_used, written",
                    "instance, deployment_id",
                ),
                [(self.instance, d, n, used, at) for d, n, used in activity],
            )

    def peer_load(self, fresh_since: float) -> dict[str, tuple[int, float]]:
        """The other SPs' counts, per deployment: messages in flight (from counts written
        since ``fresh_since``: an SP that stopped writing is not counted) and the last
        message any of them relayed."""
        rows = self.db.query(
            "SELECT deployment_id, "
            "SUM(CASE WHEN written >= ? THEN outstanding ELSE 0 END), MAX(last_used) "
            "FROM deployment_load WHERE instance <> ? GROUP BY deployment_id",
            (fresh_since, self.instance),
        )
        return {str(r[0]): (int(r[1] or 0), float(r[2])) for r in rows}

    def prune_load(self) -> None:
        """Forget the counts of deployments that are no more."""
        with self.db.transaction() as db:
            db.execute(
                "DELETE FROM deployment_load "
                "WHERE deployment_id NOT IN (SELECT id FROM deployments)"
            )

    # -- moves under way, for every SP to hold messages for them --------------------------------

    def begin_move(self, deployment_id: str, service: str, target: str) -> MoveRecord:
        move = MoveRecord(deployment_id, service, target, self.instance, time.time())
        with self.db.transaction() as db:
            db.execute(
                upsert(
                    "moves", "deployment_id, service, target, instance, started", "deployment_id"
                ),
                (move.deployment_id, move.service, move.target, move.instance, move.started),
            )
        self._announce("move", deployment_id)
        return move

    def end_move(self, deployment_id: str, of: str | None = None) -> bool:
        """The move's record deleted (only if SP instance ``of`` made it, when given);
        whether this call deleted it."""
        sql, args = "DELETE FROM moves WHERE deployment_id = ?", [deployment_id]
        if of is not None:
            sql, args = sql + " AND instance = ?", [deployment_id, of]
        with self.db.transaction() as db:
            deleted = db.execute(sql, args).rowcount > 0
        self._announce("move", deployment_id)
        return deleted

    def move_of(self, deployment_id: str) -> MoveRecord | None:
        moves = self._moves("WHERE deployment_id = ?", (deployment_id,))
        return moves[0] if moves else None

    def moves(self) -> list[MoveRecord]:
        """Every move recorded (under way, or left by an SP that stopped mid-move)."""
        return self._moves()

    def _moves(self, where: str = "", args: tuple[str, ...] = ()) -> list[MoveRecord]:
        rows = self.db.query(
            f"SELECT deployment_id, service, target, instance, started FROM moves {where}", args
        )
        return [
            MoveRecord(str(deployment), str(service), str(target), str(instance), float(started))
            for deployment, service, target, instance, started in rows
        ]

    def undrained(self, deployment_id: str, since: float) -> list[str]:
        """The other SPs that relayed to ``deployment_id`` and have not yet said, since
        ``since`` (epoch s), that no message of theirs is at it (their instances)."""
        rows = self.db.query(
            "SELECT instance FROM deployment_load WHERE deployment_id = ? AND instance <> ? "
            "AND (written < ? OR outstanding > 0)",
            (deployment_id, self.instance, since),
        )
        return sorted(str(r[0]) for r in rows)
