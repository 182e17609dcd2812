"""One load for several SPs, through a real shared PostgreSQL registry: each SP writes its
counts, the leader reads the others' (in flight only while fresh, the last message always)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from dynasoar.provider import peerload
from dynasoar.provider.load import LoadTracker
from dynasoar.provider.peerload import SharedLoad
from dynasoar.provider.registry import DeploymentRecord, Registry


def test_the_leader_sees_what_the_others_relay(pg_url: str) -> None:
    leader, other, third = Registry(pg_url), Registry(pg_url), Registry(pg_url)
    try:
        leading, relaying, gone = LoadTracker(), LoadTracker(), LoadTracker()
        mine = SharedLoad(leader, leading)
        relaying.begin("d1")
        relaying.begin("d1")
        relaying.begin("d2")
        relaying.end("d2")
        SharedLoad(other, relaying).share()
        gone.begin("d1")  # an SP that wrote once, then stopped
        SharedLoad(third, gone).share()
        leading.begin("d1")  # the leader's own rows are not read back as another SP's
        mine.share()
        mine.read()
        assert leading.everywhere("d1") == 1 + 2 + 1
        assert leading.idle_for("d1") == 0.0 and leading.idle_for("d2") < 1.0
        with third.db.transaction() as db:  # its counts grow old: in flight no more
            db.execute("UPDATE deployment_load SET written = written - ?", (peerload.FRESH + 1,))
        mine.read()
        assert leading.everywhere("d1") == 1 + 0 + 0  # written long ago, all of them now
        relaying.end("d1")
        relaying.end("d1")
        SharedLoad(other, relaying).share()
        mine.read()
        assert leading.peers["d1"][0] == 0 and leading.peers["d1"][1] > time.time() - 5
    finally:
        for registry in (leader, other, third):
            registry.close()


def test_counts_of_deployments_that_are_no_more_are_pruned(pg_url: str) -> None:
    registry = Registry(pg_url)
    try:
        registry.add_deployment(
            DeploymentRecord("d1", "Echo", "1.0", "http://hp:1", "http://hp:2/", "ready",
                             datetime.now(UTC))
        )
        registry.share_load([("d1", 1, time.time()), ("d9", 2, time.time())], time.time())
        registry.prune_load()
        rows = registry.db.query("SELECT deployment_id FROM deployment_load")
        assert [r[0] for r in rows] == ["d1"]
    finally:
        registry.close()


def test_one_sp_on_sqlite_shares_nothing(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.sqlite")
    try:
        load = LoadTracker()
        load.begin("d1")
        shared = SharedLoad(registry, load)
        shared.share()
        shared.read()
        assert registry.db.query("SELECT COUNT(*) FROM deployment_load") == [(0,)]
        assert load.peers == {}
    finally:
        registry.close()
