"""Restarts lose nothing and refuse no one, under load: 16 consumers keep calling Echo
(stateless, on two hosts) and Counter (stateful) through an SP that is restarted in place by
SIGHUP three times and once by SIGTERM under a socket holder (as systemd socket activation
holds it), while one host hangs (SIGSTOP, services and all) for 15 s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynasoar.consumer.provider_client import ProviderClient
from dynasoar.paths import samples_dir
from dynasoar.procs import Actor, first_line, start_actor

from .conftest import wait_for
from .load import Load, summary

pytestmark = pytest.mark.integration

CALL_TIMEOUT = 8.0
HOLDER = Path(__file__).with_name("socket_holder.py")


def descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (a host's service processes, in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Holder:
    """The SP run by tests/integration/socket_holder.py."""

    def __init__(self, work: Path, sp_args: list[str]) -> None:
        self.pidfile = work / "sp.pid"
        self.log = (work / "sp.log").open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(HOLDER),
                str(self.pidfile),
                "--",
                sys.executable,
                "-m",
                "dynasoar",
                "sp",
                *sp_args,
            ],
            stdout=subprocess.PIPE,
            stderr=self.log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        line = first_line(self.process, 30)
        assert line.startswith("holder listening on "), line
        self.url = line.removeprefix("holder listening on ")
        wait_for(lambda: self.pidfile.exists(), what="the SP to start")
        wait_for(self.healthy, timeout=60, what="the SP to answer")

    @property
    def sp_pid(self) -> int:
        return int(self.pidfile.read_text())

    def healthy(self) -> bool:
        try:
            return ProviderClient(self.url).call("ListServices") is not None
        except Exception:
            return False

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        assert self.process.stdout is not None
        self.process.stdout.close()
        self.log.close()


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[Holder, list[Actor]]]:
    sp = Holder(
        tmp_path,
        [
            "--data",
            str(tmp_path / "sp"),
            "--host-timeout",
            "3",
            "--call-timeout",
            str(CALL_TIMEOUT),
            "--reconcile-interval",
            "2",
            "--grace",
            "10",
        ],
    )
    hps: list[Actor] = []
    try:
        for i in range(3):
            hps.append(
                start_actor(
                    "hp",
                    [
                        "--port",
                        "0",
                        "--data",
                        str(tmp_path / f"hp{i}"),
                        "--sp",
                        sp.url,
                        "--heartbeat",
                        "1",
                    ],
                    tmp_path / f"hp{i}.log",
                )
            )
        client = ProviderClient(sp.url)
        wait_for(
            lambda: (
                {h.address for h in client.call("ListHosts") if h.state == "up"}
                >= {hp.url for hp in hps}
            ),
            what="the hosts to register",
        )
        yield sp, hps
    finally:
        for hp in hps:
            for pid in [hp.process.pid, *descendants(hp.process.pid)]:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            hp.stop()
        sp.stop()


def test_restarts_and_a_hung_host_under_load_lose_and_refuse_nothing(
    held: tuple[Holder, list[Actor]],
) -> None:
    sp, hps = held
    client = ProviderClient(sp.url)
    client.publish(samples_dir() / "echo")
    client.publish(samples_dir() / "counter")
    # Echo on two hosts (a stateless service fails over between them); Counter on the first.
    client.call("Deploy", name="Echo", host=hps[0].url)
    client.call("Deploy", name="Echo", host=hps[1].url)
    client.call("Deploy", name="Counter", host=hps[0].url)

    load = Load(sp.url, echo=12, counter=4, timeout=60).start()
    wait_for(lambda: load.count() > 200, what="calls to flow")
    sp_pid = sp.sp_pid
    before = {"sp fds": fds(sp_pid), "sp rss": rss_kib(sp_pid)}
    before |= {"hp fds": fds(hps[0].process.pid), "hp rss": rss_kib(hps[0].process.pid)}

    def calls_flow(extra: int = 100) -> None:
        target = load.count() + extra
        wait_for(lambda: load.count() >= target, timeout=60, what=f"{extra} more calls")

    for _ in range(3):
        os.kill(sp_pid, signal.SIGHUP)  # re-exec in place: same pid, socket kept
        time.sleep(0.5)
        calls_flow()
        assert sp.sp_pid == sp_pid

    hung = hps[1]
    frozen = [hung.process.pid, *descendants(hung.process.pid)]
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    time.sleep(15)
    for pid in frozen:
        os.kill(pid, signal.SIGCONT)
    calls_flow()

    os.kill(sp_pid, signal.SIGTERM)  # a stop and a new start: the holder keeps the socket
    wait_for(lambda: sp.sp_pid != sp_pid, timeout=60, what="the holder to start a new SP")
    calls_flow(300)
    outcomes = load.stop()

    echo = [o for o in outcomes if o.service == "Echo"]
    counter = [o for o in outcomes if o.service == "Counter"]
    report = summary(outcomes)
    print(report)
    assert echo and all(o.ok for o in echo), report
    # The counter never started again: every Increment answered, its values 1..n.
    values = sorted(int(o.value or 0) for o in counter if o.ok)
    assert all(o.ok for o in counter), report
    assert values == list(range(1, len(values) + 1)), report
    # No call waited longer than its deadline (+ 1 s).
    assert max(o.seconds for o in outcomes) <= CALL_TIMEOUT + 1, report
    # Descriptors and memory flat: the SP that took over, and a host that served throughout.
    after = {"sp fds": fds(sp.sp_pid), "sp rss": rss_kib(sp.sp_pid)}
    after |= {"hp fds": fds(hps[0].process.pid), "hp rss": rss_kib(hps[0].process.pid)}
    assert after["sp fds"] <= before["sp fds"] + 8, (before, after)
    assert after["hp fds"] <= before["hp fds"] + 8, (before, after)
    assert after["sp rss"] <= before["sp rss"] + 32 * 1024, (before, after)
    assert after["hp rss"] <= before["hp rss"] + 32 * 1024, (before, after)
    hosts = {h.address: h.state for h in client.call("ListHosts")}
    assert all(hosts[hp.url] == "up" for hp in hps), hosts
