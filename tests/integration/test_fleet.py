"""The fleet simulator (a load generator) against a real SP: its hosts register with signed
heartbeats that carry their figures, a cold call is placed, shipped as MTOM to one of them and
answered; and placement asks two hosts for their live Status, never the fleet."""

from __future__ import annotations

from pathlib import Path

from dynasoar.bench.fleet import measure


def test_a_simulated_fleet_speaks_to_a_real_sp(tmp_path: Path) -> None:
    figures = measure(tmp_path, 40, window=2.0, cold_calls=3, rate=200.0)
    assert figures.registry_hosts == 40  # every host's signed beat was taken
    assert figures.failed == 0
    assert len(figures.cold) == 3  # each cold call deployed on a simulated host and answered
    assert len(figures.placement) == 3
    assert max(figures.checked) <= 2  # two candidates asked, of forty
    assert figures.statuses <= 2 * len(figures.placement)  # and no other Status call at all
    assert figures.beats_per_second > 0
