"""The log pump against real processes and pipes: a writer that never stops is never blocked and
its log stays within its bound; a reader following with cursors sees every line once, across
rotations; EOF, drain and release close what they must."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynasoar.host.logpump import LogPump
from dynasoar.host.logstore import LogLimits, LogStore, ServiceLog

BOUND = 64 << 10


@pytest.fixture
def pump() -> Iterator[LogPump]:
    pump = LogPump()
    yield pump
    pump.close()


def store_of(tmp_path: Path, pump: LogPump, bound: int = BOUND) -> LogStore:
    return LogStore(tmp_path / "logs", LogLimits(bytes_per_deployment=bound), pump)


def on_disk(log: ServiceLog) -> int:
    """Bytes of the log's segments (one rotated away while we look counts for nothing)."""
    total = 0
    for path in log.directory.glob("*.log"):
        try:
            total += path.stat().st_size
        except FileNotFoundError:
            pass
    return total


def spawn(code: str) -> tuple[subprocess.Popen[bytes], int]:
    """A Python child writing to a pipe; returns it and the pipe's read end."""
    read, write = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=write, stderr=write, stdin=subprocess.DEVNULL
    )
    os.close(write)
    return child, read


def wait_until(predicate, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


NEVER_STOPS = """
import os, sys
line = b"x" * 99 + b"\\n"
block = line * 1000
while True:
    os.write(1, block)
"""


def test_a_writer_that_never_stops_is_drained_within_the_bound(
    tmp_path: Path, pump: LogPump
) -> None:
    store = store_of(tmp_path, pump)
    log = store.open("forever", "Chatty", "1", "code")
    child, read = spawn(NEVER_STOPS)
    log.attach(read)
    try:
        # 100 times the bound and 100 times a pipe's buffer went through: the writer was read
        wait_until(lambda: log.chunk(1, tail=0).end > 100 * BOUND, "the writer's output")
        assert child.poll() is None
        assert on_disk(log) <= BOUND
        assert len(list(log.directory.glob("*.log"))) <= 2
        tail = log.chunk(BOUND, tail=3)  # the writer may be mid-line: the last one is partial
        last = tail.text.splitlines()
        assert len(last) == 3 and last[:2] == ["x" * 99] * 2 and set(last[2]) == {"x"}
        assert tail.next == tail.end
    finally:
        child.kill()
        child.wait()
    store.ended("forever", "exited")  # drains what is left and closes the pipe
    assert on_disk(log) <= BOUND
    meta = store.read("Chatty")[0]
    assert meta.state == "exited" and meta.first > 0 and meta.end - meta.first <= BOUND


NUMBERED = """
import os, sys, time
for n in range(int(sys.argv[1])):
    os.write(1, b"line %06d %s\\n" % (n, b"." * 40))
    if n % 200 == 0:
        time.sleep(0.01)
"""


def test_a_reader_follows_across_rotations_and_sees_every_line_once(
    tmp_path: Path, pump: LogPump
) -> None:
    lines = 20_000  # ~1 MiB of output through a 64 KiB log: 30 rotations
    store = store_of(tmp_path, pump)
    log = store.open("numbered", "Counter", "1", "code")
    read, write = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-c", NUMBERED, str(lines)], stdout=write, stdin=subprocess.DEVNULL
    )
    os.close(write)
    log.attach(read)
    seen: list[str] = []
    cursor = 0
    rotations_seen = 0
    last_first = 0
    while True:
        chunk = log.chunk(BOUND // 4, cursor=cursor)
        assert chunk.start == cursor, "the reader kept up: nothing may be skipped"
        seen += chunk.text.splitlines()
        cursor = chunk.next
        if chunk.first != last_first:
            rotations_seen += 1
            last_first = chunk.first
        if child.poll() is not None and chunk.next == chunk.end:
            log.drain()
            if log.chunk(BOUND, cursor=cursor).next == cursor:
                break
    assert rotations_seen >= 10
    assert seen == [f"line {n:06d} {'.' * 40}" for n in range(lines)]
    assert on_disk(log) <= BOUND


def test_a_reader_that_falls_behind_is_told_what_it_missed(tmp_path: Path, pump: LogPump) -> None:
    store = store_of(tmp_path, pump)
    log = store.open("behind", "Counter", "1", "code")
    child, read = spawn(NUMBERED.replace("sys.argv[1]", "5000"))
    log.attach(read)
    child.wait()
    log.drain()
    chunk = log.chunk(BOUND, cursor=0)
    # the first bytes were rotated away: the reply starts at the first whole line kept
    assert chunk.first > 0 and chunk.first <= chunk.start < chunk.first + 53
    first_line = chunk.text.splitlines()[0]
    assert first_line.startswith("line ") and len(first_line) == len("line 000000 ") + 40
    rest = log.chunk(BOUND, cursor=chunk.next)
    assert rest.start == chunk.next
    assert (chunk.text + rest.text).splitlines()[-1] == f"line {4999:06d} {'.' * 40}"


def test_many_writers_share_one_pump(tmp_path: Path, pump: LogPump) -> None:
    store = store_of(tmp_path, pump, bound=1 << 20)
    children = []
    for number in range(8):
        log = store.open(f"d{number}", "Many", "1", "code")
        child, read = spawn(f"import os\nfor n in range(3000): os.write(1, b'{number} %d\\n' % n)")
        log.attach(read)
        children.append((child, log, number))
    for child, log, number in children:
        child.wait()
        log.drain()
        text = log.chunk(1 << 20, cursor=0).text
        assert text.splitlines() == [f"{number} {n}" for n in range(3000)]


def test_release_closes_a_pipe_whose_writer_lives_on(tmp_path: Path, pump: LogPump) -> None:
    store = store_of(tmp_path, pump)
    log = store.open("held", "Held", "1", "code")
    read, write = os.pipe()  # this test keeps the write end: no EOF will come
    log.attach(read)
    os.write(write, b"before release\n")
    store.ended("held", "undeployed")
    with pytest.raises(BrokenPipeError):
        os.write(write, b"nobody reads this\n")  # the pump closed its end
    os.close(write)
    (chunk,) = store.read("Held")
    assert (chunk.text, chunk.state) == ("before release\n", "undeployed")


def test_a_closed_pump_closes_what_it_is_given(tmp_path: Path) -> None:
    pump = LogPump()
    store = store_of(tmp_path, pump)
    log = store.open("late", "Late", "1", "code")
    pump.close()
    read, write = os.pipe()
    log.attach(read)
    with pytest.raises(BrokenPipeError):
        os.write(write, b"x")
    os.close(write)
    done = threading.Event()
    threading.Thread(target=lambda: (log.drain(), done.set()), daemon=True).start()
    assert done.wait(10)
