"""The registry's PostgreSQL side against a real server: locks held across SPs (one holder at
a time, freed when the holder's session ends), which SP instances are alive, changes announced
to the other SPs (a deployment that goes, too), and a server that goes away and comes back."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import psycopg
import pytest

from dynasoar.errors import RegistryUnavailable
from dynasoar.pgserver import PostgresServer
from dynasoar.provider.database import Change
from dynasoar.provider.postgres import CONNECT_TIMEOUT, RETRY_SECONDS, PostgresDatabase
from dynasoar.provider.registry import DeploymentRecord, Registry


def deployment(deployment_id: str) -> DeploymentRecord:
    return DeploymentRecord(
        deployment_id, "Echo", "1.0", "http://hp1:8001", f"http://hp1:9000/{deployment_id}",
        "ready", datetime.now(UTC),
    )


def test_a_lock_has_one_holder_until_it_lets_go(pg_url: str) -> None:
    one, two = PostgresDatabase(pg_url), PostgresDatabase(pg_url)
    try:
        assert one.try_lock("dynasoar:deploy:Echo@1.0")
        assert not two.try_lock("dynasoar:deploy:Echo@1.0")
        assert not one.try_lock("dynasoar:deploy:Echo@1.0")  # not twice in one process either
        assert two.try_lock("dynasoar:deploy:Other@1.0")  # other names are other locks
        assert one.holds("dynasoar:deploy:Echo@1.0")
        assert two.held(["dynasoar:deploy:Echo@1.0", "nobody"]) == {"dynasoar:deploy:Echo@1.0"}
        one.unlock("dynasoar:deploy:Echo@1.0")
        assert two.try_lock("dynasoar:deploy:Echo@1.0")
    finally:
        one.close()
        two.close()


def test_a_dead_holders_locks_are_free_and_its_instance_is_not_alive(pg_url: str) -> None:
    dying, living = Registry(pg_url), Registry(pg_url)
    try:
        dying.hold_instance()
        living.hold_instance()
        assert dying.db.try_lock("dynasoar:leader")
        assert living.alive([dying.instance, living.instance, "sp-gone"]) == {
            dying.instance,
            living.instance,
        }
        # Its session ends (as when its process is killed): the server frees what it held.
        # (Its session is told apart from the other SP's by its name.)
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (f"dynasoar-sp {dying.instance} locks",),
            )
        time.sleep(0.2)
        assert not dying.db.holds("dynasoar:leader")
        assert living.alive([dying.instance, living.instance]) == {living.instance}
        assert living.db.try_lock("dynasoar:leader")
    finally:
        dying.close()
        living.close()


def test_a_running_sp_whose_session_was_lost_is_alive_again_at_its_next_look(
    pg_url: str,
) -> None:
    # The registry restarted (every session ended) but the SP runs on: at its next look it
    # takes its instance lock again, so no other SP takes it for dead (settling its moves,
    # taking over its replies).
    running, other = Registry(pg_url), Registry(pg_url)
    try:
        running.hold_instance()
        assert other.alive([running.instance]) == {running.instance}
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        time.sleep(0.2)
        assert other.alive([running.instance]) == set()  # (what the others see meanwhile)
        running.hold_instance()  # the SP's look, once a second
        assert other.alive([running.instance]) == {running.instance}
        running.hold_instance()  # held: nothing more to take
        assert other.alive([running.instance]) == {running.instance}
    finally:
        running.close()
        other.close()


def test_changes_reach_the_other_sps(pg_url: str) -> None:
    here, there = Registry(pg_url), Registry(pg_url)
    heard: list[Change | None] = []
    seen = threading.Event()
    try:
        original = there._changed

        def listening(change: Change | None) -> None:
            original(change)
            heard.append(change)
            seen.set()

        there._changed = listening  # type: ignore[method-assign]
        there.follow()
        time.sleep(0.5)  # LISTEN is in place
        here.add_deployment(deployment("d1"))
        assert seen.wait(10)
        deadline = time.monotonic() + 10
        while not there.deployments_of("Echo") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [d.id for d in there.deployments_of("Echo")] == ["d1"]
        assert ("deployment", "d1") in heard
        gone: list[DeploymentRecord] = []
        there.on_deployment_gone.append(gone.append)
        here.remove_deployment("d1")
        deadline = time.monotonic() + 10
        while not gone and time.monotonic() < deadline:
            time.sleep(0.05)
        assert there.deployments_of("Echo") == []
        assert [d.id for d in gone] == ["d1"]  # the other SP is told it went
    finally:
        here.close()
        there.close()


def test_a_server_away_fails_at_once_and_is_used_again_when_back() -> None:
    server = PostgresServer.create()  # its own: this test stops it
    try:
        registry = Registry(server.url)
        registry.add_deployment(deployment("d1"))
        server.stop()
        started = time.monotonic()
        with pytest.raises(RegistryUnavailable):
            registry.add_deployment(deployment("d2"))
        with pytest.raises(RegistryUnavailable):
            registry.db.try_lock("dynasoar:deploy:Echo")
        # The deadline under test (not a speed): each call gives up within its connect_timeout
        # (the server is gone: refused at once, here), never hangs.
        assert time.monotonic() - started < 2 * CONNECT_TIMEOUT + 4
        assert [d.id for d in registry.deployments_of("Echo")] == ["d1"]  # memory still serves
        server.start()
        time.sleep(RETRY_SECONDS)
        registry.add_deployment(deployment("d2"))  # a new connection, by itself
        assert {d.id for d in Registry(server.url).deployments()} == {"d1", "d2"}
        registry.close()
    finally:
        server.destroy()


def test_each_sessions_name_says_which_sp_instance_it_is_and_its_job(pg_url: str) -> None:
    one, two = Registry(pg_url), Registry(pg_url)
    wanted = {
        f"dynasoar-sp {registry.instance} {job}"
        for registry in (one, two)
        for job in ("queries", "locks", "listen")
    }

    def names() -> set[str]:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            rows = admin.execute(
                "SELECT application_name FROM pg_stat_activity WHERE application_name "
                "LIKE 'dynasoar-sp %'"
            ).fetchall()
        return {str(r[0]) for r in rows}

    try:
        for registry in (one, two):
            registry.hold_instance()
            registry.db.listen(lambda change: None)
        deadline = time.monotonic() + 10.0
        while not wanted <= names() and time.monotonic() < deadline:
            time.sleep(0.05)  # (the listening thread connects by itself)
        assert wanted <= names()
    finally:
        one.close()
        two.close()
