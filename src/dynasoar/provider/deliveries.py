"""The Service Provider's store of asynchronous replies, a table of its own in the registry's
database (SQLite under ``--data``, or the shared PostgreSQL), so that no accepted message and
no reply is lost when the SP restarts. One row per message accepted with ``202``, or per
reply or fault on its way to a ReplyTo / FaultTo address::

    accepted ──> ready ──> sending ──> delivered
    (the message, │  ^          │
     in a phase)  │  └──────────┤ (retry later, with backoff)
                  └─(discarded) └──> undeliverable   (refused, or out of time: logged, counted)

A row ``accepted`` holds the consumer's message and the phase its processing reached; ``ready``
holds the reply to send and where. A delivered or undeliverable row keeps no message bytes;
the most recent of them are kept for the record, older ones pruned.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from dynasoar.errors import Busy, ReceiverError
from dynasoar.provider.database import Connection
from dynasoar.provider.registry import Registry

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, created REAL NOT NULL, deadline REAL NOT NULL,
    phase TEXT NOT NULL DEFAULT '', service TEXT NOT NULL DEFAULT '',
    consumer TEXT, preferred TEXT, message_id TEXT,
    request_head TEXT NOT NULL DEFAULT '[]', request BLOB,
    address TEXT, reply_head TEXT NOT NULL DEFAULT '[]', reply BLOB,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL DEFAULT 0,
    last_error TEXT, finished REAL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt);
"""
#: Columns added to the table after it was first created: (table, column, declaration).
MIGRATIONS: list[tuple[str, str, str]] = [
    # the SP instance working on the row: SPs sharing a registry take up only the rows of
    # instances no longer running
    ("deliveries", "owner", "TEXT NOT NULL DEFAULT ''"),
]

FINISHED = ("delivered", "undeliverable")
#: Messages and replies held at once, and their bytes; more are refused (dyn:Busy).
MAX_ROWS = 10_000
MAX_BYTES = 1 << 30
Head = list[tuple[str, str]]


@dataclass(frozen=True)
class Job:
    """A message accepted with 202, whose processing a restart resumes."""

    id: str
    phase: str
    service: str
    consumer: str | None
    preferred: frozenset[str] | None
    request_head: Head
    request: bytes
    created: float


@dataclass(frozen=True)
class Delivery:
    """A reply (or fault) to send to ``address``."""

    id: str
    address: str
    head: Head
    body: bytes
    attempts: int
    created: float
    deadline: float
    message_id: str | None


