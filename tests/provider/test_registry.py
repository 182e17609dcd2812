"""The Service Provider's registry on a real SQLite file and on a real PostgreSQL database (each
test runs on both): services, hosts, deployments; what survives a restart; concurrent writers
from threads."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dynasoar.provider.registry import (
    SERVICE_HOSTS_KEPT,
    DeploymentRecord,
    HostRecord,
    Registry,
    ServiceRecord,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def service(name: str = "Echo", version: str = "1.0", **changes: object) -> ServiceRecord:
    fields: dict[str, object] = dict(
        name=name, version=version, kind="code", stateless=True, sha256="ab" * 32,
        size=12345, published=T0, package=f"/data/repository/{name}/{version}.pkg",
        wsdl=b"<wsdl:definitions/>\x00\xff binary-safe",
    )
    fields.update(changes)
    return ServiceRecord(**fields)  # type: ignore[arg-type]


def host(address: str = "http://hp1:8001", **changes: object) -> HostRecord:
    fields: dict[str, object] = dict(
        address=address, state="up", capacity=4, deployments=1, load=0.25, last_seen=T0
    )
    fields.update(changes)
    return HostRecord(**fields)  # type: ignore[arg-type]


def deployment(
    deployment_id: str, service: str = "Echo", minutes: int = 0, **changes: object
) -> DeploymentRecord:
    fields: dict[str, object] = dict(
        id=deployment_id, service=service, version="1.0", host="http://hp1:8001",
        endpoint=f"http://hp1:9000/{deployment_id}", state="ready",
        created=T0 + timedelta(minutes=minutes),
    )
    fields.update(changes)
    return DeploymentRecord(**fields)  # type: ignore[arg-type]


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "registry.sqlite"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, sqlite_db: Path) -> Path | str:
    """Where a registry is: an SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return sqlite_db
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def registry(db: Path | str) -> Iterator[Registry]:
    reg = Registry(db)
    yield reg
    reg.close()


def reopen(registry: Registry, db: Path | str) -> Registry:
    registry.close()
    return Registry(db)


# -- services ----------------------------------------------------------------------------------


def publish(registry: Registry, record: ServiceRecord) -> None:
    """As publishing a first version does: kept, and given all its service's traffic."""
    registry.put_version(record)
    registry.set_route(record.name, ((record.version, 100),))


def test_put_and_get_services(registry: Registry) -> None:
    echo, counter = service("Echo"), service("Counter", stateless=False)
    publish(registry, echo)
    publish(registry, counter)
    assert registry.service("Echo") == echo
    assert registry.service("Nope") is None
    assert registry.services() == [counter, echo]  # by name


def test_versions_are_kept_and_the_route_says_which_is_advertised(registry: Registry) -> None:
    v1 = service("Echo", "1.0")
    v2 = service("Echo", "2.0", sha256="cd" * 32, published=T0 + timedelta(days=1))
    publish(registry, v1)
    registry.put_version(v2)
    assert registry.versions("Echo") == [v1, v2]  # oldest first
    assert registry.service("Echo") == v1  # the route still says 1.0
    route = registry.set_route("Echo", (("1.0", 10), ("2.0", 90)))
    assert (route.primary, route.previous) == ("2.0", (("1.0", 100),))
    assert registry.service("Echo") == v2
    assert registry.version("Echo", "1.0") == v1
    registry.remove_version("Echo", "1.0")
    assert registry.versions("Echo") == [v2]
    registry.remove_service("Echo")
    assert (registry.versions("Echo"), registry.route("Echo")) == ([], None)


def test_the_same_version_published_again_replaces_it(registry: Registry) -> None:
    publish(registry, service("Echo", "1.0"))
    again = service("Echo", "1.0", sha256="cd" * 32, published=T0 + timedelta(days=1))
    registry.put_version(again)
    assert registry.versions("Echo") == [again]


