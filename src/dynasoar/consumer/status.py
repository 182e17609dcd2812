"""``dynasoar status``: the SP's services, deployments and hosts, as a table or JSON."""

from __future__ import annotations

from collections import Counter
from typing import Any

from zeep.helpers import serialize_object

from dynasoar.consumer.provider_client import ProviderClient


def fetch_status(sp: str) -> dict[str, list[dict[str, Any]]]:
    client = ProviderClient(sp)
    return {
        "services": _plain(client.call("ListServices")),
        "deployments": _plain(client.call("ListDeployments")),
        "hosts": _plain(client.call("ListHosts")),
    }


def _plain(value: Any) -> list[dict[str, Any]]:
    items = serialize_object(value) or []
    return [dict(item) for item in items]


def render_table(status: dict[str, list[dict[str, Any]]]) -> str:
    hosts = [{**h, **_host_extras(h)} for h in status["hosts"]]
    replicas = Counter(d["service"] for d in status["deployments"] if d.get("state") == "ready")
    services = [
        {
            **s,
            "replicas": replicas.get(s["name"], 0),
            "traffic": _traffic(s),
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


def _traffic(service: dict[str, Any]) -> str:
    shares = service.get("share") or []
    return ", ".join(f"{s['version']} {s['percent']}%" for s in shares)


def _snapshot(service: dict[str, Any]) -> str:
    digest = service.get("snapshot")
    size = service.get("snapshotBytes") or 0
    return f"{digest[:12]} ({size / (1 << 20):.0f} MiB)" if digest else ""


def _host_extras(host: dict[str, Any]) -> dict[str, Any]:
    terms = host.get("terms") or {}
    cache = host.get("cache") or {}
    snaps = host.get("snapshots") or {}
    labels = ",".join(f"{lb['name']}={lb['value']}" for lb in terms.get("label") or [])
    sites = ",".join(f"{st['name']}:{st['distance']}" for st in terms.get("site") or [])
    return {
        "price": terms.get("price"),
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
