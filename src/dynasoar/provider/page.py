"""The Service Provider's status page at ``/``: what it advertises (with each service's WSDL),
where services run (deployments: ready, deploying, lost and why), its hosts, image caches, and
its latest deployments and faults. Server-rendered HTML with no external assets, no scripts
and no forms; it reloads itself every few seconds. Read-only: management stays on the SOAP
port. Everything shown is escaped (service names, reasons and message ids may be anyone's).

The hosts come from the figures the SP keeps (no host is asked, no table of the fleet read),
and their table is bounded, for a grid of thousands: every host's state is counted, but the
rows are the hosts that need a look (not up, or holding deployments: at most
:data:`NOTABLE_HOSTS_SHOWN`) and the first :data:`OTHER_HOSTS_SHOWN` others, with a last row
saying how many more there are."""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from urllib.parse import quote

from dynasoar import __version__
from dynasoar.http import Response
from dynasoar.images import CacheStats, ImageCache
from dynasoar.paths import PROVIDER_PORT
from dynasoar.provider.activity import Activity
from dynasoar.provider.interceptors import SERVICES
from dynasoar.provider.load import LoadTracker
from dynasoar.provider.records import NEVER_SEEN
from dynasoar.provider.registry import HostRecord, Registry
from dynasoar.provider.service_provider import ServiceProvider

