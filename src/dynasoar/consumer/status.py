"""``dynasoar status``: the SP's services, deployments and hosts, as a table or as a JSON
document with a schema of its own (docs/operating.md, "status --json"): an ``apiVersion``,
camelCase keys, ISO 8601 UTC timestamps, and each deployment's version and package digest."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dynasoar.consumer.provider_client import ProviderClient

#: The schema of ``dynasoar status --json``; changes that remove or rename a key change it.
API_VERSION = "dynasoar.status/v1"


def fetch_status(sp: str) -> dict[str, Any]:
    """The status document of the SP at ``sp``."""
    client = ProviderClient(sp)
    services = client.call("ListServices") or []
    deployments = client.call("ListDeployments") or []
    hosts = client.call("ListHosts") or []
    ready: dict[str, int] = {}
    for d in deployments:
        if d.state == "ready":
            ready[d.service] = ready.get(d.service, 0) + 1
    return {
        "apiVersion": API_VERSION,
        "serviceProvider": sp.rstrip("/"),
        "generated": timestamp(datetime.now(UTC)),
        "services": [_service(s, ready.get(s.name, 0)) for s in services],
        "deployments": [_deployment(d) for d in deployments],
        "hosts": [_host(h) for h in hosts],
    }


def timestamp(value: datetime | None) -> str | None:
    """ISO 8601 in UTC, to the millisecond, with a Z: ``2026-12-06T01:30:15.600Z``."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _service(s: Any, replicas: int) -> dict[str, Any]:
    return {
        "name": s.name,
        "version": s.version,
        "kind": s.kind,
        "stateless": bool(s.stateless),
        "sha256": s.sha256,
        "size": int(s.size or 0),
        "published": timestamp(s.published),
        "replicas": replicas,
        "traffic": [{"version": t.version, "percent": int(t.percent)} for t in s.share or []],
        "available": list(s.available or []),
        # its VM snapshot kept at the SP (shipped to hosts that have none), if any
        "snapshot": (
            {"sha256": s.snapshot, "bytes": int(s.snapshotBytes or 0)} if s.snapshot else None
        ),
    }


def _deployment(d: Any) -> dict[str, Any]:
    return {
        "id": d.id,
        "service": d.service,
        "version": d.version,
        "sha256": d.sha256,
        "host": d.host,
        "endpoint": d.endpoint or None,
        "state": d.state,
        "reason": d.reason,
        "created": timestamp(d.created),
        "changed": timestamp(d.changed),
        "outstanding": int(d.outstanding or 0),
        "lastUsed": timestamp(d.lastUsed),
        "deployedFor": d.deployedFor,
        "consumers": [
            {"subject": c.subject, "messages": int(c.messages)} for c in d.consumer or []
        ],
    }


def _host(h: Any) -> dict[str, Any]:
    terms = h.terms
    cache = h.cache
    return {
        "address": h.address,
        "state": h.state,
        "capacity": int(h.capacity or 0),
        "deployments": int(h.deployments or 0),
        "load": float(h.load or 0.0),
        "price": float(terms.price) if terms is not None else 0.0,
        "priceGiB": float(terms.priceGiB or 0.0) if terms is not None else 0.0,
        "sites": [
            {"name": s.name, "distance": int(s.distance)}
            for s in (terms.site if terms is not None else None) or []
        ],
        "labels": {lb.name: lb.value for lb in (terms.label if terms is not None else None) or []},
        "cache": (
            {
                "images": int(cache.images),
                "bytes": int(cache.bytes),
                "capacity": int(cache.capacity),
                "received": int(cache.received),
            }
            if cache is not None
            else None
        ),
        "snapshots": (
            {
                "held": int(h.snapshots.held),
                "bytes": int(h.snapshots.bytes),
                "taken": int(h.snapshots.taken),
                "restored": int(h.snapshots.restored),
                "fallbacks": int(h.snapshots.fallbacks),
            }
            if h.snapshots is not None
            else None
        ),
        "lastSeen": timestamp(getattr(h, "lastSeen", None)),
    }


def render_table(status: dict[str, Any]) -> str:
    hosts = [{**h, **_host_extras(h)} for h in status["hosts"]]
    services = [
        {
            **s,
            "traffic": ", ".join(f"{t['version']} {t['percent']}%" for t in s["traffic"]),
            "snapshot": _snapshot(s),
        }
        for s in status["services"]
    ]
    deployments = [
        {**d, "state": f"{d['state']}: {d['reason']}" if d.get("reason") else d["state"]}
        for d in status["deployments"]
    ]
    sections = [
        (
            "SERVICES",
            ["name", "version", "kind", "stateless", "replicas", "traffic", "size", "snapshot"],
            services,
        ),
        (
            "DEPLOYMENTS",
            ["service", "version", "host", "id", "state", "outstanding", "endpoint"],
            deployments,
        ),
        (
            "HOSTS",
            [
                "address",
                "state",
                "deployments",
                "capacity",
                "load",
                "price",
                "labels",
                "cache",
                "snapshots",
                "lastSeen",
            ],
            hosts,
        ),
    ]
    out = []
    for title, columns, rows in sections:
        out.append(f"{title} ({len(rows)})")
        out.append(_table(columns, [[_cell(r.get(c)) for c in columns] for r in rows]))
        out.append("")
    return "\n".join(out).rstrip()


def _snapshot(service: dict[str, Any]) -> str:
    snapshot = service.get("snapshot")
    if not snapshot:
        return ""
    return f"{snapshot['sha256'][:12]} ({snapshot['bytes'] / (1 << 20):.0f} MiB)"


def _host_extras(host: dict[str, Any]) -> dict[str, Any]:
    cache = host.get("cache")
    snaps = host.get("snapshots")
    labels = ",".join(f"{k}={v}" for k, v in host["labels"].items())
    sites = ",".join(f"{s['name']}:{s['distance']}" for s in host["sites"])
    return {
        "labels": " ".join(x for x in (labels, sites and f"near {sites}") if x),
        "cache": (
            f"{cache['images']} images, {cache['bytes'] / (1 << 20):.0f} MiB of "
            f"{cache['capacity'] / (1 << 30):.0f} GiB"
            if cache
            else ""
        ),
        "snapshots": (
            f"{snaps['held']} held, {snaps['taken']} taken, {snaps['restored']} restored, "
            f"{snaps['fallbacks']} booted instead"
            if snaps
            else ""
        ),
    }


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    return "" if value is None else str(value)


def _table(columns: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "  (none)"
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = [[c.upper() for c in columns], *rows]
    return "\n".join(
        ("  " + "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True))).rstrip()
        for line in lines
    )
