"""Heartbeats as an SP keeps them (real registries: SQLite and PostgreSQL): the interval
adapts to the fleet, a flood is refused, beats reach the registry in batches and are judged
from it, and beats heard while the registry cannot be reached are kept for later."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dynasoar.errors import RegistryUnavailable
from dynasoar.pgserver import PostgresServer
from dynasoar.provider.heartbeats import MAX_INTERVAL, Heartbeats
from dynasoar.provider.postgres import RETRY_SECONDS
from dynasoar.provider.records import HostRecord
from dynasoar.provider.registry import Registry


def host(address: str, **changes: object) -> HostRecord:
    fields: dict[str, object] = dict(
        address=address, state="up", capacity=4, deployments=0, load=0.0,
        last_seen=datetime.now(UTC),
    )
    fields.update(changes)
    return HostRecord(**fields)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    where: Path | str = tmp_path / "registry.sqlite"
    if request.param == "postgresql":
        where = str(request.getfixturevalue("pg_url"))
    reg = Registry(where)
    yield reg
    reg.close()


def test_the_interval_grows_with_the_fleet(registry: Registry) -> None:
    beats = Heartbeats(registry, host_timeout=6.0, rate=20.0)
    beats.fleet = 10
    assert beats.interval_for(2.0) == 2.0  # a small fleet beats as often as it asks
    beats.fleet = 1000
    assert beats.interval_for(2.0) == 50.0  # 1000 hosts, 20 beats a second
    beats.fleet = 10_000
    assert beats.interval_for(2.0) == 500.0
    assert Heartbeats(registry, 6.0).interval_for(2.0) == 2.0  # the default rate, a small fleet
    beats.fleet = 1_000_000
    assert beats.interval_for(2.0) == MAX_INTERVAL  # never silent for longer than this
    assert beats.interval_for(MAX_INTERVAL + 60) == MAX_INTERVAL + 60  # nor more often than asked


def test_a_host_beating_far_too_often_is_told_to_wait(registry: Registry) -> None:
    beats = Heartbeats(registry, host_timeout=6.0)
    assert beats.too_soon("http://hp1") is None  # never heard: welcome
    beats.beat("http://hp1", 4.0)
    wait = beats.too_soon("http://hp1")
    assert wait is not None and 0 < wait <= 1.0  # a quarter of its 4 s interval
    assert beats.too_soon("http://hp2") is None  # others are not held up by it


def test_beats_reach_the_registry_and_are_judged_there(registry: Registry) -> None:
    for address in ("http://hp1", "http://hp2", "http://quiet"):
        registry.put_host(host(address))
    beats = Heartbeats(registry, host_timeout=0.2)
    beats.beat("http://hp1", 0.05, host("http://hp1", deployments=3, load=0.5))
    beats.beat("http://hp2", 60.0)
    beats.flush()
    assert registry.overdue(time.time()) == []  # nobody late yet; "quiet" promised nothing
    assert {h.address: h.deployments for h in registry.hosts()}["http://hp1"] == 3
    time.sleep(0.3)  # hp1 allowed max(0.2, 3 * 0.05) s: now overdue; hp2 has 180 s
    assert [a for a, _ in beats.overdue()] == ["http://hp1"]
    beats.beat("http://hp1", 0.05)
    beats.flush()
    assert beats.overdue() == []


def test_a_beat_heard_before_a_host_left_does_not_bring_it_back(registry: Registry) -> None:
    registry.put_host(host("http://hp1"))
    beats = Heartbeats(registry, host_timeout=6.0)
    beats.beat("http://hp1", 2.0, host("http://hp1", deployments=5))  # in the next batch...
    registry.set_host_state("http://hp1", "left")  # ...but the host deregistered first
    beats.flush()
    (hp1,) = registry.hosts()
    assert (hp1.state, hp1.deployments) == ("left", 0)  # the stale figures are not taken either
    registry.set_host_state("http://hp1", "up")  # registered again: its beats count
    beats.beat("http://hp1", 2.0, host("http://hp1", deployments=2))
    beats.flush()
    assert [(h.state, h.deployments) for h in registry.hosts()] == [("up", 2)]


def test_a_restarted_sp_gives_hosts_time_to_beat_again(registry: Registry) -> None:
    for address in ("http://hp1", "http://hp2"):
        registry.put_host(host(address))
    before = Heartbeats(registry, host_timeout=0.2)  # the SP before its restart
    before.beat("http://hp1", 0.05)
    before.beat("http://hp2", 0.05)
    before.flush()
    time.sleep(0.3)  # both deadlines pass while no SP listens
    after = Heartbeats(registry, host_timeout=0.2)
    after.listening()
    assert after.overdue() == []  # not their fault: they could not beat
    after.beat("http://hp1", 0.05)  # hp1 beats again, then falls silent
    after.flush()
    time.sleep(0.3)
    assert [a for a, _ in after.overdue()] == ["http://hp1"]  # judged by its own beat here
    after.judge_from = time.time()  # hp2 had its time (host timeout + a retry) and never came
    assert sorted(a for a, _ in after.overdue()) == ["http://hp1", "http://hp2"]


def test_beats_heard_while_the_registry_is_away_are_kept() -> None:
    server = PostgresServer.create()  # its own: this test stops it
    try:
        registry = Registry(server.url)
        registry.put_host(host("http://hp1"))
        beats = Heartbeats(registry, host_timeout=60.0)
        server.stop()
        beats.beat("http://hp1", 1.0, host("http://hp1", deployments=2))
        with pytest.raises(RegistryUnavailable):
            beats.flush()
        server.start()
        time.sleep(RETRY_SECONDS)  # a failed connection is not tried again sooner than this
        beats.flush()  # the same beat, written now
        assert registry.hosts()[0].deployments == 2
        assert registry.overdue(time.time() + 59) == []
        assert [a for a, _ in registry.overdue(time.time() + 61)] == ["http://hp1"]
        registry.close()
    finally:
        server.destroy()
