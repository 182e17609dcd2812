"""``dynasoar status``: the SP's services, deployments and hosts, as a table or JSON."""

from __future__ import annotations

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
    sections = [
        (
            "SERVICES",
            ["name", "version", "kind", "stateless", "deployments", "size"],
            status["services"],
        ),
        ("DEPLOYMENTS", ["service", "host", "id", "state", "endpoint"], status["deployments"]),
        ("HOSTS", ["address", "state", "deployments", "capacity", "load"], status["hosts"]),
    ]
    out = []
    for title, columns, rows in sections:
        out.append(f"{title} ({len(rows)})")
        out.append(_table(columns, [[_cell(r.get(c)) for c in columns] for r in rows]))
        out.append("")
    return "\n".join(out).rstrip()


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
