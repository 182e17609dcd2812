"""The Service Provider's registry of services, hosts and deployments, kept in SQLite.

Reads on the message path come from memory (``deployments_of``); every change is written
through to the database first, so a restart sees what was there. One lock guards both.

A deployment is recorded before its host is asked for it, so that a crash leaves a trace::

    deploying ──> ready ──> lost     (a stateful one whose host was lost: it answers
        │           │         │       dyn:HostLost until redeployed, or until its host is
        └───────────┴─────────┴──>    seen again still running it)   (removed)
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dynasoar.images import CacheStats, ImageRef
from dynasoar.package import Placement
from dynasoar.terms import HostTerms

SCHEMA = """
CREATE TABLE IF NOT EXISTS services (
    name TEXT PRIMARY KEY, version TEXT NOT NULL, kind TEXT NOT NULL,
    stateless INTEGER NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
    published TEXT NOT NULL, package TEXT NOT NULL, wsdl BLOB NOT NULL,
    images TEXT NOT NULL DEFAULT '[]', placement TEXT NOT NULL DEFAULT '{}',
    require_signed INTEGER NOT NULL DEFAULT 0, call_timeout REAL
);
CREATE TABLE IF NOT EXISTS hosts (
    address TEXT PRIMARY KEY, state TEXT NOT NULL, capacity INTEGER NOT NULL,
    deployments INTEGER NOT NULL, load REAL NOT NULL, last_seen TEXT NOT NULL,
    cache_images INTEGER NOT NULL DEFAULT 0, cache_bytes INTEGER NOT NULL DEFAULT 0,
    cache_capacity INTEGER NOT NULL DEFAULT 0, cache_received INTEGER NOT NULL DEFAULT 0,
    terms TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY, service TEXT NOT NULL, version TEXT NOT NULL, host TEXT NOT NULL,
    endpoint TEXT NOT NULL, state TEXT NOT NULL, created TEXT NOT NULL, deployed_for TEXT,
    reason TEXT, changed TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS service_hosts (
    service TEXT NOT NULL, host TEXT NOT NULL, last_deployed TEXT NOT NULL,
    PRIMARY KEY (service, host)
);
"""
#: Hosts remembered per service as where its deployments ran (and their logs are), latest first.
SERVICE_HOSTS_KEPT = 16


SERVICE_COLUMNS = (
    "name, version, kind, stateless, sha256, size, published, package, wsdl, images, placement, "
    "require_signed, call_timeout"
)
HOST_COLUMNS = (
    "address, state, capacity, deployments, load, last_seen, "
    "cache_images, cache_bytes, cache_capacity, cache_received, terms"
)
#: Columns added after a table was first created: (table, column, declaration).
MIGRATIONS = [
    ("services", "images", "TEXT NOT NULL DEFAULT '[]'"),
    ("hosts", "cache_images", "INTEGER NOT NULL DEFAULT 0"),
    ("hosts", "cache_bytes", "INTEGER NOT NULL DEFAULT 0"),
    ("hosts", "cache_capacity", "INTEGER NOT NULL DEFAULT 0"),
    ("hosts", "cache_received", "INTEGER NOT NULL DEFAULT 0"),
    ("hosts", "terms", "TEXT NOT NULL DEFAULT '{}'"),
    ("services", "placement", "TEXT NOT NULL DEFAULT '{}'"),
    ("services", "require_signed", "INTEGER NOT NULL DEFAULT 0"),
    ("deployments", "deployed_for", "TEXT"),
    ("services", "call_timeout", "REAL"),
    ("deployments", "reason", "TEXT"),
    ("deployments", "changed", "TEXT"),
]
DEPLOYMENT_COLUMNS = (
    "id, service, version, host, endpoint, state, created, deployed_for, reason, changed"
)


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ServiceRecord:
    name: str
    version: str
    kind: str
    stateless: bool
    sha256: str
    size: int
    published: datetime
    package: str  # path of the archive in the repository
    wsdl: bytes
    images: tuple[ImageRef, ...] = ()  # a VM package's images, kept in the repository by digest
    placement: Placement = Placement()  # what its manifest asks of hosts
    require_signed: bool = False  # consumers' messages must be signed
    call_timeout: float | None = None  # seconds a message waits for a reply (None: SP default)


@dataclass(frozen=True)
class HostRecord:
    address: str
    #: "up"; "down" (stopped answering); "unknown" (named, not yet asked); "draining" (its
    #: deployments are moving away, it takes no new ones); "left" (deregistered)
    state: str
    capacity: int
    deployments: int
    load: float
    last_seen: datetime
    cache: CacheStats | None = None  # its VM image cache, as last reported
    terms: HostTerms = HostTerms()  # its price, sites and labels, as last reported


@dataclass(frozen=True)
class DeploymentRecord:
    id: str
    service: str
    version: str
    host: str
    endpoint: str  # "" while deploying
    state: str  # "deploying" | "ready" | "lost"
    created: datetime
    #: who its first message came from (a signed consumer's certificate subject), if known
    deployed_for: str | None = None
    #: why it is in its state (for "lost": what happened to its host)
    reason: str | None = None
    #: when it entered its state
    changed: datetime | None = None


class Registry:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._migrate()
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

    def _migrate(self) -> None:
        for table, column, declaration in MIGRATIONS:
            columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

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

    # -- services -------------------------------------------------------------------------

    def put_service(self, s: ServiceRecord) -> None:
        with self._tx() as db:
            db.execute(
                f"INSERT OR REPLACE INTO services ({SERVICE_COLUMNS}) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    s.name,
                    s.version,
                    s.kind,
                    int(s.stateless),
                    s.sha256,
                    s.size,
                    s.published.isoformat(),
                    s.package,
                    s.wsdl,
                    json.dumps([[i.name, i.sha256, i.size] for i in s.images]),
                    json.dumps(s.placement.to_json()),
                    int(s.require_signed),
                    s.call_timeout,
                ),
            )

    def service(self, name: str) -> ServiceRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {SERVICE_COLUMNS} FROM services WHERE name = ?", (name,)
            ).fetchone()
        return _service(row) if row else None

    def services(self) -> list[ServiceRecord]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {SERVICE_COLUMNS} FROM services ORDER BY name"
            ).fetchall()
        return [_service(r) for r in rows]

    # -- hosts ----------------------------------------------------------------------------

    def host_state(self, address: str) -> str | None:
        """ "up", "down", "unknown", or None for a host never registered (from memory)."""
        return self._host_states.get(address)

    def put_host(self, h: HostRecord) -> None:
        with self._tx() as db:
            self._host_states[h.address] = h.state
            db.execute(
                f"INSERT OR REPLACE INTO hosts ({HOST_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    h.address,
                    h.state,
                    h.capacity,
                    h.deployments,
                    h.load,
                    h.last_seen.isoformat(),
                    *_cache_columns(h.cache),
                    json.dumps(h.terms.to_json()),
                ),
            )

    def host(self, address: str) -> HostRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {HOST_COLUMNS} FROM hosts WHERE address = ?", (address,)
            ).fetchone()
        return _host(row) if row else None

    def hosts(self) -> list[HostRecord]:
        with self._lock:
            rows = self._db.execute(f"SELECT {HOST_COLUMNS} FROM hosts ORDER BY address").fetchall()
        return [_host(r) for r in rows]

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
                "VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    d.id,
                    d.service,
                    d.version,
                    d.host,
                    d.endpoint,
                    d.state,
                    d.created.isoformat(),
                    d.deployed_for,
                    d.reason,
                    d.changed.isoformat() if d.changed else None,
                ),
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
        return [
            DeploymentRecord(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                created=datetime.fromisoformat(r[6]),
                deployed_for=r[7],
                reason=r[8],
                changed=datetime.fromisoformat(r[9]) if r[9] else None,
            )
            for r in rows
        ]

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


def _service(r: Any) -> ServiceRecord:
    return ServiceRecord(
        name=str(r[0]),
        version=str(r[1]),
        kind=str(r[2]),
        stateless=bool(r[3]),
        sha256=str(r[4]),
        size=int(r[5]),
        published=datetime.fromisoformat(str(r[6])),
        package=str(r[7]),
        wsdl=bytes(r[8]),
        images=tuple(ImageRef(str(n), str(d), int(z)) for n, d, z in json.loads(r[9])),
        placement=Placement.from_json(json.loads(r[10])),
        require_signed=bool(r[11]),
        call_timeout=float(r[12]) if r[12] is not None else None,
    )


def _host(r: Any) -> HostRecord:
    return HostRecord(
        address=str(r[0]),
        state=str(r[1]),
        capacity=int(r[2]),
        deployments=int(r[3]),
        load=float(r[4]),
        last_seen=datetime.fromisoformat(str(r[5])),
        cache=CacheStats(int(r[6]), int(r[7]), int(r[8]), int(r[9])) if r[8] else None,
        terms=HostTerms.from_json(json.loads(r[10])),
    )


def _cache_columns(cache: CacheStats | None) -> tuple[int, int, int, int]:
    if cache is None:
        return (0, 0, 0, 0)
    return (cache.images, cache.bytes, cache.capacity, cache.received)
