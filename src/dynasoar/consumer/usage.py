"""The usage book and the bill from an SP (``GetUsage``), as a table (with totals per
consumer), CSV or JSON: what ``dynasoar usage`` prints."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from datetime import date
from typing import Any

from dynasoar.consumer.provider_client import ProviderClient

FIELDS = [
    "day",
    "consumer",
    "service",
    "version",
    "host",
    "messages",
    "bytesIn",
    "bytesOut",
    "wallSeconds",
    "cpuSeconds",
    "memoryGiBSeconds",
    "imageBytes",
    "priceCpu",
    "priceGiB",
    "cost",
]


def fetch(sp: str, consumer: str | None = None, since: date | None = None) -> list[dict[str, Any]]:
    rows = ProviderClient(sp).call("GetUsage", consumer=consumer, since=since) or []
    return [{name: getattr(row, name) for name in FIELDS} for row in rows]


def as_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps([{**r, "day": r["day"].isoformat()} for r in rows], indent=2)


def as_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def render(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no usage recorded"
    lines = [
        f"{'DAY':10}  {'CONSUMER':20}  {'SERVICE':16}  {'HOST':24}  {'MESSAGES':>8}  "
        f"{'MIB':>8}  {'CPU S':>8}  {'COST':>10}"
    ]
    totals: dict[str, float] = defaultdict(float)
    for r in rows:
        mib = (r["bytesIn"] + r["bytesOut"] + r["imageBytes"]) / (1 << 20)
        lines.append(
            f"{r['day'].isoformat():10}  {r['consumer'][:20]:20}  "
            f"{(r['service'] + ' ' + r['version'])[:16]:16}  {r['host'][:24]:24}  "
            f"{r['messages']:>8}  {mib:>8.2f}  {r['cpuSeconds']:>8.2f}  {r['cost']:>10.4f}"
        )
        totals[r["consumer"]] += r["cost"]
    lines.append("")
    lines += [f"total for {consumer}: {cost:.4f}" for consumer, cost in sorted(totals.items())]
    return "\n".join(lines)
