"""The Service Provider's registry of services, hosts and deployments, kept in SQLite.

Reads on the message path come from memory (``deployments_of``); every change is written
through to the database first, so a restart sees what was there. One lock guards both.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
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
    require_signed INTEGER NOT NULL DEFAULT 0
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
    endpoint TEXT NOT NULL, state TEXT NOT NULL, created TEXT NOT NULL, deployed_for TEXT
);
"""


SERVICE_COLUMNS = (
    "name, version, kind, stateless, sha256, size, published, package, wsdl, images, placement, "
    "require_signed"
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
]
DEPLOYMENT_COLUMNS = "id, service, version, host, endpoint, state, created, deployed_for"


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


@dataclass(frozen=True)
class HostRecord:
    address: str
    state: str  # "up" | "down" | "unknown"
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
    endpoint: str
    state: str  # "ready"
    created: datetime
    #: who its first message came from (a signed consumer's certificate subject), if known
    deployed_for: str | None = None


class Registry:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._migrate()
        self._lock = threading.Lock()
        self._deployments: dict[str, list[DeploymentRecord]] = {}
        #: Host states, read on the message path: kept in memory too.
        self._host_states: dict[str, str] = {}
        for host in self.hosts():
            self._host_states[host.address] = host.state
        for record in self._load_deployments():
            self._deployments.setdefault(record.service, []).append(record)

    def _migrate(self, migrations: Sequence[tuple[str, str, str]] = MIGRATIONS) -> None:
        for table, column, declaration in migrations:
            columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

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
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
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
        with self._tx() as db:
            db.execute(
                f"INSERT OR REPLACE INTO deployments ({DEPLOYMENT_COLUMNS}) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (
                    d.id,
                    d.service,
                    d.version,
                    d.host,
                    d.endpoint,
                    d.state,
                    d.created.isoformat(),
                    d.deployed_for,
                ),
            )
            current = [x for x in self._deployments.get(d.service, []) if x.id != d.id]
            self._deployments[d.service] = [*current, d]

    def remove_deployment(self, deployment_id: str) -> DeploymentRecord | None:
        with self._tx() as db:
            db.execute("DELETE FROM deployments WHERE id = ?", (deployment_id,))
            for service, records in self._deployments.items():
                for record in records:
                    if record.id == deployment_id:
                        self._deployments[service] = [r for r in records if r is not record]
                        return record
        return None

    def deployments_of(self, service: str) -> list[DeploymentRecord]:
        """The service's deployments, from memory (the message path reads this)."""
        return self._deployments.get(service, [])

    def deployments(self) -> list[DeploymentRecord]:
        with self._lock:
            return sorted(
                (d for records in self._deployments.values() for d in records),
                key=lambda d: (d.service, d.created),
            )

    def _load_deployments(self) -> list[DeploymentRecord]:
        rows = self._db.execute(
            f"SELECT {DEPLOYMENT_COLUMNS} FROM deployments ORDER BY created"
        ).fetchall()
        return [
            DeploymentRecord(r[0], r[1], r[2], r[3], r[4], r[5], datetime.fromisoformat(r[6]), r[7])
            for r in rows
        ]


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
