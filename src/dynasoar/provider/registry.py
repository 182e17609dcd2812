"""The Service Provider's registry of services, hosts and deployments, kept in a database: an
SQLite file under ``--data`` (one SP), or a PostgreSQL database shared by several SPs
(``--registry postgresql://...``; :mod:`.database`, :mod:`.postgres`).

Reads on the message path come from memory (``deployments_of``); every change is written
through to the database first, so a restart sees what was there. One lock guards the memory.
With a shared database, every change is also announced to the other SPs, which read the
changed rows again (and everything, after they missed announcements).

A deployment is recorded before its host is asked for it, so that a crash leaves a trace::

    deploying ──> ready ──> lost     (a stateful one whose host was lost: it answers
        │           │         │       dyn:HostLost until redeployed, or until its host is
        └───────────┴─────────┴──>    seen again still running it)   (removed)
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

from dynasoar.provider.database import Connection, Database, open_database
from dynasoar.provider.records import (
    DEPLOYMENT_COLUMNS,
    HOST_COLUMNS,
    INDEXES,
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
    upsert,
)
from dynasoar.provider.registry_grid import GridTables, MoveRecord

__all__ = ["DeploymentRecord", "HostRecord", "Registry", "Route", "ServiceRecord", "Traffic", "now"]

log = logging.getLogger(__name__)


class Registry(GridTables):
    def __init__(self, where: Path | str | Database) -> None:
        #: This SP process (a new one each start): who is making a "deploying" deployment.
        self.instance = f"sp-{uuid.uuid4().hex[:16]}"
        self.db = where if isinstance(where, Database) else open_database(where, self.instance)
        #: Several SPs share this registry (their memory follows each other's changes).
        self.shared = self.db.shared
        self.db.script(SCHEMA)
        self._migrate()
        self.db.script(INDEXES)
        self._migrate_services()
        self._lock = threading.RLock()
        #: Every deployment record, and the ready ones, by service.
        self._records: dict[str, list[DeploymentRecord]] = {}
        self._ready: dict[str, list[DeploymentRecord]] = {}
        #: Host states, read on the message path: kept in memory too.
        self._host_states: dict[str, str] = {}
        #: Told the name of a service whose versions or route another SP changed.
        self.on_route_change: list[Callable[[str], None]] = []
        #: Told the address of a host another SP changed.
        self.on_host_change: list[Callable[[str], None]] = []
        #: Told a deployment another SP began moving (with its move) or ended moving (None).
        self.on_move_change: list[Callable[[str, MoveRecord | None], None]] = []
        #: Told every deployment record that goes, removed here or by another SP.
        self.on_deployment_gone: list[Callable[[DeploymentRecord], None]] = []
        self.reload()

    def reload(self) -> None:
        """Everything read again from the database (at start; after missed announcements)."""
        hosts = self.hosts()
        records = self._load_deployments()
        with self._lock:
            kept = {r.id for r in records}
            gone = [r for rs in self._records.values() for r in rs if r.id not in kept]
            self._host_states = {h.address: h.state for h in hosts}
            self._records, self._ready = {}, {}
            for record in records:
                self._index(record.service, [*self._records.get(record.service, []), record])
        self._gone(gone)

    def _gone(self, records: Sequence[DeploymentRecord]) -> None:
        for record in records:
            for callback in self.on_deployment_gone:
                callback(record)

    def _migrate(self, migrations: Sequence[tuple[str, str, str]] = MIGRATIONS) -> None:
        for table, column, declaration in migrations:
            self.db.add_column(table, column, declaration)

    def _migrate_services(self) -> None:
        # Before versions: one row per service, the version published last. Each becomes the
        # only version of its service, and takes all its traffic.
        if self.db.has_table("services"):
            with self.db.transaction() as db:
                db.execute(
                    f"INSERT INTO service_versions ({SERVICE_COLUMNS}) "
                    # (WHERE: SQLite reads ON CONFLICT after a bare SELECT as a join)
                    f"SELECT {SERVICE_COLUMNS} FROM services WHERE 1 = 1 ON CONFLICT DO NOTHING"
                )
                for name, version in db.execute("SELECT name, version FROM services").fetchall():
                    db.execute(
                        f"INSERT INTO routes ({ROUTE_COLUMNS}) VALUES (?,?,?,?) "
                        "ON CONFLICT DO NOTHING",
                        (name, traffic_text(((version, 100),)), "[]", now().isoformat()),
                    )
                db.execute("DROP TABLE services")

    def adopt(self, schema: str, migrations: Sequence[tuple[str, str, str]] = ()) -> None:
        """A table another module keeps in this database: created from its ``schema`` and
        brought up to date (``migrations``: columns added since) as the registry's own are."""
        self.db.script(schema)
        self._migrate(migrations)

    def transaction(self) -> AbstractContextManager[Connection]:
        """A write transaction, for the tables other modules keep."""
        return self.db.transaction()

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """The database driver's own errors (a constraint, say)."""
        return self.db.errors

    def close(self) -> None:
        self.db.close()

    def query(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        return self.db.query(sql, args)

    def _announce(self, kind: str, key: str) -> None:
        if self.shared:
            self.db.announce((kind, key))

    # -- services: their versions, and their routes -------------------------------------

    def put_version(self, s: ServiceRecord) -> None:
        """Keep a published version (one of the same name and version is replaced)."""
        with self.db.transaction() as db:
            db.execute(upsert("service_versions", SERVICE_COLUMNS, "name, version"), service_row(s))
        self._announce("route", s.name)

    def version(self, name: str, version: str) -> ServiceRecord | None:
        rows = self.db.query(
            f"SELECT {SERVICE_COLUMNS} FROM service_versions WHERE name = ? AND version = ?",
            (name, version),
        )
        return service_of(rows[0]) if rows else None

    def versions(self, name: str) -> list[ServiceRecord]:
        """A service's published versions, oldest first."""
        rows = self.db.query(
            f"SELECT {SERVICE_COLUMNS} FROM service_versions WHERE name = ? ORDER BY published",
            (name,),
        )
        return [service_of(r) for r in rows]

    def remove_version(self, name: str, version: str) -> None:
        with self.db.transaction() as db:
            db.execute(
                "DELETE FROM service_versions WHERE name = ? AND version = ?", (name, version)
            )
        self._announce("route", name)

    def remove_service(self, name: str) -> None:
        """Every version and the route of ``name`` (where it ran is remembered: its logs)."""
        with self.db.transaction() as db:
            db.execute("DELETE FROM service_versions WHERE name = ?", (name,))
            db.execute("DELETE FROM routes WHERE name = ?", (name,))
        self._announce("route", name)

    def route(self, name: str) -> Route | None:
        rows = self.db.query(f"SELECT {ROUTE_COLUMNS} FROM routes WHERE name = ?", (name,))
        return route_of(rows[0]) if rows else None

    def routes(self) -> list[Route]:
        rows = self.db.query(f"SELECT {ROUTE_COLUMNS} FROM routes ORDER BY name")
        return [route_of(r) for r in rows]

    def set_route(self, name: str, traffic: Traffic) -> Route:
        """Send ``name``'s messages to versions in these shares; the old shares are kept as
        ``previous`` (unless they are the same)."""
        with self.db.transaction() as db:
            row = db.execute("SELECT traffic, previous FROM routes WHERE name = ?", (name,))
            found = row.fetchone()
            previous = found[1] if found is not None else "[]"
            if found is not None and found[0] != traffic_text(traffic):
                previous = found[0]
            db.execute(
                upsert("routes", ROUTE_COLUMNS, "name"),
                (name, traffic_text(traffic), previous, now().isoformat()),
            )
        self._announce("route", name)
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

    def host_states(self) -> dict[str, str]:
        """Every host's state, from memory (no query: the fleet may be large)."""
        with self._lock:
            return dict(self._host_states)

    def put_host(self, h: HostRecord) -> None:
        with self.db.transaction() as db:
            db.execute(upsert("hosts", HOST_COLUMNS, "address"), host_row(h))
        before = self._host_states.get(h.address)
        self._host_states[h.address] = h.state
        if before != h.state:
            self._announce("host", h.address)

    def host(self, address: str) -> HostRecord | None:
        rows = self.db.query(f"SELECT {HOST_COLUMNS} FROM hosts WHERE address = ?", (address,))
        return host_of(rows[0]) if rows else None

    def hosts(self) -> list[HostRecord]:
        rows = self.db.query(f"SELECT {HOST_COLUMNS} FROM hosts ORDER BY address")
        return [host_of(r) for r in rows]

    def set_host_state(self, address: str, state: str) -> None:
        with self.db.transaction() as db:
            if state == "up":
                db.execute(
                    "UPDATE hosts SET state = ?, last_seen = ? WHERE address = ?",
                    (state, now().isoformat(), address),
                )
            else:
                db.execute("UPDATE hosts SET state = ? WHERE address = ?", (state, address))
        if address in self._host_states:
            self._host_states[address] = state
        self._announce("host", address)

    # -- deployments ----------------------------------------------------------------------

    def add_deployment(self, d: DeploymentRecord) -> None:
        """Record ``d``, or replace the record of the same id (a change of state)."""
        with self.db.transaction() as db:
            db.execute(upsert("deployments", DEPLOYMENT_COLUMNS, "id"), deployment_row(d))
        self._remember(d)
        self._announce("deployment", d.id)

    def set_state(self, deployment_id: str, state: str, reason: str | None) -> DeploymentRecord:
        """Move a recorded deployment to ``state`` (KeyError if it is not recorded)."""
        record = self.deployment(deployment_id)
        if record is None:
            raise KeyError(deployment_id)
        changed = replace(record, state=state, reason=reason, changed=now())
        if state in ("deploying", "retiring"):  # under way here: no leftover while this SP runs
            changed = replace(changed, deployer=self.instance)
        # An update, not an upsert: a record another SP removed meanwhile (a move's source,
        # say) stays removed, whatever this SP's memory still holds.
        with self.db.transaction() as db:
            updated = db.execute(
                "UPDATE deployments SET state = ?, reason = ?, changed = ?, deployer = ? "
                "WHERE id = ?",
                (
                    state,
                    reason,
                    changed.changed.isoformat() if changed.changed else None,
                    changed.deployer,
                    deployment_id,
                ),
            ).rowcount
        if not updated:
            self.refresh_deployment(deployment_id)
            raise KeyError(deployment_id)
        self._remember(changed)
        self._announce("deployment", deployment_id)
        return changed

    def remove_deployment(self, deployment_id: str) -> DeploymentRecord | None:
        with self.db.transaction() as db:
            db.execute("DELETE FROM deployments WHERE id = ?", (deployment_id,))
        self._announce("deployment", deployment_id)
        with self._lock:
            found = next(
                ((s, r) for s, rs in self._records.items() for r in rs if r.id == deployment_id),
                None,
            )
            if found is not None:
                service, record = found
                self._index(service, [r for r in self._records[service] if r is not record])
        if found is None:
            return None
        self._gone([found[1]])
        return found[1]

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

    def _remember(self, record: DeploymentRecord) -> None:
        """``record`` in memory, in place of the record of the same id."""
        with self._lock:
            current = [r for r in self._records.get(record.service, []) if r.id != record.id]
            self._index(record.service, [*current, record])

    def _index(self, service: str, records: list[DeploymentRecord]) -> None:
        self._records[service] = records
        self._ready[service] = [r for r in records if r.state == "ready"]

    # -- where services ran (their logs stay there) -------------------------------------

    def note_service_host(self, service: str, host: str) -> None:
        """``host`` is where a deployment of ``service`` is being made (kept after it ends)."""
        with self.db.transaction() as db:
            db.execute(
                upsert("service_hosts", "service, host, last_deployed", "service, host"),
                (service, host, now().isoformat()),
            )
            db.execute(
                "DELETE FROM service_hosts WHERE service = ? AND host NOT IN (SELECT host FROM "
                "service_hosts WHERE service = ? ORDER BY last_deployed DESC LIMIT ?)",
                (service, service, SERVICE_HOSTS_KEPT),
            )

    def service_hosts(self, service: str) -> list[str]:
        """The hosts ``service`` was last deployed on, latest first."""
        rows = self.db.query(
            "SELECT host FROM service_hosts WHERE service = ? ORDER BY last_deployed DESC",
            (service,),
        )
        return [str(r[0]) for r in rows]

    def _load_deployments(self) -> list[DeploymentRecord]:
        rows = self.db.query(f"SELECT {DEPLOYMENT_COLUMNS} FROM deployments ORDER BY created")
        return [deployment_of(r) for r in rows]

    # -- this registry's identity ---------------------------------------------------------

    def identity(self) -> str:
        """A name for the Service Provider this registry belongs to, made once and kept: hosts
        are told it with every Deploy, so that what they run for it can be told apart."""
        with self.db.transaction() as db:
            value = f"urn:uuid:{uuid.uuid4()}"
            # SPs sharing a registry share its identity: the first to ask makes it.
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('identity', ?) ON CONFLICT DO NOTHING",
                (value,),
            )
            row = db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
            return str(row[0])
