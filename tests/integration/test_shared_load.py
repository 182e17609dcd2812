"""Several SPs on one shared PostgreSQL registry see one load: the SP leading the control loop
undeploys a deployment idle, or scales a service out, by the messages every SP relays, not only
by those it relays itself."""

from __future__ import annotations

import threading
import time

from dynasoar.consumer.provider_client import ProviderClient
from dynasoar.paths import samples_dir

from .conftest import wait_for
from .grid import Grid, deployments, hosts_up
from .test_scaling import COMPUTE
from .test_shared_registry import echo, wait_advertised
from .wire import ECHO_NS, envelope, post


def test_a_deployment_busy_through_another_sp_is_not_undeployed_as_idle(grid: Grid) -> None:
    a = grid.start_sp("--idle-timeout", "3")
    wait_for(lambda: grid.leader() is a, what="the first SP to lead")
    b = grid.start_sp("--idle-timeout", "3")
    grid.add_hp(a)
    wait_for(lambda: len(hosts_up(b)) == 1, what="the host, seen by both SPs")
    ProviderClient(a.url).publish(samples_dir() / "echo")
    wait_advertised(b.url, "Echo")
    first = echo(b.url, "first")
    # Only the SP that does not lead relays, for three times the idle timeout.
    until = time.monotonic() + 9
    seen = {first}
    while time.monotonic() < until:
        seen.add(echo(b.url, "busy"))
        time.sleep(0.2)
    assert seen == {first}, "the leader undeployed a deployment another SP kept busy"
    assert "idle for" not in a.log()
    # Quiet everywhere: now it is idle, and the leader undeploys it.
    wait_for(lambda: not deployments(a, "Echo"), timeout=30, what="the idle deployment to go")
    assert "idle for" in a.log()


def test_the_leader_scales_out_by_the_load_another_sp_relays(grid: Grid) -> None:
    a = grid.start_sp("--scale-at", "1.5", "--max-replicas", "2")
    wait_for(lambda: grid.leader() is a, what="the first SP to lead")
    b = grid.start_sp("--scale-at", "1.5", "--max-replicas", "2")
    grid.add_hp(a)
    grid.add_hp(a)
    wait_for(lambda: len(hosts_up(b)) == 2, what="the hosts, seen by both SPs")
    ProviderClient(a.url).publish(samples_dir() / "echo")
    wait_advertised(b.url, "Echo")
    echo(b.url, "first")
    stop = threading.Event()
    statuses: list[int] = []
    body = envelope(COMPUTE.format(80))

    def caller() -> None:  # back to back, through the SP that does not lead
        while not stop.is_set():
            reply = post(f"{b.url}/services/Echo", body, soap_action=f"{ECHO_NS}/Compute")
            statuses.append(reply.status)

    callers = [threading.Thread(target=caller) for _ in range(8)]
    for t in callers:
        t.start()
    try:
        wait_for(
            lambda: len(deployments(a, "Echo")) == 2,
            timeout=40,
            what="the leader to add a replica for the load relayed by the other SP",
        )
    finally:
        stop.set()
        for t in callers:
            t.join(timeout=60)
    assert statuses and set(statuses) == {200}
    assert "one more replica" in a.log() and "one more replica" not in b.log()
