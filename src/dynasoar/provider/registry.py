"""The Service Provider's registry of services, hosts and deployments, kept in SQLite.

Reads on the message path come from memory (``deployments_of``); every change is written
through to the database first, so a restart sees what was there. One lock guards both.

A deployment is recorded before its host is asked for it, so that a crash leaves a trace::

    deploying ──> ready ──> lost     (a stateful one whose host was lost: it answers
        │           │         │       dyn:HostLost until redeployed, or until its host is
        └───────────┴─────────┴──>    seen again still running it)   (removed)
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from dynasoar.provider.records import (
    DEPLOYMENT_COLUMNS,
    HOST_COLUMNS,
    MIGRATIONS,
    ROUTE_COLUMNS,
    SCHEMA,
    SERVICE_COLUMNS,
    SERVICE_HOSTS_KEPT,
    DeploymentRecord,
    HostRecord,
    Route,
    ServiceRecord,
    Traffic,
    deployment_of,
    deployment_row,
    host_of,
    host_row,
    now,
    route_of,
    service_of,
    service_row,
    traffic_text,
)

__all__ = ["DeploymentRecord", "HostRecord", "Registry", "Route", "ServiceRecord", "Traffic", "now"]


class Registry:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._migrate()
        self._migrate_services()
        self._lock = threading.Lock()
        #: Every deployment record, and the ready ones, by service.
        self._records: dict[str, list[DeploymentRecord]] = {}
        self._ready: dict[str, list[DeploymentRecord]] = {}
        #: Host states, read on the message path: kept in memory too.
        self._host_states: dict[str, str] = {}
        for host in self.hosts():
            self._host_states[host.address] = host.state
        for record in self._load_deployments():
            self._index(record.service, [*self._records.get(record.service, []), record])

    def _migrate(self, migrations: Sequence[tuple[str, str, str]] = MIGRATIONS) -> None:
        for table, column, declaration in migrations:
            columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if columns and column not in columns:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    def _migrate_services(self) -> None:
        # Before versions: one row per service, the version published last. Each becomes the
        # only version of its service, and takes all its traffic.
        legacy = self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'services'"
        ).fetchone()
        if legacy is not None:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                f"INSERT OR IGNORE INTO service_versions ({SERVICE_COLUMNS}) "
                f"SELECT {SERVICE_COLUMNS} FROM services"
            )
            for name, version in self._db.execute("SELECT name, version FROM services").fetchall():
                self._db.execute(
                    f"INSERT OR IGNORE INTO routes ({ROUTE_COLUMNS}) VALUES (?,?,?,?)",
                    (name, traffic_text(((version, 100),)), "[]", now().isoformat()),
                )
            self._db.execute("DROP TABLE services")
            self._db.execute("COMMIT")

    def adopt(self, schema: str, migrations: Sequence[tuple[str, str, str]] = ()) -> None:
        """A table another module keeps in this database: created from its ``schema`` and
        brought up to date (``migrations``: columns added since) as the registry's own are."""
        with self._lock:
            self._db.executescript(schema)
            self._migrate(migrations)

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction under the registry's lock, for the tables other modules keep."""
        return self._tx()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def query(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- services: their versions, and their routes -------------------------------------

    def put_version(self, s: ServiceRecord) -> None:
        """Keep a published version (one of the same name and version is replaced)."""
        with self._tx() as db:
            db.execute(
                f"INSERT OR REPLACE INTO service_versions ({SERVICE_COLUMNS}) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                service_row(s),
            )

    def version(self, name: str, version: str) -> ServiceRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {SERVICE_COLUMNS} FROM service_versions WHERE name = ? AND version = ?",
                (name, version),
            ).fetchone()
        return service_of(row) if row else None

    def versions(self, name: str) -> list[ServiceRecord]:
        """A service's published versions, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {SERVICE_COLUMNS} FROM service_versions WHERE name = ? ORDER BY published",
                (name,),
            ).fetchall()
        return [service_of(r) for r in rows]

    def remove_version(self, name: str, version: str) -> None:
        with self._tx() as db:
            db.execute(
                "DELETE FROM service_versions WHERE name = ? AND version = ?", (name, version)
            )

    def remove_service(self, name: str) -> None:
        """Every version and the route of ``name`` (where it ran is remembered: its logs)."""
        with self._tx() as db:
            db.execute("DELETE FROM service_versions WHERE name = ?", (name,))
            db.execute("DELETE FROM routes WHERE name = ?", (name,))

    def route(self, name: str) -> Route | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {ROUTE_COLUMNS} FROM routes WHERE name = ?", (name,)
            ).fetchone()
        return route_of(row) if row else None

    def routes(self) -> list[Route]:
        with self._lock:
            rows = self._db.execute(f"SELECT {ROUTE_COLUMNS} FROM routes ORDER BY name").fetchall()
        return [route_of(r) for r in rows]

    def set_route(self, name: str, traffic: Traffic) -> Route:
        """Send ``name``'s messages to versions in these shares; the old shares are kept as
        ``previous`` (unless they are the same)."""
        with self._tx() as db:
            row = db.execute("SELECT traffic, previous FROM routes WHERE name = ?", (name,))
            found = row.fetchone()
            previous = found[1] if found is not None else "[]"
            if found is not None and found[0] != traffic_text(traffic):
                previous = found[0]
            db.execute(
                f"INSERT OR REPLACE INTO routes ({ROUTE_COLUMNS}) VALUES (?,?,?,?)",
                (name, traffic_text(traffic), previous, now().isoformat()),
            )
        route = self.route(name)
        assert route is not None
        return route

    def service(self, name: str) -> ServiceRecord | None:
        """The version of ``name`` its route gives the largest share (the advertised one)."""
        route = self.route(name)
        return self.version(name, route.primary) if route is not None else None

    def services(self) -> list[ServiceRecord]:
        found = [self.version(r.service, r.primary) for r in self.routes()]
        return [s for s in found if s is not None]

    # -- hosts ----------------------------------------------------------------------------

    def host_state(self, address: str) -> str | None:
        """ "up", "down", "unknown", or None for a host never registered (from memory)."""
        return self._host_states.get(address)

    def put_host(self, h: HostRecord) -> None:
        with self._tx() as db:
            self._host_states[h.address] = h.state
            db.execute(
                f"INSERT OR REPLACE INTO hosts ({HOST_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                host_row(h),
            )

    def host(self, address: str) -> HostRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {HOST_COLUMNS} FROM hosts WHERE address = ?", (address,)
            ).fetchone()
        return host_of(row) if row else None

    def hosts(self) -> list[HostRecord]:
        with self._lock:
            rows = self._db.execute(f"SELECT {HOST_COLUMNS} FROM hosts ORDER BY address").fetchall()
        return [host_of(r) for r in rows]

    def set_host_state(self, address: str, state: str) -> None:
        with self._tx() as db:
            if address in self._host_states:
                self._host_states[address] = state
            if state == "up":
                db.execute(
                    "UPDATE hosts SET state = ?, last_seen = ? WHERE address = ?",
                    (state, now().isoformat(), address),
                )
            else:
                db.execute("UPDATE hosts SET state = ? WHERE address = ?", (state, address))

    # -- deployments ----------------------------------------------------------------------

    def add_deployment(self, d: DeploymentRecord) -> None:
        """Record ``d``, or replace the record of the same id (a change of state)."""
        with self._tx() as db:
            db.execute(
                f"INSERT OR REPLACE INTO deployments ({DEPLOYMENT_COLUMNS}) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                deployment_row(d),
            )
            current = [x for x in self._records.get(d.service, []) if x.id != d.id]
            self._index(d.service, [*current, d])

    def set_state(self, deployment_id: str, state: str, reason: str | None) -> DeploymentRecord:
        """Move a recorded deployment to ``state`` (KeyError if it is not recorded)."""
        record = self.deployment(deployment_id)
        if record is None:
            raise KeyError(deployment_id)
        changed = replace(record, state=state, reason=reason, changed=now())
        self.add_deployment(changed)
        return changed

    def remove_deployment(self, deployment_id: str) -> DeploymentRecord | None:
        with self._tx() as db:
            db.execute("DELETE FROM deployments WHERE id = ?", (deployment_id,))
            for service, records in self._records.items():
                for record in records:
                    if record.id == deployment_id:
                        self._index(service, [r for r in records if r is not record])
                        return record
        return None

    def deployment(self, deployment_id: str) -> DeploymentRecord | None:
        with self._lock:
            return next(
                (r for rs in self._records.values() for r in rs if r.id == deployment_id), None
            )

    def deployments_of(self, service: str) -> list[DeploymentRecord]:
        """The service's ready deployments, from memory (the message path reads this)."""
        return self._ready.get(service, [])

    def records_of(self, service: str) -> list[DeploymentRecord]:
        """All the service's deployment records, whatever their state."""
        return self._records.get(service, [])

    def deployments(self) -> list[DeploymentRecord]:
        """Every deployment record, whatever its state."""
        with self._lock:
            return sorted(
                (d for records in self._records.values() for d in records),
                key=lambda d: (d.service, d.created),
            )

    def _index(self, service: str, records: list[DeploymentRecord]) -> None:
        self._records[service] = records
        self._ready[service] = [r for r in records if r.state == "ready"]

    # -- where services ran (their logs stay there) -------------------------------------

    def note_service_host(self, service: str, host: str) -> None:
        """``host`` is where a deployment of ``service`` is being made (kept after it ends)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO service_hosts (service, host, last_deployed) "
                "VALUES (?,?,?)",
                (service, host, now().isoformat()),
            )
            db.execute(
                "DELETE FROM service_hosts WHERE service = ? AND host NOT IN (SELECT host FROM "
                "service_hosts WHERE service = ? ORDER BY last_deployed DESC LIMIT ?)",
                (service, service, SERVICE_HOSTS_KEPT),
            )

    def service_hosts(self, service: str) -> list[str]:
        """The hosts ``service`` was last deployed on, latest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT host FROM service_hosts WHERE service = ? ORDER BY last_deployed DESC",
                (service,),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def _load_deployments(self) -> list[DeploymentRecord]:
        rows = self._db.execute(
            f"SELECT {DEPLOYMENT_COLUMNS} FROM deployments ORDER BY created"
        ).fetchall()
        return [deployment_of(r) for r in rows]

    # -- this registry's identity ---------------------------------------------------------

    def identity(self) -> str:
        """A name for the Service Provider this registry belongs to, made once and kept: hosts
        are told it with every Deploy, so that what they run for it can be told apart."""
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
            if row is not None:
                return str(row[0])
            value = f"urn:uuid:{uuid.uuid4()}"
            db.execute("INSERT INTO meta (key, value) VALUES ('identity', ?)", (value,))
            return value
