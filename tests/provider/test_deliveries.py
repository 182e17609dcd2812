"""The reply store on a real SQLite file: a table of its own in the registry's database, made
by the registry's migrations; an accepted message, its phases, its reply; claiming, retrying,
giving up, counting; what survives a restart; what is pruned."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from dynasoar.errors import Busy
from dynasoar.provider.deliveries import DeliveryStore
from dynasoar.provider.registry import Registry

HEAD = [("Content-Type", "text/xml; charset=utf-8"), ("SOAPAction", '"urn:a"')]


def store(path: Path, retry_for: float = 60.0) -> DeliveryStore:
    return DeliveryStore(Registry(path / "registry.sqlite"), retry_for)


def accept(s: DeliveryStore, body: bytes = b"<Envelope/>") -> str:
    return s.accept(
        service="Echo",
        consumer="CN=alice",
        preferred=frozenset({"http://hp1"}),
        message_id="urn:uuid:m",
        request_head=HEAD,
        request=body,
    )


def test_the_table_is_made_by_the_registrys_migrations(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.sqlite")
    DeliveryStore(registry, 60.0)
    registry.close()
    with sqlite3.connect(tmp_path / "registry.sqlite") as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        columns = {r[1] for r in db.execute("PRAGMA table_info(deliveries)")}
    assert {"service_versions", "routes", "hosts", "deployments", "deliveries"} <= tables
    assert {"state", "phase", "request", "reply", "attempts", "next_attempt"} <= columns


def test_an_accepted_message_survives_a_restart(tmp_path: Path) -> None:
    s = store(tmp_path)
    job = accept(s, b"\x00binary-safe\xff")
    s.reached(job, "relay")
    again = store(tmp_path)  # a new process on the same file
    assert again.job_ids() == [job]
    taken = again.job(job)
    assert taken is not None
    assert (taken.id, taken.phase, taken.service, taken.consumer) == (
        job,
        "relay",
        "Echo",
        "CN=alice",
    )
    assert taken.preferred == frozenset({"http://hp1"})
    assert taken.request == b"\x00binary-safe\xff" and taken.request_head == HEAD
    assert store(tmp_path).pending() == (1, len(b"\x00binary-safe\xff"))


def test_a_message_done_with_nothing_to_send_is_forgotten(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.discard(accept(s))
    assert s.job_ids() == [] and s.pending() == (0, 0)


def test_the_reply_takes_the_messages_row(tmp_path: Path) -> None:
    s = store(tmp_path)
    job = accept(s)
    assert s.ready(job, address="http://c/r", head=HEAD, body=b"<reply/>", message_id="m") == job
    assert s.job_ids() == [] and s.job(job) is None
    assert s.pending() == (1, len(b"<reply/>")), "the message's bytes are gone, the reply's kept"
    (due,) = s.due(time.time() + 1, 10)
    assert (due.id, due.address, due.body, due.head, due.attempts) == (
        job,
        "http://c/r",
        b"<reply/>",
        HEAD,
        0,
    )
    other = s.ready(None, address="http://c/f", head=HEAD, body=b"<fault/>", message_id="m2")
    assert other != job and len(s.due(time.time() + 1, 10)) == 2


def test_an_attempt_is_claimed_once_and_counted(tmp_path: Path) -> None:
    s = store(tmp_path)
    d = s.ready(None, address="http://c/r", head=HEAD, body=b"x", message_id=None)
    assert s.claim(d) and not s.claim(d)
    s.retry(d, time.time() + 100, "HTTP 503")
    assert s.due(time.time(), 10) == [], "not due before its time"
    assert s.state_of(d) == ("ready", 1, "HTTP 503")
    assert s.next_due() is not None and s.next_due() > time.time()  # type: ignore[operator]
    s.retry(d, 0, "")  # (a ready row is not 'sending': nothing changes)
    assert s.state_of(d) == ("ready", 1, "HTTP 503")


def test_delivered_and_undeliverable_rows_keep_no_bytes_and_are_counted(tmp_path: Path) -> None:
    s = store(tmp_path)
    one = s.ready(None, address="http://c/1", head=HEAD, body=b"1", message_id=None)
    two = s.ready(None, address="http://c/2", head=HEAD, body=b"2", message_id=None)
    s.claim(one)
    s.delivered(one)
    s.claim(two)
    assert s.give_up(two, "refused with HTTP 400") == 1
    assert s.counts() == {"delivered": 1, "undeliverable": 1}
    assert s.state_of(two) == ("undeliverable", 1, "refused with HTTP 400")
    with sqlite3.connect(tmp_path / "registry.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM deliveries WHERE reply IS NOT NULL").fetchone() == (
            0,
        )
    assert s.pending() == (0, 0)


def test_an_attempt_a_stop_cut_short_is_made_again(tmp_path: Path) -> None:
    s = store(tmp_path)
    d = s.ready(None, address="http://c/r", head=HEAD, body=b"x", message_id=None)
    s.claim(d)
    again = store(tmp_path)
    assert again.recover() == 1
    assert [x.id for x in again.due(time.time() + 1, 10)] == [d]


def test_finished_rows_are_pruned_to_the_most_recent(tmp_path: Path) -> None:
    s = store(tmp_path)
    ids = [
        s.ready(None, address="http://c", head=HEAD, body=b"x", message_id=None) for _ in range(5)
    ]
    for d in ids:
        s.claim(d)
        s.delivered(d)
    pending = s.ready(None, address="http://c", head=HEAD, body=b"x", message_id=None)
    s.prune(2)
    assert s.counts() == {"delivered": 2, "ready": 1}
    assert s.state_of(pending) == ("ready", 0, None)


def test_the_store_is_bounded_in_rows_and_bytes(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.sqlite")
    by_rows = DeliveryStore(registry, 60.0, max_rows=1)
    by_rows.check_room()
    job = accept(by_rows)
    with pytest.raises(Busy):
        by_rows.check_room()
    with pytest.raises(Busy):
        by_rows.ready(None, address="http://c", head=HEAD, body=b"x", message_id=None)
    # The accepted message's own reply takes its row: no more room needed.
    assert by_rows.ready(job, address="http://c", head=HEAD, body=b"x", message_id=None) == job
    by_bytes = DeliveryStore(Registry(tmp_path / "other.sqlite"), 60.0, max_bytes=10)
    accept(by_bytes, b"0123456789")
    with pytest.raises(Busy):
        by_bytes.check_room()


def test_sps_sharing_a_registry_take_up_only_a_stopped_ones_messages(pg_url: str) -> None:
    """On a shared PostgreSQL registry: an SP that is running keeps its accepted messages and
    its replies being sent; when it stops, another takes them up, once."""
    running, other = Registry(pg_url), Registry(pg_url)
    running.hold_instance()
    other.hold_instance()
    mine, theirs = DeliveryStore(running, 60.0), DeliveryStore(other, 60.0)
    job = accept(mine)
    reply = mine.ready(None, address="http://a/", head=HEAD, body=b"r", message_id=None)
    assert mine.claim(reply)  # being sent by the running SP
    assert theirs.job_ids() == [] and theirs.recover() == 0  # not the other's to touch
    running.close()  # it stops: its session, and the lock saying it runs, end
    assert theirs.job_ids() == [job]
    taken = theirs.job(job)
    assert taken is not None and taken.id == job
    assert theirs.recover() == 1  # the reply its stop cut short is tried again
    third = Registry(pg_url)
    third.hold_instance()
    assert DeliveryStore(third, 60.0).job_ids() == []  # taken once: the other runs it now
    other.close()
    third.close()
