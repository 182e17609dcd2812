"""The fleet simulator (a load generator) against a real SP: its hosts register with signed
heartbeats that carry their figures, a cold call is placed, shipped as MTOM to one of them and
answered; and placement asks two hosts for their live Status, never the fleet; listing the
hosts asks none; GetUsage asks only the hosts with figures to take; the status page stays a
page (its host table bounded, every host counted)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lxml import html

from dynasoar.bench.fleet import _Loop, measure
from dynasoar.bench.fleet_hosts import Fleet
from dynasoar.consumer.provider_client import ProviderClient
from dynasoar.keys import make_keypair
from dynasoar.paths import samples_dir
from dynasoar.procs import Actor, start_actor
from dynasoar.provider.page import NOTABLE_HOSTS_SHOWN, OTHER_HOSTS_SHOWN
from dynasoar.soap.security import Credentials, TrustStore

from .wire import get


def test_a_simulated_fleet_speaks_to_a_real_sp(tmp_path: Path) -> None:
    figures = measure(tmp_path, 40, window=2.0, cold_calls=3, rate=200.0)
    assert figures.registry_hosts == 40  # every host's signed beat was taken
    assert figures.failed == 0
    assert len(figures.cold) == 3  # each cold call deployed on a simulated host and answered
    assert len(figures.placement) == 3
    assert max(figures.checked) <= 2  # two candidates asked, of forty
    assert figures.statuses <= 2 * len(figures.placement)  # and no other Status call at all
    assert figures.beats_per_second > 0
    assert len(figures.usage) == 5
    assert figures.usage_asked == [1] * 5  # GetUsage asks the one host holding a deployment
    assert len(figures.page) == 5 and figures.page_bytes > 0


@contextmanager
def signed_fleet(
    tmp_path: Path,
    count: int,
    *sp_args: str,
    prepare: Callable[[Fleet], None] | None = None,
    rounds: int = 1,
) -> Iterator[tuple[Actor, Fleet]]:
    """A real SP and ``count`` simulated hosts, registered with signed beats, ``rounds`` of
    them two seconds apart (which then stop: the SP is told to wait long for the next one).
    ``prepare`` sees the fleet before the SP starts (to give hosts terms, or to silence some);
    a silent host is named to the SP with ``--hp`` instead, and never beats."""
    sp_key, sp_cert = make_keypair(tmp_path / "keys", "sp")
    fleet_key, fleet_cert = make_keypair(tmp_path / "keys", "fleet")
    loop = _Loop()
    fleet = Fleet(
        count,
        None,
        credentials=Credentials.load(fleet_key, fleet_cert),
        trust=TrustStore.from_paths([sp_cert]),
    )
    try:
        loop.run(fleet.start())
        if prepare is not None:
            prepare(fleet)
        named = [arg for h in fleet.hosts if h.silent for arg in ("--hp", h.address)]
        args = [
            "--port",
            "0",
            "--data",
            str(tmp_path / "sp"),
            "--key",
            str(sp_key),
            "--cert",
            str(sp_cert),
            "--trust",
            str(fleet_cert),
            "--host-timeout",
            "600",
            *named,
            *sp_args,
        ]
        with start_actor("sp", args, tmp_path / "sp.log") as sp:
            fleet.beat_to(sp.url)
            for round in range(rounds):
                if round:
                    time.sleep(2.0)  # a beat far sooner than its interval is refused
                loop.run(fleet.register_all(200.0))
            yield sp, fleet
    finally:
        loop.run(fleet.close(), timeout=30)
        loop.close()


def test_list_hosts_asks_no_host(tmp_path: Path) -> None:
    """ListHosts with a fleet of 60 simulated hosts: every one listed up, with when its beat
    was heard, and not one Status call made."""
    with signed_fleet(tmp_path, 60) as (sp, fleet):
        hosts = ProviderClient(sp.url).call("ListHosts")
        assert {h.address for h in hosts} == {h.address for h in fleet.hosts}
        assert all(h.state == "up" and h.lastSeen is not None for h in hosts)
        assert all(h.capacity == fleet.capacity for h in hosts)  # the beats' figures
        assert fleet.stats.statuses == 0
    assert not fleet.spool.exists()  # each run of the bench used to leave one behind


def test_get_usage_asks_only_the_hosts_with_figures_to_take(tmp_path: Path) -> None:
    """Of 120 simulated hosts, GetUsage asks the two holding deployments; after one of them
    is undeployed, that host once more (its ended deployment's figures), then never again."""
    # the control loop takes no figures of its own meanwhile: only GetUsage asks
    with signed_fleet(tmp_path, 120, "--reconcile-interval", "3600") as (sp, fleet):
        client = ProviderClient(sp.url)
        client.publish(samples_dir() / "echo")
        holding = [fleet.hosts[7], fleet.hosts[93]]
        for host in holding:
            client.call("Deploy", name="Echo", host=host.address)

        def asked() -> set[str]:
            """The hosts asked since the last look."""
            found = {h.address for h in fleet.hosts if h.usage_asks}
            for h in fleet.hosts:
                h.usage_asks = 0
            return found

        asked()
        client.call("GetUsage")
        assert asked() == {h.address for h in holding}
        assert client.call("Undeploy", name="Echo", host=holding[1].address) == 1
        client.call("GetUsage")
        assert asked() == {h.address for h in holding}  # the one undeployed: its last figures
        client.call("GetUsage")
        assert asked() == {holding[0].address}
        assert fleet.stats.usages == 5


def test_the_status_page_stays_bounded_with_a_fleet(tmp_path: Path) -> None:
    """300 simulated hosts: the page's host table has the hosts not up, those holding
    deployments and the first few others, a last row counting the rest, and every host counted
    by state; no host is asked anything for it."""
    with signed_fleet(tmp_path, 300) as (sp, fleet):
        client = ProviderClient(sp.url)
        client.publish(samples_dir() / "echo")
        addresses = [h.address for h in fleet.hosts]
        holding = {addresses[5], addresses[250]}
        for address in holding:
            client.call("Deploy", name="Echo", host=address)
        left = set(addresses[10:13])
        for address in left:
            client.call("DeregisterHost", address=address)
        draining = set(addresses[200:202])
        for address in draining:
            client.call("DrainHost", address=address)
        statuses = fleet.stats.statuses

        page = html.fromstring(get(sp.url + "/").body)
        rows = page.xpath('//section[@id="hosts"]//tr[@data-key]')
        shown = {row.get("data-key") for row in rows}
        others = sorted(set(addresses) - holding - left - draining)[:OTHER_HOSTS_SHOWN]
        assert shown == holding | left | draining | set(others)
        assert len(rows) <= NOTABLE_HOSTS_SHOWN + OTHER_HOSTS_SHOWN
        states = {row.get("data-key"): row.xpath("td")[1].text_content() for row in rows}
        assert {a for a, s in states.items() if s == "left"} == left
        assert {a for a, s in states.items() if s == "draining"} == draining
        assert page.xpath('//section[@id="hosts"]/h2')[0].text_content() == "Host Providers (300)"
        assert page.get_element_by_id("hosts-count").text_content() == (
            "300 hosts: 295 up, 2 draining, 3 left"
        )
        (more,) = page.xpath('//section[@id="hosts"]//tr[@class="more"]')
        assert more.text_content() == f"{300 - len(shown)} more hosts up (300 total)"
        assert fleet.stats.statuses == statuses  # the page asked no host


def test_the_status_page_shows_at_most_200_hosts_not_up(tmp_path: Path) -> None:
    """230 of 260 simulated hosts left: the page lists the first 200 of them and the first few
    hosts up, and counts the other 30 that left and the rest up in its last row."""
    with signed_fleet(tmp_path, 260) as (sp, fleet):
        client = ProviderClient(sp.url)
        addresses = sorted(h.address for h in fleet.hosts)
        left = addresses[30:]
        for address in left:
            client.call("DeregisterHost", address=address)
        up = addresses[:30]

        page = html.fromstring(get(sp.url + "/").body)
        rows = page.xpath('//section[@id="hosts"]//tr[@data-key]')
        shown = [row.get("data-key") for row in rows]
        assert set(shown) == set(left[:200]) | set(up[:20])  # the numbers docs/operating.md gives
        assert page.get_element_by_id("hosts-count").text_content() == (
            "260 hosts: 30 up, 230 left"
        )
        (more,) = page.xpath('//section[@id="hosts"]//tr[@class="more"]')
        assert more.text_content() == ("10 more hosts up, 30 more hosts left (260 total)")