class DeliveryStore:
    def __init__(
        self,
        registry: Registry,
        retry_for: float,
        max_rows: int = MAX_ROWS,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self._registry = registry
        #: How long a reply is tried before it is given up, from when its message came.
        self.retry_for = retry_for
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        registry.adopt(SCHEMA, MIGRATIONS)

    def check_room(self) -> None:
        """dyn:Busy when the store holds its most: a row more would be unbounded."""
        rows, held = self.pending()
        if rows >= self._max_rows or held >= self._max_bytes:
            raise Busy(
                f"this Service Provider holds {rows} messages and replies ({held >> 20} MiB) "
                "for asynchronous delivery already, its most; retry later"
            )

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self._registry.transaction() as db:
                yield db
        except self._registry.errors as exc:
            raise ReceiverError(f"the Service Provider's reply store failed: {exc}") from exc

    # -- messages accepted with 202 ---------------------------------------------------------

    def accept(
        self,
        *,
        service: str,
        consumer: str | None,
        preferred: frozenset[str] | None,
        message_id: str | None,
        request_head: Head,
        request: bytes,
    ) -> str:
        job_id = str(uuid.uuid4())
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO deliveries (id, state, created, deadline, phase, service, consumer, "
                "preferred, message_id, request_head, request, owner) "
                "VALUES (?, 'accepted', ?, ?, 'accept', ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    now,
                    now + self.retry_for,
                    service,
                    consumer,
                    json.dumps(sorted(preferred)) if preferred is not None else None,
                    message_id,
                    json.dumps(request_head),
                    request,
                    self._registry.instance,
                ),
            )
        return job_id

    def reached(self, job_id: str, phase: str) -> None:
        """The accepted message's processing has reached ``phase`` (a restart resumes there)."""
        with self._tx() as db:
            db.execute(
                "UPDATE deliveries SET phase = ? WHERE id = ? AND state = 'accepted'",
                (phase, job_id),
            )

    def discard(self, job_id: str) -> None:
        """The message is done and nothing is to be sent (a reply to none, a one-way call)."""
        with self._tx() as db:
            db.execute("DELETE FROM deliveries WHERE id = ? AND state = 'accepted'", (job_id,))

    def _orphaned(self, rows: list[tuple[str, str]]) -> list[str]:
        """The ids of rows whose owner is no running SP (a stopped or crashed one)."""
        alive = self._registry.alive(sorted({owner for _, owner in rows if owner}))
        return [row_id for row_id, owner in rows if owner not in alive]

    def job_ids(self) -> list[str]:
        """Messages accepted whose processing has not finished and whose SP is not running
        (after a restart), oldest first."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT id, owner FROM deliveries WHERE state = 'accepted' ORDER BY created"
            ).fetchall()
        return self._orphaned([(str(r[0]), str(r[1] or "")) for r in rows])

    def job(self, job_id: str) -> Job | None:
        """One accepted message, bytes and all (read one at a time: they may be big), taken
        over by this SP (None if another took it first)."""
        with self._tx() as db:
            r = db.execute(
                "SELECT id, phase, service, consumer, preferred, request_head, request, created, "
                "owner FROM deliveries WHERE id = ? AND state = 'accepted'",
                (job_id,),
            ).fetchone()
            if r is None:
                return None
            taken = db.execute(
                "UPDATE deliveries SET owner = ? WHERE id = ? AND owner = ?",
                (self._registry.instance, job_id, r[8]),
            )
            if taken.rowcount != 1:
                return None
        return Job(
            str(r[0]),
            str(r[1]),
            str(r[2]),
            r[3],
            frozenset(json.loads(r[4])) if r[4] is not None else None,
            [(str(k), str(v)) for k, v in json.loads(r[5])],
            bytes(r[6] or b""),
            float(r[7]),
        )

    def pending(self) -> tuple[int, int]:
        """Rows not finished (messages in processing, replies not yet delivered) and the
        bytes they hold."""
        with self._tx() as db:
            return _pending(db)

    # -- replies to send --------------------------------------------------------------------

    def ready(
        self,
        job_id: str | None,
        *,
        address: str,
        head: Head,
        body: bytes,
        message_id: str | None,
    ) -> str:
        """A reply to send to ``address``: the accepted message's row turns into it (its
        message bytes dropped), or a new row for a message that was answered on its HTTP
        response but whose fault goes elsewhere (dyn:Busy if there is no room for it)."""
        now = time.time()
        with self._tx() as db:
            if job_id is not None:
                updated = db.execute(
                    "UPDATE deliveries SET state = 'ready', phase = 'reply', request = NULL, "
                    "address = ?, reply_head = ?, reply = ?, next_attempt = ? "
                    "WHERE id = ? AND state = 'accepted'",
                    (address, json.dumps(head), body, now, job_id),
                )
                if updated.rowcount == 1:
                    return job_id
            rows, held = _pending(db)
            if rows >= self._max_rows or held >= self._max_bytes:
                raise Busy(
                    f"this Service Provider holds {rows} replies ({held >> 20} MiB) for "
                    "asynchronous delivery already, its most"
                )
            delivery_id = str(uuid.uuid4())
            db.execute(
                "INSERT INTO deliveries (id, state, created, deadline, phase, message_id, "
                "address, reply_head, reply, next_attempt) "
                "VALUES (?, 'ready', ?, ?, 'reply', ?, ?, ?, ?, ?)",
                (
                    delivery_id,
                    now,
                    now + self.retry_for,
                    message_id,
                    address,
                    json.dumps(head),
                    body,
                    now,
                ),
            )
            return delivery_id

    def due(self, now: float, limit: int) -> list[Delivery]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT id, address, reply_head, reply, attempts, created, deadline, message_id "
                "FROM deliveries WHERE state = 'ready' AND next_attempt <= ? "
                "ORDER BY next_attempt LIMIT ?",
                (now, limit),
            ).fetchall()
        return [
            Delivery(
                str(r[0]),
                str(r[1]),
                [(str(k), str(v)) for k, v in json.loads(r[2])],
                bytes(r[3] or b""),
                int(r[4]),
                float(r[5]),
                float(r[6]),
                r[7],
            )
            for r in rows
        ]

    def next_due(self) -> float | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT MIN(next_attempt) FROM deliveries WHERE state = 'ready'"
            ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def claim(self, delivery_id: str) -> bool:
        """Take a ready delivery for one attempt (counted before it is made: an attempt cut
        short by a crash still counts). False when it is not ready (another took it)."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE deliveries SET state = 'sending', attempts = attempts + 1, owner = ? "
                "WHERE id = ? AND state = 'ready'",
                (self._registry.instance, delivery_id),
            )
            return cursor.rowcount == 1

    def delivered(self, delivery_id: str) -> None:
        self._finish(delivery_id, "delivered", None)

    def retry(self, delivery_id: str, at: float, error: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE deliveries SET state = 'ready', next_attempt = ?, last_error = ? "
                "WHERE id = ? AND state = 'sending'",
                (at, error, delivery_id),
            )

    def give_up(self, delivery_id: str, error: str) -> int:
        """Mark a delivery undeliverable; returns how many are, all told (the count kept)."""
        self._finish(delivery_id, "undeliverable", error)
        return self.counts().get("undeliverable", 0)

    def _finish(self, delivery_id: str, state: str, error: str | None) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE deliveries SET state = ?, finished = ?, last_error = COALESCE(?, "
                "last_error), reply = NULL, request = NULL WHERE id = ?",
                (state, time.time(), error, delivery_id),
            )

    def recover(self) -> int:
        """At start: attempts a stop cut short are tried again (a reply may then arrive twice;
        its MessageID stays the same, so a receiver can tell). Only those of SPs no longer
        running: another SP sharing the registry may be making its own right now."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT id, owner FROM deliveries WHERE state = 'sending'"
            ).fetchall()
        cut_short = self._orphaned([(str(r[0]), str(r[1] or "")) for r in rows])
        with self._tx() as db:
            for delivery_id in cut_short:
                db.execute(
                    "UPDATE deliveries SET state = 'ready', next_attempt = ? "
                    "WHERE id = ? AND state = 'sending'",
                    (time.time(), delivery_id),
                )
        return len(cut_short)

    def prune(self, keep: int) -> None:
        """Forget all but the ``keep`` most recently finished rows."""
        with self._tx() as db:
            db.execute(
                "DELETE FROM deliveries WHERE state IN (?, ?) AND id NOT IN (SELECT id FROM "
                "deliveries WHERE state IN (?, ?) ORDER BY finished DESC LIMIT ?)",
                (*FINISHED, *FINISHED, keep),
            )

    def counts(self) -> dict[str, int]:
        with self._tx() as db:
            rows = db.execute("SELECT state, COUNT(*) FROM deliveries GROUP BY state").fetchall()
        return {str(state): int(n) for state, n in rows}

    def state_of(self, delivery_id: str) -> tuple[str, int, str | None] | None:
        """(state, attempts, last error) of one row."""
        with self._tx() as db:
            row = db.execute(
                "SELECT state, attempts, last_error FROM deliveries WHERE id = ?", (delivery_id,)
            ).fetchone()
        return (str(row[0]), int(row[1]), row[2]) if row else None


def _pending(db: Connection) -> tuple[int, int]:
    row = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(LENGTH(request)), 0) + COALESCE(SUM(LENGTH(reply)), 0) "
        "FROM deliveries WHERE state NOT IN (?, ?)",
        FINISHED,
    ).fetchone()
    return int(row[0]), int(row[1])