REFRESH_SECONDS = 10
#: Host rows for hosts not up or holding deployments, at most (a rack down: still a page).
NOTABLE_HOSTS_SHOWN = 200
#: Host rows for the other hosts (up, holding nothing): the first few by address.
OTHER_HOSTS_SHOWN = 20
#: The order in which host states are counted.
HOST_STATES = ("up", "draining", "unknown", "down", "left")

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.6em 0 .4em}
table{border-collapse:collapse;background:#fff;min-width:40%}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eee}td.num{text-align:right}.muted{color:#777}.none{color:#777;font-style:italic}
.state-ready,.state-up,.ok{color:#176b21;font-weight:600}
.state-deploying,.state-unknown,.state-draining{color:#8a6100;font-weight:600}
.state-lost,.state-down,.state-left,.failed{color:#a61b1b;font-weight:600}
code{font-size:.95em}nav a{margin-right:1em}.reason{white-space:pre-wrap}
"""


@dataclass
class StatusPage:
    provider: ServiceProvider
    registry: Registry
    load: LoadTracker
    repository: ImageCache
    activity: Activity

    def response(self, base: str) -> Response:
        headers = [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Cache-Control", "no-store"),
            # Nothing but this page's own inline style: no scripts, frames or outside assets.
            (
                "Content-Security-Policy",
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
            ("X-Content-Type-Options", "nosniff"),
        ]
        return Response(200, headers, self.render(base).encode())

    def render(self, base: str) -> str:
        now = time.time()
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>dynasoar Service Provider at {escape(base)}</title>",
            f"<style>{STYLE}</style></head><body>",
            "<header><h1>dynasoar Service Provider</h1>",
            f'<p class="muted">{escape(base)} &middot; dynasoar {escape(__version__)} &middot; '
            f'<span id="generated">{_when(now)}</span> &middot; '
            f"reloads every {REFRESH_SECONDS} s</p>",
            f'<nav><a href="{escape(PROVIDER_PORT)}?wsdl">management port WSDL</a>'
            '<a href="/metrics">metrics</a><a href="/readyz">readiness</a></nav></header>',
            self._services(),
            self._deployments(),
            self._hosts(),
            self._caches(),
            self._recent_deploys(),
            self._recent_faults(),
            "</body></html>",
        ]
        return "\n".join(parts)

    def _services(self) -> str:
        ready: dict[str, int] = {}
        for record in self.registry.deployments():
            if record.state == "ready":
                ready[record.service] = ready.get(record.service, 0) + 1
        catalog = sorted(self.provider.catalog(), key=lambda a: a.record.name)
        rows = []
        for advertised in catalog:
            s = advertised.record
            wsdl = f"{SERVICES}/{quote(s.name, safe='')}?wsdl"
            rows.append(
                [
                    escape(s.name),
                    escape(s.version),
                    escape(", ".join(f"{v} {w}%" for v, w in advertised.route.traffic)),
                    escape(s.kind),
                    "stateless" if s.stateless else "stateful",
                    str(ready.get(s.name, 0)),
                    f"<code>{escape(s.sha256[:16])}</code>",
                    _when(s.published.timestamp()),
                    f'<a href="{escape(wsdl)}">WSDL</a>',
                ],
            )
        return _section(
            "services",
            "Services",
            [
                "name",
                "version",
                "traffic",
                "kind",
                "state",
                "replicas",
                "sha256",
                "published",
                "contract",
            ],
            rows,
            row_key=[a.record.name for a in catalog],
            numeric={5},
        )

    def _deployments(self) -> str:
        records = self.registry.deployments()
        rows = [
            [
                escape(d.service),
                escape(d.version),
                f'<span class="state-{escape(d.state)}">{escape(d.state)}</span>'
                + (f'<br><span class="reason">{escape(d.reason)}</span>' if d.reason else ""),
                escape(d.host),
                f"<code>{escape(d.id)}</code>",
                escape(d.endpoint) or '<span class="none">not yet</span>',
                str(self.load.outstanding(d.id)),
                _when((d.changed or d.created).timestamp()),
            ]
            for d in records
        ]
        return _section(
            "deployments",
            "Deployments",
            ["service", "version", "state", "host", "id", "endpoint", "in flight", "since"],
            rows,
            row_key=[d.id for d in records],
            numeric={6},
        )

    def _hosts(self) -> str:
        directory = self.provider.hosts
        states = self.registry.host_states()  # from memory, as every figure below
        holding = {d.host for d in self.registry.deployments()}

        def busy(address: str) -> bool:
            view = directory.views.get(address)
            return address in holding or (view is not None and view.deployments > 0)

        notable = sorted(a for a, state in states.items() if state != "up")
        notable += sorted(a for a, state in states.items() if state == "up" and busy(a))
        shown = set(notable[:NOTABLE_HOSTS_SHOWN])
        others = (a for a, state in states.items() if state == "up" and a not in shown)
        shown.update(heapq.nsmallest(OTHER_HOSTS_SHOWN, (a for a in others if not busy(a))))
        hosts = [h for h in map(directory.record, sorted(shown)) if h is not None]
        rows = [
            [
                escape(h.address),
                f'<span class="state-{escape(h.state)}">{escape(h.state)}</span>',
                f"{h.deployments} / {h.capacity}",
                f"{h.load:.2f}",
                f"{h.terms.price:g}",
                escape(_terms(h)),
                escape(_cache(h.cache)),
                _when(h.last_seen.timestamp()) if h.last_seen > NEVER_SEEN else "never",
            ]
            for h in hosts
        ]
        listed = {h.address for h in hosts}
        more = Counter(state for a, state in states.items() if a not in listed)
        return _section(
            "hosts",
            "Host Providers",
            ["address", "state", "deployments", "load", "price", "labels", "image cache", "seen"],
            rows,
            row_key=[h.address for h in hosts],
            numeric={3, 4},
            total=len(states),
            note=f"{len(states)} {_noun(len(states))}: {_by_state(Counter(states.values()))}",
            more=f"{_by_state(more, more=True)} ({len(states)} total)" if more else None,
        )

    def _caches(self) -> str:
        repo = self.repository.stats()
        a = self.activity
        rows = [
            ["SP repository", f"{repo.images} images, {_size(repo.bytes)}"],
            [
                "shipped to hosts",
                f"packages {_size(a.shipped_package)}, images {_size(a.shipped_images)}",
            ],
            ["not shipped: held by hosts' image caches", _size(a.saved)],
        ]
        return _section("caches", "Images and caches", ["", ""], rows, header=False, count=False)

    def _recent_deploys(self) -> str:
        events = list(reversed(self.activity.deploys))
        rows = [
            [
                _when(e.at),
                escape(e.service),
                escape(e.version),
                escape(e.host),
                f"{e.seconds:.2f} s",
                '<span class="ok">deployed</span>'
                if e.deployment
                else f'<span class="failed">failed</span>: '
                f'<span class="reason">{escape(e.reason)}</span>',
            ]
            for e in events
        ]
        return _section(
            "recent-deploys",
            "Recent deployments",
            ["when", "service", "version", "host", "took", "result"],
            rows,
        )

    def _recent_faults(self) -> str:
        events = list(reversed(self.activity.faults))
        rows = [
            [
                _when(e.at),
                escape(e.service),
                f"<code>{escape(e.code)}</code>",
                f'<span class="reason">{escape(e.reason)}</span>',
                f"<code>{escape(e.message_id)}</code>",
            ]
            for e in events
        ]
        return _section(
            "recent-faults",
            "Recent faults answered by the SP",
            ["when", "service", "fault", "reason", "message"],
            rows,
        )


def _section(
    ident: str,
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    row_key: Sequence[str] | None = None,
    header: bool = True,
    numeric: frozenset[int] | set[int] = frozenset(),
    count: bool = True,
    total: int | None = None,
    note: str | None = None,
    more: str | None = None,
) -> str:
    """A titled table; cells are HTML already (escaped by the caller). A bounded table says
    how many there are in all (``total``), and what its rows leave out (``more``, text)."""
    heading = (
        f"{escape(title)} ({len(rows) if total is None else total})" if count else escape(title)
    )
    out = [f'<section id="{ident}"><h2>{heading}</h2>']
    if note is not None:
        out.append(f'<p class="muted" id="{ident}-count">{escape(note)}</p>')
    if not rows:
        out.append('<p class="none">none</p></section>')
        return "".join(out)
    out.append("<table>")
    if header:
        out.append("<tr>" + "".join(f"<th>{escape(c)}</th>" for c in columns) + "</tr>")
    for number, row in enumerate(rows):
        key = f' data-key="{escape(row_key[number])}"' if row_key is not None else ""
        cells = (
            f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        out.append(f"<tr{key}>" + "".join(cells) + "</tr>")
    if more is not None:
        out.append(
            f'<tr class="more"><td class="muted" colspan="{len(columns)}">{escape(more)}</td></tr>'
        )
    out.append("</table></section>")
    return "".join(out)


def _when(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    iso = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    return f'<time datetime="{iso}">{moment.strftime("%Y-%m-%d %H:%M:%S")} UTC</time>'


def _noun(count: int) -> str:
    return "host" if count == 1 else "hosts"


def _by_state(counts: Counter[str], more: bool = False) -> str:
    """``"990 up, 10 down"``; with ``more``, ``"950 more hosts up, 1 more host down"``."""
    order = [*HOST_STATES, *sorted(set(counts) - set(HOST_STATES))]
    return ", ".join(
        f"{counts[s]} more {_noun(counts[s])} {s}" if more else f"{counts[s]} {s}"
        for s in order
        if counts[s]
    )


def _terms(host: HostRecord) -> str:
    labels = [f"{n}={v}" for n, v in host.terms.labels]
    sites = [f"near {n}:{d}" for n, d in host.terms.sites]
    return " ".join(_join(labels, sites))


def _join(*groups: Iterable[str]) -> list[str]:
    return [item for group in groups for item in group]


def _cache(cache: CacheStats | None) -> str:
    if cache is None:
        return ""
    return f"{cache.images} images, {_size(cache.bytes)} of {_size(cache.capacity)}"


def _size(value: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= factor:
            return f"{value / factor:.1f} {unit}"
    return f"{value} B"
