"""The registry's records (services and their versions, routes, hosts, deployments), the schema
that keeps them (SQLite's or PostgreSQL's: :mod:`.database` translates its types), and the
codecs between the two (rows <-> records). Pure data: :mod:`.registry` stores them.

A service is published in versions (each a package, by digest); its route says which versions
take its messages, and in what shares (a rollout moves the whole share, a canary splits it)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dynasoar.images import CacheStats, ImageRef
from dynasoar.package import Placement
from dynasoar.snapshots import SnapshotStats
from dynasoar.terms import HostTerms

SCHEMA = """
CREATE TABLE IF NOT EXISTS service_versions (
    name TEXT NOT NULL, version TEXT NOT NULL, kind TEXT NOT NULL,
    stateless INTEGER NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
    published TEXT NOT NULL, package TEXT NOT NULL, wsdl BLOB NOT NULL,
    images TEXT NOT NULL DEFAULT '[]', placement TEXT NOT NULL DEFAULT '{}',
    require_signed INTEGER NOT NULL DEFAULT 0, call_timeout REAL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS routes (
    name TEXT PRIMARY KEY, traffic TEXT NOT NULL, previous TEXT NOT NULL DEFAULT '[]',
    changed TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hosts (
    address TEXT PRIMARY KEY, state TEXT NOT NULL, capacity INTEGER NOT NULL,
    deployments INTEGER NOT NULL, load REAL NOT NULL, last_seen TEXT NOT NULL,
    cache_images INTEGER NOT NULL DEFAULT 0, cache_bytes INTEGER NOT NULL DEFAULT 0,
    cache_capacity INTEGER NOT NULL DEFAULT 0, cache_received INTEGER NOT NULL DEFAULT 0,
    terms TEXT NOT NULL DEFAULT '{}', beat_deadline REAL NOT NULL DEFAULT 0,
    snapshots TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY, service TEXT NOT NULL, version TEXT NOT NULL, host TEXT NOT NULL,
    endpoint TEXT NOT NULL, state TEXT NOT NULL, created TEXT NOT NULL, deployed_for TEXT,
    reason TEXT, changed TEXT, sha256 TEXT NOT NULL DEFAULT '', deployer TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS usage (
    day TEXT NOT NULL, consumer TEXT NOT NULL, service TEXT NOT NULL, version TEXT NOT NULL,
    host TEXT NOT NULL, messages INTEGER NOT NULL DEFAULT 0, bytes_in INTEGER NOT NULL DEFAULT 0,
    bytes_out INTEGER NOT NULL DEFAULT 0, wall_seconds REAL NOT NULL DEFAULT 0,
    cpu_seconds REAL NOT NULL DEFAULT 0, memory_gib_seconds REAL NOT NULL DEFAULT 0,
    image_bytes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, consumer, service, version, host)
);
CREATE TABLE IF NOT EXISTS deployment_usage (
    id TEXT PRIMARY KEY, service TEXT NOT NULL, version TEXT NOT NULL, host TEXT NOT NULL,
    consumer TEXT NOT NULL, cpu_seconds REAL NOT NULL, memory_gib_seconds REAL NOT NULL,
    image_bytes INTEGER NOT NULL, updated TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deployment_usage_host ON deployment_usage (host, updated);
CREATE TABLE IF NOT EXISTS service_hosts (
    service TEXT NOT NULL, host TEXT NOT NULL, last_deployed TEXT NOT NULL,
    PRIMARY KEY (service, host)
);
CREATE TABLE IF NOT EXISTS package_blobs (sha256 TEXT PRIMARY KEY, content BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS moves (
    deployment_id TEXT PRIMARY KEY, service TEXT NOT NULL, target TEXT NOT NULL,
    instance TEXT NOT NULL, started REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deployment_walls (
    deployment_id TEXT NOT NULL, consumer TEXT NOT NULL, seconds REAL NOT NULL,
    PRIMARY KEY (deployment_id, consumer)
);
CREATE TABLE IF NOT EXISTS deployment_load (
    instance TEXT NOT NULL, deployment_id TEXT NOT NULL, outstanding INTEGER NOT NULL,
    last_used REAL NOT NULL, written REAL NOT NULL,
    PRIMARY KEY (instance, deployment_id)
);
"""
#: Indexes on columns that MIGRATIONS may add to an older registry: made after them.
INDEXES = "CREATE INDEX IF NOT EXISTS hosts_beat_deadline ON hosts (beat_deadline);"
#: Hosts remembered per service as where its deployments ran (and their logs are), latest first.
SERVICE_HOSTS_KEPT = 16


SERVICE_COLUMNS = (
    "name, version, kind, stateless, sha256, size, published, package, wsdl, images, placement, "
    "require_signed, call_timeout"
)
HOST_COLUMNS = (
    "address, state, capacity, deployments, load, last_seen, "
    "cache_images, cache_bytes, cache_capacity, cache_received, terms, snapshots"
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
    ("deployments", "sha256", "TEXT NOT NULL DEFAULT ''"),
    ("deployments", "deployer", "TEXT NOT NULL DEFAULT ''"),
    ("hosts", "beat_deadline", "REAL NOT NULL DEFAULT 0"),
    ("hosts", "snapshots", "TEXT NOT NULL DEFAULT '{}'"),
]
DEPLOYMENT_COLUMNS = (
    "id, service, version, host, endpoint, state, created, deployed_for, reason, changed, sha256, "
    "deployer"
)
ROUTE_COLUMNS = "name, traffic, previous, changed"


def upsert(table: str, columns: str, key: str) -> str:
    """``INSERT`` of every column, replacing the row of the same ``key`` (both databases)."""
    names = [c.strip() for c in columns.split(",")]
    keys = {k.strip() for k in key.split(",")}
    sets = ", ".join(f"{c} = excluded.{c}" for c in names if c not in keys)
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({','.join('?' * len(names))}) "
        f"ON CONFLICT ({key}) DO " + (f"UPDATE SET {sets}" if sets else "NOTHING")
    )


def now() -> datetime:
    return datetime.now(UTC)


#: The ``last_seen`` of a host never heard from (named to the SP, not yet checked).
NEVER_SEEN = datetime(1970, 1, 1, tzinfo=UTC)


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
    snapshots: SnapshotStats | None = None  # its VM snapshots, as last reported


@dataclass(frozen=True)
class DeploymentRecord:
    id: str
    service: str
    version: str
    host: str
    endpoint: str  # "" while deploying
    #: "deploying" | "ready" | "retiring" (taking no new messages: it finishes those in flight,
    #: then is undeployed) | "lost"
    state: str
    created: datetime
    #: who its first message came from (a signed consumer's certificate subject), if known
    deployed_for: str | None = None
    #: why it is in its state (for "lost": what happened to its host)
    reason: str | None = None
    #: when it entered its state
    changed: datetime | None = None
    #: the digest of the version it runs
    sha256: str = ""
    #: the SP instance that is making it (while "deploying": a live one's is no leftover)
    deployer: str = ""


#: A route's traffic: (version, percent) pairs, each over 0, summing to 100.
Traffic = tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Route:
    """Which versions of a service take its messages, and in what shares."""

    service: str
    traffic: Traffic
    previous: Traffic  # the traffic before the last change (what a rollback goes back to)
    changed: datetime

    @property
    def primary(self) -> str:
        """The version with the largest share (the first listed among equals)."""
        return max(self.traffic, key=lambda vw: vw[1])[0]

    def share(self, version: str) -> int:
        return dict(self.traffic).get(version, 0)


def service_row(s: ServiceRecord) -> tuple[object, ...]:
    return (
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
    )


def host_row(h: HostRecord) -> tuple[object, ...]:
    return (
        h.address,
        h.state,
        h.capacity,
        h.deployments,
        h.load,
        h.last_seen.isoformat(),
        *_cache_columns(h.cache),
        json.dumps(h.terms.to_json()),
        json.dumps(vars(h.snapshots) if h.snapshots is not None else {}),
    )


def deployment_row(d: DeploymentRecord) -> tuple[object, ...]:
    return (
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
        d.sha256,
        d.deployer,
    )


def deployment_of(r: Any) -> DeploymentRecord:
    return DeploymentRecord(
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
        sha256=str(r[10] or ""),
        deployer=str(r[11] or ""),
    )


def traffic_text(traffic: Traffic) -> str:
    return json.dumps([list(vw) for vw in traffic])


def route_of(r: Any) -> Route:
    def traffic(text: str) -> Traffic:
        return tuple((str(v), int(w)) for v, w in json.loads(text))

    return Route(str(r[0]), traffic(r[1]), traffic(r[2]), datetime.fromisoformat(str(r[3])))


def service_of(r: Any) -> ServiceRecord:
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


def host_of(r: Any) -> HostRecord:
    return HostRecord(
        address=str(r[0]),
        state=str(r[1]),
        capacity=int(r[2]),
        deployments=int(r[3]),
        load=float(r[4]),
        last_seen=datetime.fromisoformat(str(r[5])),
        cache=CacheStats(int(r[6]), int(r[7]), int(r[8]), int(r[9])) if r[8] else None,
        terms=HostTerms.from_json(json.loads(r[10])),
        snapshots=SnapshotStats(**json.loads(r[11])) if r[11] and r[11] != "{}" else None,
    )


def _cache_columns(cache: CacheStats | None) -> tuple[int, int, int, int]:
    if cache is None:
        return (0, 0, 0, 0)
    return (cache.images, cache.bytes, cache.capacity, cache.received)
