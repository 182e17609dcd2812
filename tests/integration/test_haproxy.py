"""deploy/haproxy/haproxy.cfg in front of two SPs on a shared PostgreSQL registry with three
HPs, all real processes: 16 consumers call through HAProxy, one SP is SIGKILLed, and no call
fails that had not reached it (those it would have refused go to the other SP; only messages
it held when it died can fail: HAProxy does not send again what may have reached a service),
the control loop moves to the survivor, and the service is deployed once, ever."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynasoar.consumer.provider_client import ProviderClient
from dynasoar.paths import samples_dir

from .conftest import wait_for
from .grid import Grid, hosts_up
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


@pytest.fixture
def balanced(tmp_path: Path, pg_url: str) -> Iterator[tuple[Grid, str]]:
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        pytest.skip("HAProxy is not installed (scripts/install-system.sh installs it)")
    port = free_port()
    lb = f"http://127.0.0.1:{port}"
    grid = Grid(tmp_path, pg_url)
    process = None
    try:
        a = grid.start_sp("--public-url", lb, "--host-timeout", "3")
        b = grid.start_sp("--public-url", lb, "--host-timeout", "3")
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
        yield grid, lb
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=10)
        grid.stop()


def _answers(url: str) -> bool:
    try:
        return get(f"{url}/readyz", timeout=2).status == 200
    except OSError:
        return False


def test_an_sp_killed_behind_haproxy_costs_no_call(balanced: tuple[Grid, str]) -> None:
    grid, lb = balanced
    a, b = grid.sps
    ProviderClient(lb).publish(samples_dir() / "echo")
    for sp in (a, b):
        wait_for(lambda sp=sp: get(f"{sp.url}/services/Echo?wsdl").status == 200)
    first = post(f"{lb}/services/Echo", envelope(echo_body("cold")), soap_action=ECHO_ACTION)
    assert first.status == 200, first.body[:500]
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