def test_a_registry_from_before_versions_keeps_its_services(sqlite_db: Path) -> None:
    db = sqlite_db
    db.parent.mkdir(parents=True, exist_ok=True)
    old = sqlite3.connect(db)
    old.execute(
        "CREATE TABLE services (name TEXT PRIMARY KEY, version TEXT NOT NULL, kind TEXT NOT "
        "NULL, stateless INTEGER NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL, "
        "published TEXT NOT NULL, package TEXT NOT NULL, wsdl BLOB NOT NULL)"
    )
    old.execute(
        "INSERT INTO services VALUES ('Echo', '1.0', 'code', 1, ?, 10, ?, '/p', x'00')",
        ("ab" * 32, T0.isoformat()),
    )
    old.commit()
    old.close()
    registry = Registry(db)
    try:
        (echo,) = registry.services()
        assert (echo.name, echo.version, echo.images, echo.call_timeout) == (
            "Echo",
            "1.0",
            (),
            None,
        )
        route = registry.route("Echo")
        assert route is not None and route.traffic == (("1.0", 100),)
    finally:
        registry.close()


def test_a_registry_from_before_the_grid_opens_with_its_hosts(sqlite_db: Path) -> None:
    # Its hosts table predates the columns heartbeats and caches added (and their index).
    sqlite_db.parent.mkdir(parents=True, exist_ok=True)
    old = sqlite3.connect(sqlite_db)
    old.execute(
        "CREATE TABLE hosts (address TEXT PRIMARY KEY, state TEXT NOT NULL, capacity INTEGER "
        "NOT NULL, deployments INTEGER NOT NULL, load REAL NOT NULL, last_seen TEXT NOT NULL)"
    )
    old.execute(
        "INSERT INTO hosts VALUES ('http://hp1:8001', 'up', 4, 1, 0.25, ?)", (T0.isoformat(),)
    )
    old.commit()
    old.close()
    registry = Registry(sqlite_db)
    try:
        (hp1,) = registry.hosts()
        assert (hp1.address, hp1.state, hp1.capacity) == ("http://hp1:8001", "up", 4)
        indexes = sqlite3.connect(sqlite_db).execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'hosts'"
        )
        assert ("hosts_beat_deadline",) in indexes.fetchall()
    finally:
        registry.close()


# -- hosts -------------------------------------------------------------------------------------


def test_put_and_get_hosts(registry: Registry) -> None:
    a, b = host("http://hp2:8001"), host("http://hp1:8001", state="down", load=1.5)
    registry.put_host(a)
    registry.put_host(b)
    assert registry.host("http://hp2:8001") == a
    assert registry.host("http://nope") is None
    assert registry.hosts() == [b, a]  # by address


def test_set_host_state(registry: Registry) -> None:
    registry.put_host(host())
    registry.set_host_state("http://hp1:8001", "down")
    down = registry.host("http://hp1:8001")
    assert down == host(state="down")  # last_seen is when it was last up

    registry.set_host_state("http://hp1:8001", "up")
    up = registry.host("http://hp1:8001")
    assert up is not None
    assert (up.state, up.load, up.deployments, up.capacity) == ("up", 0.25, 1, 4)
    assert up.last_seen > T0


def test_set_state_of_an_unknown_host_is_ignored(registry: Registry) -> None:
    registry.set_host_state("http://ghost:1", "up")
    assert registry.hosts() == []


# -- deployments -------------------------------------------------------------------------------


def test_add_and_remove_deployments(registry: Registry) -> None:
    d1, d2 = deployment("d1", minutes=1), deployment("d2", minutes=2)
    c1 = deployment("c1", service="Counter")
    for d in (d2, c1, d1):
        registry.add_deployment(d)
    assert registry.deployments_of("Echo") == [d2, d1]
    assert registry.deployments_of("Counter") == [c1]
    assert registry.deployments_of("Nope") == []
    assert registry.deployments() == [c1, d1, d2]  # by service, then creation

    assert registry.remove_deployment("d2") == d2
    assert registry.deployments_of("Echo") == [d1]
    assert registry.remove_deployment("d2") is None
    assert registry.remove_deployment("c1") == c1
    assert registry.deployments_of("Counter") == []


