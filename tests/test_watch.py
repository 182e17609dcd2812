"""Each app keeps its metrics in a registry of its own: two Service Providers and two Host
Providers in one process (as tests and embedding programs have them) count apart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from dynasoar.host.app import HostApp, HostConfig
from dynasoar.http import Headers, Request
from dynasoar.http.body import BodyReader
from dynasoar.provider.app import ProviderApp
from dynasoar.provider.config import ProviderConfig
from dynasoar.watch import metrics_response


def _get(path: str) -> Request:
    return Request("GET", path, path, "", Headers([]), BodyReader.from_bytes(b""), None, "1.1")


def _samples(app: ProviderApp | HostApp) -> dict[tuple[str, frozenset[str]], float]:
    """What the app's /metrics says: value by (name, {label=value ...})."""
    body = metrics_response(app.metrics.registry, _get("/metrics")).body
    assert isinstance(body, bytes)
    return {
        (sample.name, frozenset(f"{k}={v}" for k, v in sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_two_apps_of_each_kind_in_one_process_count_apart(tmp_path: Path) -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        sps = [ProviderApp(ProviderConfig(data=tmp_path / f"sp{n}"), loop) for n in (1, 2)]
        hps = [HostApp(HostConfig(data=tmp_path / f"hp{n}")) for n in (1, 2)]
        try:
            sps[0].metrics.message("Echo", "ok", 0.01, 100, 200)
            sps[0].metrics.message("Echo", "ok", 0.02, 100, 200)
            sps[1].metrics.message("Echo", "NoHostAvailable", 0.01, 100, 300)
            hps[0].metrics.control.labels("Deploy", "ok").inc()
            sps[0].metrics.message("Echo", "ok", 0.3, 100, 200, cold=True)
            first, second = (_samples(sp) for sp in sps)
            key = ("dynasoar_sp_messages_total", frozenset({"service=Echo", "outcome=ok"}))
            assert first[key] == 3 and key not in second
            cold = ("dynasoar_sp_cold_start_seconds_bucket", frozenset({"service=Echo", "le=0.5"}))
            assert first[cold] == 1 and cold not in second
            under = ("dynasoar_sp_message_seconds_bucket", frozenset({"service=Echo", "le=0.025"}))
            assert first[under] == 2  # cumulative: the two of 0.01 and 0.02 s
            total = ("dynasoar_sp_message_seconds_count", frozenset({"service=Echo"}))
            assert first[total] == 3
            other = (
                "dynasoar_sp_messages_total",
                frozenset({"service=Echo", "outcome=NoHostAvailable"}),
            )
            assert second[other] == 1 and other not in first
            h1, h2 = (_samples(hp) for hp in hps)
            deploy = (
                "dynasoar_hp_control_messages_total",
                frozenset({"operation=Deploy", "outcome=ok"}),
            )
            assert h1[deploy] == 1 and deploy not in h2
            # The page and readiness answer without the apps serving anything yet.
            assert (await sps[0].handle(_get("/readyz"))).status == 503  # starting
            page = await sps[1].handle(_get("/"))
            assert page.status == 200 and b"dynasoar Service Provider" in page.body  # type: ignore[operator]
        finally:
            for sp in sps:
                await sp.stop()
            for hp in hps:
                await hp.stop()

    asyncio.run(run())


def test_metrics_in_the_format_the_scraper_asks_for(tmp_path: Path) -> None:
    async def run() -> None:
        app = HostApp(HostConfig(data=tmp_path / "hp"))
        try:
            plain = metrics_response(app.metrics.registry, _get("/metrics"))
            asking = _get("/metrics")
            asking.headers = Headers([("Accept", "application/openmetrics-text; version=1.0.0")])
            open_metrics = metrics_response(app.metrics.registry, asking)
            assert dict(plain.headers)["Content-Type"].startswith("text/plain; version=")  # type: ignore[arg-type]
            assert dict(open_metrics.headers)["Content-Type"].startswith(  # type: ignore[arg-type]
                "application/openmetrics-text"
            )
            assert isinstance(open_metrics.body, bytes) and open_metrics.body.endswith(b"# EOF\n")
        finally:
            await app.stop()

    asyncio.run(run())
