"""The fleet simulator (a load generator) against a real SP: its hosts register with signed
heartbeats that carry their figures, a cold call is placed, shipped as MTOM to one of them and
answered; and placement asks two hosts for their live Status, never the fleet; listing the
hosts asks none."""

from __future__ import annotations

from pathlib import Path

from dynasoar.bench.fleet import _Loop, measure
from dynasoar.bench.fleet_hosts import Fleet
from dynasoar.consumer.provider_client import ProviderClient
from dynasoar.keys import make_keypair
from dynasoar.procs import start_actor
from dynasoar.soap.security import Credentials, TrustStore


def test_a_simulated_fleet_speaks_to_a_real_sp(tmp_path: Path) -> None:
    figures = measure(tmp_path, 40, window=2.0, cold_calls=3, rate=200.0)
    assert figures.registry_hosts == 40  # every host's signed beat was taken
    assert figures.failed == 0
    assert len(figures.cold) == 3  # each cold call deployed on a simulated host and answered
    assert len(figures.placement) == 3
    assert max(figures.checked) <= 2  # two candidates asked, of forty
    assert figures.statuses <= 2 * len(figures.placement)  # and no other Status call at all
    assert figures.beats_per_second > 0


def test_list_hosts_asks_no_host(tmp_path: Path) -> None:
    """ListHosts with a fleet of 60 simulated hosts: every one listed up, with when its beat
    was heard, and not one Status call made."""
    sp_key, sp_cert = make_keypair(tmp_path / "keys", "sp")
    fleet_key, fleet_cert = make_keypair(tmp_path / "keys", "fleet")
    args = ["--port", "0", "--data", str(tmp_path / "sp"), "--key", str(sp_key),
            "--cert", str(sp_cert), "--trust", str(fleet_cert)]
    with start_actor("sp", args, tmp_path / "sp.log") as sp:
        loop = _Loop()
        fleet = Fleet(60, sp.url, credentials=Credentials.load(fleet_key, fleet_cert),
                      trust=TrustStore.from_paths([sp_cert]))
        try:
            loop.run(fleet.start())
            loop.run(fleet.register_all(200.0))
            hosts = ProviderClient(sp.url).call("ListHosts")
            assert {h.address for h in hosts} == {h.address for h in fleet.hosts}
            assert all(h.state == "up" and h.lastSeen is not None for h in hosts)
            assert all(h.capacity == fleet.capacity for h in hosts)  # the beats' figures
            assert fleet.stats.statuses == 0
        finally:
            loop.run(fleet.close(), timeout=30)
            loop.close()
