"""The log store on disk: rotation keeps every log within its bound, tails and cursors read the
right bytes (whole lines, whole characters, XML-safe), ended logs are kept per service up to the
limit, a restart finds them, and only the Host Provider's user can read them."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynasoar.errors import InvalidRequest
from dynasoar.host.logpump import LogPump
from dynasoar.host.logstore import LogLimits, LogStore


@pytest.fixture
def pump() -> Iterator[LogPump]:
    pump = LogPump()
    yield pump
    pump.close()


def test_rotation_keeps_the_bound_and_the_latest_half(tmp_path: Path, pump: LogPump) -> None:
    store = LogStore(tmp_path, LogLimits(bytes_per_deployment=16 << 10), pump)
    log = store.open("a", "S", "1", "code")
    for n in range(2000):
        log.write(b"%05d\n" % n)
    sizes = sorted(p.stat().st_size for p in log.directory.glob("*.log"))
    assert sum(sizes) <= 16 << 10 and len(sizes) == 2
    chunk = log.chunk(1 << 20, cursor=0)
    assert chunk.end == 12_000 and chunk.next == chunk.end
    assert chunk.end - chunk.first >= 8 << 10  # at least half the bound is always there
    assert chunk.text.splitlines()[-1] == "01999"
    # the cursor 0 was rotated away: the text starts at the first whole line kept
    assert chunk.first <= chunk.start < chunk.first + 6 and chunk.start % 6 == 0
    names = sorted(int(p.name.removesuffix(".log")) for p in log.directory.glob("*.log"))
    assert names[0] == chunk.first  # segments are named by their offset in the stream


def test_one_big_write_is_split_across_segments(tmp_path: Path, pump: LogPump) -> None:
    store = LogStore(tmp_path, LogLimits(bytes_per_deployment=16 << 10), pump)
    log = store.open("a", "S", "1", "code")
    log.write(b"y" * (100 << 10))
    assert sum(p.stat().st_size for p in log.directory.glob("*.log")) <= 16 << 10
    assert log.chunk(1, tail=0).end == 100 << 10


def test_tail_gives_the_last_lines(tmp_path: Path, pump: LogPump) -> None:
    store = LogStore(tmp_path, LogLimits(), pump)
    log = store.open("a", "S", "1", "code")
    log.write(b"one\ntwo\nthree\nfour")
    assert log.chunk(1000, tail=2).text == "three\nfour"
    log.write(b"\n")
    assert log.chunk(1000, tail=2).text == "three\nfour\n"
    assert log.chunk(1000, tail=10).text == "one\ntwo\nthree\nfour\n"
    assert log.chunk(1000, tail=0).text == ""
    # a tail bigger than the reply's limit starts at a whole line inside the limit
    capped = log.chunk(10, tail=10)
    assert capped.text == "four\n" and capped.start == 14


def test_a_cursor_read_ends_on_a_line_and_a_character(tmp_path: Path, pump: LogPump) -> None:
    store = LogStore(tmp_path, LogLimits(), pump)
    log = store.open("a", "S", "1", "code")
    log.write("first\nsecond is long and é\n".encode())
    first = log.chunk(14, cursor=0)
    assert (first.text, first.next) == ("first\n", 6)
    # no newline within the limit: cut at a character, never inside é (two bytes)
    text = "é" * 10
    log2 = store.open("b", "S", "1", "code")
    log2.write(text.encode())
    part = log2.chunk(5, cursor=0)
    assert part.text == "éé" and part.next == 4
    rest = log2.chunk(100, cursor=part.next)
    assert part.text + rest.text == text


def test_output_that_is_not_xml_text_is_made_so(tmp_path: Path, pump: LogPump) -> None:
    store = LogStore(tmp_path, LogLimits(), pump)
    log = store.open("a", "S", "1", "code")
    log.write(b"\x1b[1mbold\x00\xff\xfe\n")
    assert log.chunk(100, cursor=0).text == "\ufffd[1mbold\ufffd\ufffd\ufffd\n"


def test_ended_logs_are_kept_per_service_up_to_the_limit(tmp_path: Path, pump: LogPump) -> None:
    store = LogStore(tmp_path, LogLimits(kept_per_service=2), pump)
    for number in range(5):
        log = store.open(f"s{number}", "S", "1", "code")
        log.write(b"deployment %d\n" % number)
        store.ended(f"s{number}", "undeployed")
    running = store.open("live", "S", "1", "code")
    running.write(b"still here\n")
    other = store.open("o1", "Other", "1", "code")
    store.ended("o1", "failed", "it did not start")
    assert [c.deployment for c in store.read("S")] == ["s3", "s4", "live"]
    assert [c.text for c in store.read("S", "s4")] == ["deployment 4\n"]
    assert store.read("S", "s0") == []
    assert not (tmp_path / "s0").exists()
    (failed,) = store.read("Other")
    assert (failed.state, failed.reason) == ("failed", "it did not start")
    assert failed.ended is not None and other.meta.ended == failed.ended


def test_a_restart_keeps_the_logs_and_their_offsets(tmp_path: Path, pump: LogPump) -> None:
    store = LogStore(tmp_path, LogLimits(bytes_per_deployment=16 << 10), pump)
    log = store.open("a", "S", "1", "code")
    for n in range(3000):
        log.write(b"%05d\n" % n)
    before = log.chunk(1 << 20, cursor=0)
    store.open("gone", "S", "1", "code").write(b"bye\n")
    store.ended("gone", "undeployed")
    log.closed()

    again = LogStore(tmp_path, LogLimits(bytes_per_deployment=16 << 10), pump)
    chunks = {c.deployment: c for c in again.read("S")}
    assert chunks["a"].state == "lost" and chunks["a"].reason == "the host stopped"
    assert (chunks["a"].first, chunks["a"].end, chunks["a"].text) == (
        before.first, before.end, before.text,
    )  # fmt: skip
    assert chunks["gone"].state == "undeployed" and chunks["gone"].text == "bye\n"


def test_only_the_hosts_user_can_read_the_logs(tmp_path: Path, pump: LogPump) -> None:
    store = LogStore(tmp_path / "logs", LogLimits(), pump)
    log = store.open("a", "S", "1", "code")
    log.write(b"secret\n")
    for path in [tmp_path / "logs", log.directory]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    for path in log.directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.stat().st_uid == os.getuid()


@pytest.mark.parametrize("unusable", ["", "..", "../x", "a/b", ".hidden", "x" * 200])
def test_a_deployment_id_that_is_no_directory_name_is_refused(
    tmp_path: Path, pump: LogPump, unusable: str
) -> None:
    store = LogStore(tmp_path / "logs", LogLimits(), pump)
    with pytest.raises(InvalidRequest):
        store.open(unusable, "S", "1", "code")
    assert list((tmp_path / "logs").iterdir()) == []
