"""deploy/haproxy/haproxy.cfg in front of two SPs on a shared PostgreSQL registry with three
HPs, all real processes: 16 consumers call through HAProxy, one SP is SIGKILLed, and no call
fails that had not reached it (those it would have refused go to the other SP; only messages
it held when it died can fail: HAProxy does not send again what may have reached a service),
the control loop moves to the survivor, and the service is deployed once, ever."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dynasoar.consumer.provider_client import ProviderClient
from dynasoar.paths import samples_dir

from .conftest import wait_for
from .grid import Grid, beats_heard, downs, hosts_up
from .load import Load, summary
from .test_shared_registry import hosted
from .wire import ECHO_ACTION, echo_body, envelope, get, post

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy" / "haproxy.cfg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def haproxy_config(bind: str, sps: list[str]) -> str:
    """The shipped configuration, with this test's address and SPs in its two marked places."""
    text = CONFIG.read_text()
    text, bound = re.subn(r"(?m)^    bind \S+$", f"    bind {bind}", text)
    assert bound == 1, "the shipped config binds one address"
    head, marker, _ = text.partition("    # dynasoar-sps: one line per SP\n")
    assert marker, "the shipped config marks where its SPs are"
    servers = "".join(
        f"    server sp{i} {url.removeprefix('http://')} check\n" for i, url in enumerate(sps, 1)
    )
    return head + marker + servers


HOST_TIMEOUT = 3.0


