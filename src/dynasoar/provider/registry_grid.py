"""The registry's tables for a grid of SPs and hosts, beside its records (mixed into
:class:`~dynasoar.provider.registry.Registry`): package archives kept in the database for SPs
that share it but not a disk, hosts' heartbeat deadlines written in batches and read back by
the leader, which SP instances are alive (each holds a lock of its own while it runs), and how
busy each SP finds the deployments it relays to (:mod:`.peerload`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from dynasoar.provider.database import Database
from dynasoar.provider.records import HOST_COLUMNS, HostRecord, host_of, host_row, upsert

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
    db: Database
    instance: str

    def _announce(self, kind: str, key: str) -> None:
        raise NotImplementedError  # the registry's: tells the other SPs

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
        """This SP instance is alive for as long as its process (and its session) is."""
        self.db.try_lock(f"dynasoar:instance:{self.instance}")

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

    def end_move(self, deployment_id: str) -> None:
        with self.db.transaction() as db:
            db.execute("DELETE FROM moves WHERE deployment_id = ?", (deployment_id,))
        self._announce("move", deployment_id)

    def move_of(self, deployment_id: str) -> MoveRecord | None:
        rows = self.db.query(
            "SELECT deployment_id, service, target, instance, started FROM moves "
            "WHERE deployment_id = ?",
            (deployment_id,),
        )
        if not rows:
            return None
        deployment, service, target, instance, started = rows[0]
        return MoveRecord(str(deployment), str(service), str(target), str(instance), float(started))

    def undrained(self, deployment_id: str, since: float) -> list[str]:
        """The other SPs that relayed to ``deployment_id`` and have not yet said, since
        ``since`` (epoch s), that no message of theirs is at it (their instances)."""
        rows = self.db.query(
            "SELECT instance FROM deployment_load WHERE deployment_id = ? AND instance <> ? "
            "AND (written < ? OR outstanding > 0)",
            (deployment_id, self.instance, since),
        )
        return sorted(str(r[0]) for r in rows)