def test_every_deployment_that_goes_is_told(registry: Registry, db: Path | str) -> None:
    gone: list[DeploymentRecord] = []
    registry.on_deployment_gone.append(gone.append)
    d1, d2, d3 = (deployment(f"d{n}", minutes=n) for n in (1, 2, 3))
    for d in (d2, d1, d3):
        registry.add_deployment(d)
    registry.set_state("d1", "lost", "its host is down")  # changed, not gone
    assert gone == []
    assert registry.remove_deployment("d2") == d2
    assert registry.remove_deployment("d2") is None  # told once
    assert gone == [d2]
    # removed behind its back (another SP, whose announcement it missed): told on reload
    other = Registry(db)
    other.remove_deployment("d3")
    other.close()
    registry.reload()
    assert gone == [d2, d3]


def test_adding_a_deployment_again_replaces_it(registry: Registry) -> None:
    registry.add_deployment(deployment("d1"))
    moved = deployment("d1", endpoint="http://hp1:9555/d1")
    registry.add_deployment(moved)
    assert registry.deployments_of("Echo") == [moved]


def test_a_readers_list_is_a_snapshot(registry: Registry) -> None:
    # The message path reads deployments_of without the lock: what it holds must not change.
    registry.add_deployment(deployment("d1"))
    seen = registry.deployments_of("Echo")
    registry.add_deployment(deployment("d2", minutes=1))
    registry.remove_deployment("d1")
    assert [d.id for d in seen] == ["d1"]
    assert [d.id for d in registry.deployments_of("Echo")] == ["d2"]


# -- restarts ----------------------------------------------------------------------------------


def test_state_survives_closing_and_reopening(registry: Registry, db: Path | str) -> None:
    echo, hp = service(), host()
    d1, d2 = deployment("d1", minutes=1), deployment("d2", minutes=2)
    publish(registry, echo)
    registry.put_host(hp)
    for d in (d1, d2, deployment("gone", minutes=3)):
        registry.add_deployment(d)
    registry.remove_deployment("gone")

    again = reopen(registry, db)
    try:
        assert again.services() == [echo]
        assert again.hosts() == [hp]
        assert again.deployments_of("Echo") == [d1, d2]
        assert again.deployments() == [d1, d2]
    finally:
        again.close()


def test_a_new_registry_starts_empty_and_creates_its_directory(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "a" / "b" / "registry.sqlite")
    try:
        assert (reg.services(), reg.hosts(), reg.deployments()) == ([], [], [])
    finally:
        reg.close()


# -- where services ran -------------------------------------------------------------------------


def test_the_hosts_a_service_ran_on_are_remembered_latest_first_and_bounded(
    registry: Registry, db: Path | str
) -> None:
    for number in range(SERVICE_HOSTS_KEPT + 4):
        registry.note_service_host("Echo", f"http://hp{number}:8001")
    registry.note_service_host("Echo", "http://hp5:8001")  # again: it moves to the front
    registry.note_service_host("Other", "http://hp0:8001")
    again = reopen(registry, db)
    try:
        hosts = again.service_hosts("Echo")
        assert len(hosts) == SERVICE_HOSTS_KEPT
        assert hosts[:2] == ["http://hp5:8001", f"http://hp{SERVICE_HOSTS_KEPT + 3}:8001"]
        assert "http://hp0:8001" not in hosts  # the oldest went
        assert again.service_hosts("Other") == ["http://hp0:8001"]
        assert again.service_hosts("Never") == []
    finally:
        again.close()


def test_a_registry_from_before_the_history_gains_it(sqlite_db: Path) -> None:
    db = sqlite_db
    registry = Registry(db)
    publish(registry, service())
    registry.close()
    old = sqlite3.connect(db)
    old.execute("DROP TABLE service_hosts")  # as a registry written before it existed
    old.commit()
    old.close()
    again = Registry(db)
    try:
        assert again.services() == [service()]
        again.note_service_host("Echo", "http://hp1:8001")
        assert again.service_hosts("Echo") == ["http://hp1:8001"]
    finally:
        again.close()


# -- threads -----------------------------------------------------------------------------------

THREADS, ROUNDS = 8, 100


