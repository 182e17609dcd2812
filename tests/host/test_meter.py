"""A Host Provider's meter: CPU seconds as the process's own accounting says, memory integrated
over time, image bytes as given; an ended deployment's final figures kept (bounded)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from dynasoar.host import meter
from dynasoar.host.meter import UsageMeter


def test_cpu_and_memory_of_a_real_process_are_metered() -> None:
    burner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nt=time.process_time()\n"
            "while time.process_time()-t<1.0: pass\ntime.sleep(30)",
        ]
    )
    ticks = float(os.sysconf("SC_CLK_TCK"))

    def read() -> tuple[float, int]:
        with open(f"/proc/{burner.pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        with open(f"/proc/{burner.pid}/statm", "rb") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        return sum(int(x) for x in fields[11:15]) / ticks, rss

    m = UsageMeter(interval=0.1)
    m.start()
    try:
        m.track("d1", "Burner", "1.0", 12345, read)
        deadline = time.monotonic() + 60  # however loaded the machine, it burns its second
        while m.all()[0].cpu_seconds < 0.95 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)  # then sleeps: its CPU time stays where it is
        (running,) = m.all()
        assert running.state == "running" and running.image_bytes == 12345
        assert 0.95 <= running.cpu_seconds <= 1.5
        assert running.memory_gib_seconds > 0
        m.end("d1")
        (ended,) = m.all()
        assert ended.state == "ended" and ended.ended is not None
        assert ended.cpu_seconds >= running.cpu_seconds
    finally:
        m.close()
        burner.kill()
        burner.wait()


def test_a_reader_that_fails_keeps_what_was_measured() -> None:
    m = UsageMeter(interval=60)
    calls = iter([(1.5, 1 << 20)])

    def read() -> tuple[float, int]:
        try:
            return next(calls)
        except StopIteration:
            raise OSError("gone") from None

    m.track("d1", "S", "1", 0, read)
    m.end("d1")
    (ended,) = m.all()
    assert ended.cpu_seconds == 1.5


def test_ended_figures_are_bounded(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(meter, "ENDED_KEPT", 3)
    m = UsageMeter(interval=60)
    for i in range(5):
        m.track(f"d{i}", "S", "1", 0, lambda: (0.0, 0))
        m.end(f"d{i}")
    assert [c.id for c in m.all()] == ["d2", "d3", "d4"]
