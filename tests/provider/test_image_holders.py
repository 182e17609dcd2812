"""Who holds which VM image, in a real registry (PostgreSQL shared by two SPs, and SQLite): the
table made by migration on both, rows that follow what an SP holds, only running holders
offered, and the shared secret that authenticates SPs reading each other's images."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynasoar.provider.image_holders import ImageHolders
from dynasoar.provider.registry import Registry

A, B, C = "a" * 64, "b" * 64, "c" * 64


@pytest.fixture
def two(pg_url: str) -> Iterator[tuple[Registry, Registry]]:
    one, other = Registry(pg_url), Registry(pg_url)
    one.hold_instance()
    other.hold_instance()
    try:
        yield one, other
    finally:
        one.close()
        other.close()


def test_both_sps_read_one_secret_and_accept_each_others_requests(
    two: tuple[Registry, Registry],
) -> None:
    sp1, sp2 = ImageHolders(two[0]), ImageHolders(two[1])
    sp1.url, sp2.url = "http://127.0.0.1:1001", "http://127.0.0.1:1002"
    assert sp2.verify(A, sp1.sign(A, sp2.url)) is None
    assert sp1.verify(A, sp2.sign(A, sp1.url)) is None


def test_a_request_is_refused_unless_it_proves_this_registrys_secret(
    two: tuple[Registry, Registry], tmp_path: Path
) -> None:
    holders = ImageHolders(two[0])
    holders.url = me = "http://127.0.0.1:1001"
    stranger = ImageHolders(Registry(tmp_path / "other.sqlite"))  # another registry's secret
    assert "does not match" in (holders.verify(A, stranger.sign(A, me)) or "")
    assert "does not match" in (holders.verify(B, holders.sign(A, me)) or "")  # another image
    assert "does not match" in (holders.verify(A, holders.sign(A, "http://127.0.0.1:1002")) or "")
    assert "no X-Dynasoar-Image-Auth" in (holders.verify(A, None) or "")
    assert "not 'TIME NONCE HMAC'" in (holders.verify(A, "yesterday abc") or "")
    stamp, _, mac = holders.sign(A, me).split()
    assert "not 'TIME NONCE HMAC'" in (holders.verify(A, f"{stamp} {mac}") or "")  # no nonce
    late = holders.sign(A, me, at=time.time() - holders.max_skew - 5)
    assert "from this SP's clock" in (holders.verify(A, late) or "")
    early = holders.sign(A, me, at=time.time() + holders.max_skew + 5)
    assert "from this SP's clock" in (holders.verify(A, early) or "")
    assert holders.verify(A, holders.sign(A, me, at=time.time() - holders.max_skew + 5)) is None


def test_a_header_is_accepted_once(two: tuple[Registry, Registry]) -> None:
    holders = ImageHolders(two[0])
    holders.url = "http://127.0.0.1:1001"
    value = holders.sign(A, holders.url)
    assert holders.verify(A, value) is None
    assert "used before" in (holders.verify(A, value) or "")
    assert holders.verify(A, holders.sign(A, holders.url)) is None  # a new one is another nonce
    # Refused ones are not remembered: a forged header does not spend a real one's nonce.
    stamp, nonce, _ = (fresh := holders.sign(A, holders.url)).split()
    assert "does not match" in (holders.verify(A, f"{stamp} {nonce} {'0' * 64}") or "")
    assert holders.verify(A, fresh) is None


def test_an_sp_records_what_it_holds_and_its_peers_see_only_running_holders(
    two: tuple[Registry, Registry], pg_url: str
) -> None:
    sp1, sp2 = ImageHolders(two[0]), ImageHolders(two[1])
    sp1.start("http://127.0.0.1:1001", {A: 10, B: 20})
    sp2.start("http://127.0.0.1:1002", {})
    assert [(h.url, h.size) for h in sp2.holders(A)] == [("http://127.0.0.1:1001", 10)]
    assert sp1.holders(A) == []  # not itself
    assert sp2.holders(C) == []
    # It took another in (a publish, a fetch); then it starts again without B (its disk lost it).
    sp1.hold([(C, 30)])
    assert [h.size for h in sp2.holders(C)] == [30]
    sp1.start("http://127.0.0.1:1001", {A: 10, C: 30})
    assert sp2.holders(B) == []
    # Its process ends: its rows stay (it holds them on disk), but it is not offered.
    two[0].close()
    assert sp2.holders(A) == []
    assert [h.url for h in sp2.recorded(A)] == ["http://127.0.0.1:1001"]
    # Started again (a new instance, the same URL): offered again.
    again = Registry(pg_url)
    again.hold_instance()
    try:
        ImageHolders(again).start("http://127.0.0.1:1001", {A: 10})
        assert [h.instance for h in sp2.holders(A)] == [again.instance]
        assert sp2.holders(C) == []
    finally:
        again.close()


def test_a_holder_that_says_it_lacks_an_image_is_dropped(two: tuple[Registry, Registry]) -> None:
    sp1, sp2 = ImageHolders(two[0]), ImageHolders(two[1])
    sp1.start("http://127.0.0.1:1001", {A: 10})
    sp2.drop(A, "http://127.0.0.1:1001")
    assert sp2.holders(A) == [] and sp2.recorded(A) == []


def test_the_table_is_made_in_sqlite_too_and_kept_across_restarts(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.sqlite")
    holders = ImageHolders(registry)
    holders.start("http://127.0.0.1:1001", {A: 10})
    signed = holders.sign(A, "http://127.0.0.1:1001")
    registry.close()
    registry = Registry(tmp_path / "registry.sqlite")
    try:
        again = ImageHolders(registry)
        again.url = "http://127.0.0.1:1001"
        assert again.verify(A, signed) is None  # the secret is kept, not made anew
        assert [h.size for h in again.recorded(A)] == [10]
    finally:
        registry.close()