def test_concurrent_writers_do_not_corrupt_state(registry: Registry, db: Path | str) -> None:
    """8 threads each add 100 deployments (spread over 3 services) and remove every other one,
    while a reader keeps reading. Memory and database must agree on the 400 survivors."""
    start = threading.Barrier(THREADS + 1)
    stop = threading.Event()
    failures: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            start.wait()
            for i in range(ROUNDS):
                registry.add_deployment(
                    deployment(f"t{t}-{i}", service=f"svc{i % 3}", minutes=t * ROUNDS + i)
                )
                if i % 2:
                    removed = registry.remove_deployment(f"t{t}-{i - 1}")
                    assert removed is not None and removed.id == f"t{t}-{i - 1}"
                registry.put_host(host(f"http://hp{t}", deployments=i))
        except BaseException as exc:
            failures.append(exc)

    def reader() -> None:
        try:
            start.wait()
            while not stop.is_set():
                for name in ("svc0", "svc1", "svc2"):
                    ids = [d.id for d in registry.deployments_of(name)]
                    assert len(ids) == len(set(ids)), "a deployment listed twice"
                everything = registry.deployments()
                assert len(everything) == len({d.id for d in everything})
                # A breath between reads: a reader spinning flat out holds the GIL for whole
                # switch intervals and slowed the writers ~60x (a minute on PostgreSQL, near
                # the join's bound), which says nothing of the registry.
                time.sleep(0.001)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(THREADS)]
    watcher = threading.Thread(target=reader)
    for thread in (*threads, watcher):
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    stop.set()
    watcher.join(timeout=60)
    assert not any(t.is_alive() for t in (*threads, watcher)), "a thread did not finish"
    assert not failures, failures

    expected = {f"t{t}-{i}" for t in range(THREADS) for i in range(ROUNDS) if i % 2}
    in_memory = {d.id for name in ("svc0", "svc1", "svc2") for d in registry.deployments_of(name)}
    assert in_memory == expected
    assert len(registry.deployments()) == len(expected)
    assert [h.deployments for h in registry.hosts()] == [ROUNDS - 1] * THREADS

    again = reopen(registry, db)
    try:
        assert {d.id for d in again.deployments()} == expected
        for name in ("svc0", "svc1", "svc2"):
            assert again.deployments_of(name) == sorted(
                again.deployments_of(name), key=lambda d: d.created
            )
    finally:
        again.close()


def test_an_sqlite_url_names_the_file_as_a_file_url_would(tmp_path: Path) -> None:
    """``--registry sqlite:///PATH``: the registry is that file (``sqlite:////PATH`` too)."""
    for url in (f"sqlite://{tmp_path}/one.sqlite", f"sqlite:///{tmp_path}/two.sqlite"):
        registry = Registry(url)
        registry.put_version(service())
        registry.close()
    for name in ("one.sqlite", "two.sqlite"):
        again = Registry(tmp_path / name)
        assert again.version("Echo", "1.0") is not None
        again.close()


def test_hosts_seen_since_reads_only_those_heard_lately(registry: Registry) -> None:
    registry.put_host(host("http://old:1", last_seen=T0))
    registry.put_host(host("http://new:1", last_seen=T0 + timedelta(minutes=5)))
    registry.put_host(host("http://whole:1", last_seen=T0 + timedelta(minutes=5, seconds=1)))
    registry.note_beats([("http://old:1", 1e12, host("http://old:1", capacity=9,
                                                    last_seen=T0 + timedelta(minutes=6)))])
    seen = registry.hosts_seen_since(T0 + timedelta(minutes=5))
    assert sorted(h.address for h in seen) == ["http://new:1", "http://old:1", "http://whole:1"]
    assert {h.address: h.capacity for h in seen}["http://old:1"] == 9  # its beat's figures
    later = registry.hosts_seen_since(T0 + timedelta(minutes=5, microseconds=1))
    assert sorted(h.address for h in later) == ["http://old:1", "http://whole:1"]
    assert registry.hosts_seen_since(T0 + timedelta(hours=1)) == []