@contextmanager
def _behind_haproxy(
    tmp_path: Path, pg_url: str, hosts_via_lb: bool, host_timeout: float = HOST_TIMEOUT
) -> Iterator[tuple[Grid, str]]:
    """Two SPs on one registry behind the shipped HAProxy config, and three hosts beating every
    second: each to one SP, or (``hosts_via_lb``) all through HAProxy, to whichever SP it picks."""
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        pytest.skip("HAProxy is not installed (scripts/install-system.sh installs it)")
    port = free_port()
    lb = f"http://127.0.0.1:{port}"
    grid = Grid(tmp_path, pg_url)
    process = None
    try:
        timeout = str(host_timeout)
        a = grid.start_sp("--public-url", lb, "--host-timeout", timeout)
        b = grid.start_sp("--public-url", lb, "--host-timeout", timeout)
        if not hosts_via_lb:
            for sp in (a, b, a):
                grid.add_hp(sp, ["--heartbeat", "1"])
        config = tmp_path / "haproxy.cfg"
        config.write_text(haproxy_config(f"127.0.0.1:{port}", [a.url, b.url]))
        log = (tmp_path / "haproxy.log").open("wb")
        process = subprocess.Popen(
            [haproxy, "-f", str(config), "-db"], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_for(lambda: _answers(lb), what="HAProxy to send to a ready SP")
        if hosts_via_lb:
            for _ in range(3):
                grid.add_hp(a, ["--heartbeat", "1"], via=lb)
        yield grid, lb
    finally:
        for hp in grid.hps:  # first: a host beating through HAProxy deregisters through it
            hp.stop()
        if process is not None:
            process.terminate()
            process.wait(timeout=10)
        grid.stop()


@pytest.fixture
def balanced(tmp_path: Path, pg_url: str) -> Iterator[tuple[Grid, str]]:
    with _behind_haproxy(tmp_path, pg_url, hosts_via_lb=False) as found:
        yield found


@pytest.fixture
def beating_through(tmp_path: Path, pg_url: str) -> Iterator[tuple[Grid, str]]:
    """As ``balanced``, but every host is started with ``--sp`` the HAProxy URL."""
    with _behind_haproxy(tmp_path, pg_url, hosts_via_lb=True) as found:
        yield found


def _answers(url: str) -> bool:
    try:
        return get(f"{url}/readyz", timeout=2).status == 200
    except OSError:
        return False


def echo_deployed(grid: Grid, lb: str) -> None:
    """Echo published through HAProxy, known to every SP, and deployed by a first call."""
    ProviderClient(lb).publish(samples_dir() / "echo")
    for sp in grid.sps:
        wait_for(lambda sp=sp: get(f"{sp.url}/services/Echo?wsdl").status == 200)
    first = post(f"{lb}/services/Echo", envelope(echo_body("cold")), soap_action=ECHO_ACTION)
    assert first.status == 200, first.body[:500]


def test_an_sp_killed_behind_haproxy_costs_no_call(balanced: tuple[Grid, str]) -> None:
    grid, lb = balanced
    a, b = grid.sps
    echo_deployed(grid, lb)
    assert grid.leader() is a
    load = Load(lb, echo=16, counter=0, timeout=60.0).start()
    try:
        wait_for(lambda: load.count() > 300, timeout=60, what="calls through HAProxy")
        before = time.monotonic()
        a.kill()  # SIGKILL: whatever it had in flight, it never answers
        killed = time.monotonic()
        wait_for(lambda: grid.leader() is b, timeout=20, what="the survivor to take the lead")
        wait_for(lambda: len(load.after(killed)) > 300, timeout=60, what="calls after the kill")
    finally:
        outcomes = load.stop()
    failed = [o for o in outcomes if not o.ok]
    # Only calls the dead SP held (at most one per consumer) may fail: each was in flight
    # at the kill. Every call started after it succeeded.
    held = [o for o in failed if o.started < killed and o.started + o.seconds >= before]
    assert held == failed and len(failed) <= 16, summary(outcomes)
    assert len(load.after(killed)) > 300 and all(o.ok for o in load.after(killed))
    # Deployed once: the SPs' registry and the hosts themselves agree.
    on_hosts = [d for hp in grid.hps for d in hosted(hp.url) if d.get("service") == "Echo"]
    assert len(on_hosts) == 1
    assert [d.id for d in ProviderClient(b.url).call("ListDeployments", name="Echo")] == [
        on_hosts[0]["id"]
    ]
    assert len(hosts_up(b)) == 3


@pytest.mark.parametrize(
    "dies",
    ["leader", pytest.param("follower", marks=pytest.mark.soak)],  # make test: the leader
)
def test_hosts_beating_through_haproxy_stay_up_when_an_sp_dies(
    beating_through: tuple[Grid, str], dies: str
) -> None:
    """Hosts given the HAProxy URL as --sp beat to whichever SP it picks; one SP (the one
    leading the control loop, or the other) is SIGKILLed, and for three host timeouts after,
    every host stays up at the survivor, none is ever judged down, and no call fails that had
    not reached the dead SP."""
    grid, lb = beating_through
    wait_for(lambda: grid.leader() is not None, what="a leader")
    leader = grid.leader()
    assert leader is not None
    other = next(sp for sp in grid.sps if sp is not leader)
    dead, survivor = (leader, other) if dies == "leader" else (other, leader)
    everyone = {hp.url for hp in grid.hps}
    echo_deployed(grid, lb)
    load = Load(lb, echo=16, counter=0, timeout=60.0).start()
    absent: list[tuple[float, set[str]]] = []  # (when, hosts not up at the survivor)
    try:
        wait_for(lambda: load.count() > 100, timeout=60, what="calls through HAProxy")
        # Through HAProxy, the beats reach both SPs (any of them may be the one that dies).
        wait_for(
            lambda: all(beats_heard(sp) >= 3 for sp in grid.sps),
            timeout=30,
            what="beats heard by both SPs",
        )
        before = time.monotonic()
        dead.kill()  # SIGKILL: the beats it heard and had not written yet die with it
        killed, killed_at = time.monotonic(), datetime.now(UTC)
        if dies == "leader":
            wait_for(lambda: grid.leader() is survivor, timeout=20, what="a new leader")
        past = killed_at + timedelta(seconds=3 * HOST_TIMEOUT)

        def heard_long_after() -> bool:
            """Every host beat to the survivor three host timeouts after the kill (noting,
            meanwhile, any moment a host was not up there)."""
            hosts = ProviderClient(survivor.url).call("ListHosts") or []
            up = {h.address for h in hosts if h.state == "up"}
            if up != everyone:
                absent.append((time.monotonic() - killed, everyone - up))
            seen = {h.address for h in hosts if h.lastSeen is not None and h.lastSeen >= past}
            return seen == everyone

        wait_for(heard_long_after, timeout=60, what="beats three host timeouts after the kill")
        wait_for(lambda: len(load.after(killed)) > 100, timeout=60, what="calls after the kill")
    finally:
        outcomes = load.stop()
    assert not absent, f"hosts not up at the survivor (seconds after the kill): {absent}"
    assert [downs(sp) for sp in grid.sps] == [[], []]
    assert grid.leader() is survivor
    assert hosts_up(survivor) == everyone
    failed = [o for o in outcomes if not o.ok]
    held = [o for o in failed if o.started < killed and o.started + o.seconds >= before]
    assert held == failed and len(failed) <= 16, summary(outcomes)
    assert all(o.ok for o in load.after(killed))


def test_hosts_beating_through_haproxy_stay_up_when_an_sp_hangs_then_dies(
    tmp_path: Path, pg_url: str
) -> None:
    """An SP that hangs (SIGSTOP) keeps the beats HAProxy sent it, unanswered, until HAProxy's
    health check takes it out (some 4.5 s with the shipped config). A host gives such a beat up
    after its beat timeout (its interval, 2 s at least) and sends it again at once, through
    HAProxy, so with a --host-timeout longer than that no host is judged down: while the SP
    hangs, nor after it is SIGKILLed."""
    timeout = 8.0
    with _behind_haproxy(tmp_path, pg_url, hosts_via_lb=True, host_timeout=timeout) as found:
        grid, _ = found
        wait_for(lambda: grid.leader() is not None, what="a leader")
        leader = grid.leader()
        assert leader is not None
        hung = next(sp for sp in grid.sps if sp is not leader)
        everyone = {hp.url for hp in grid.hps}
        wait_for(
            lambda: all(beats_heard(sp) >= 3 for sp in grid.sps),
            timeout=30,
            what="beats heard by both SPs",
        )
        absent: list[tuple[float, set[str]]] = []  # (when, hosts not up at the leader)

        def note_absent() -> list[Any]:
            hosts = ProviderClient(leader.url).call("ListHosts") or []
            up = {h.address for h in hosts if h.state == "up"}
            if up != everyone:
                absent.append((time.monotonic() - stopped, everyone - up))
            return list(hosts)

        def gave_up_a_beat() -> bool:
            note_absent()
            return any("no response before the timeout" in hp.log() for hp in grid.hps)

        os.kill(hung.process.pid, signal.SIGSTOP)  # it holds what it was sent, answering nothing
        stopped, stopped_at = time.monotonic(), datetime.now(UTC)
        try:
            wait_for(gave_up_a_beat, timeout=30, what="a host to give up a beat the SP held")
        finally:
            hung.kill()  # SIGKILL, stopped as it is
        past = stopped_at + timedelta(seconds=2 * timeout)

        def heard_long_after() -> bool:
            seen = {h.address for h in note_absent() if h.lastSeen and h.lastSeen >= past}
            return seen == everyone

        wait_for(heard_long_after, timeout=60, what="beats two host timeouts after the hang")
        assert not absent, f"{len(absent)} looks found hosts not up at the leader: {absent[:3]}"
        assert [downs(sp) for sp in grid.sps] == [[], []]
        assert grid.leader() is leader and hosts_up(leader) == everyone
