"""Replication, scale-out, idle undeploy and failover, with real SP and HP processes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable

from .conftest import Cluster, wait_for
from .wire import ECHO_ACTION, ECHO_NS, echo_body, envelope, post, wsa_headers

MakeCluster = Callable[..., Cluster]
COMPUTE = f'<e:Compute xmlns:e="{ECHO_NS}"><e:millis>{{}}</e:millis></e:Compute>'


def stream(
    url: str,
    body: Callable[[int], bytes],
    action: str,
    callers: int,
    seconds: float,
    during: Callable[[], None] | None = None,
    at: float = 0.0,
) -> list[tuple[int, str]]:
    """``callers`` threads calling ``url`` back to back for ``seconds``; ``during`` runs once,
    ``at`` seconds in. Returns (HTTP status, answering host) per call."""
    results: list[tuple[int, str]] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def caller(n: int) -> None:
        i = 0
        while time.monotonic() < stop:
            reply = post(url, body(n * 100000 + i), soap_action=action, timeout=60)
            with lock:
                results.append((reply.status, reply.headers.get("x-dynasoar-host", "")))
            i += 1

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
    for t in threads:
        t.start()
    if during is not None:
        time.sleep(at)
        during()
    for t in threads:
        t.join()
    return results


def test_load_grows_a_stateless_service_to_several_replicas(make_cluster: MakeCluster) -> None:
    from dynasoar.paths import samples_dir

    cluster = make_cluster(sp_args=["--scale-at", "1.5", "--max-replicas", "3"], hps=[[], [], []])
    cluster.client.publish(samples_dir() / "echo")
    url = cluster.service_url("Echo")
    action = f"{ECHO_NS}/Compute"
    results = stream(url, lambda i: envelope(COMPUTE.format(80)), action, callers=8, seconds=10)
    assert all(status == 200 for status, _ in results)
    deployments = cluster.client.call("ListDeployments")
    assert 2 <= len(deployments) <= 3
    assert len({d.host for d in deployments}) == len(deployments)  # one replica per host
    # traffic spreads over the replicas (least outstanding requests first)
    late = Counter(host for _, host in results[len(results) // 2 :])
    assert len(late) >= 2 and min(late.values()) >= len(results) // 20, late


def test_stateful_service_is_never_replicated(make_cluster: MakeCluster) -> None:
    from dynasoar.paths import samples_dir

    cluster = make_cluster(sp_args=["--scale-at", "1", "--max-replicas", "3"])
    cluster.client.publish(samples_dir() / "counter")
    url = cluster.service_url("Counter")
    action = "urn:dynasoar:samples:counter/Increment"
    body = envelope('<c:Increment xmlns:c="urn:dynasoar:samples:counter"/>')
    results = stream(url, lambda i: body, action, callers=8, seconds=4)
    assert all(status == 200 for status, _ in results)
    assert len({host for _, host in results}) == 1
    assert len(cluster.client.call("ListDeployments")) == 1


def test_idle_deployments_are_undeployed_and_come_back(make_cluster: MakeCluster) -> None:
    from dynasoar.consumer.call import call
    from dynasoar.paths import samples_dir

    cluster = make_cluster(sp_args=["--idle-timeout", "1.5"])
    cluster.client.publish(samples_dir() / "echo")
    wsdl = cluster.service_url("Echo") + "?wsdl"
    assert call(wsdl, "Echo", ["text=a"]).headers["x-dynasoar-cold"] == "1"
    assert call(wsdl, "Echo", ["text=b"]).headers["x-dynasoar-cold"] == "0"
    wait_for(
        lambda: not cluster.client.call("ListDeployments"),
        timeout=15,
        what="the idle deployment to be undeployed",
    )
    hosted = sum(_hosted(hp.url) for hp in cluster.hps)
    assert hosted == 0  # really stopped on its host, not only forgotten
    assert call(wsdl, "Echo", ["text=c"]).headers["x-dynasoar-cold"] == "1"


def _hosted(hp: str) -> int:
    import zeep

    return len(zeep.Client(hp + "/dynasoar/HostProvider?wsdl").service.List() or [])


def test_sigkill_of_a_host_mid_stream_fails_no_call(cluster: Cluster, echo: str) -> None:
    headers, _ = wsa_headers(to=echo)
    first = post(echo, envelope(echo_body("warm up"), headers), soap_action=ECHO_ACTION)
    victim = next(hp for hp in cluster.hps if hp.url == first.headers["x-dynasoar-host"])

    def body(i: int) -> bytes:
        h, _ = wsa_headers(to=echo)
        return envelope(echo_body(f"call {i}"), h)

    results = stream(echo, body, ECHO_ACTION, callers=4, seconds=6, during=victim.kill, at=2)
    failed = [r for r in results if r[0] != 200]
    assert not failed, f"{len(failed)} of {len(results)} calls failed"
    hosts = Counter(host for _, host in results)
    assert set(hosts) == {hp.url for hp in cluster.hps}  # before and after the kill
    status = json.loads(
        subprocess.run(
            [sys.executable, "-m", "dynasoar", "status", "--sp", cluster.sp.url, "--json"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    )
    states = {h["address"]: h["state"] for h in status["hosts"]}
    assert states[victim.url] == "down"
    assert [d["host"] for d in status["deployments"]] == [
        next(hp.url for hp in cluster.hps if hp is not victim)
    ]


def test_a_host_that_misses_heartbeats_is_marked_down(make_cluster: MakeCluster) -> None:
    import os
    import signal

    from dynasoar.consumer.call import call
    from dynasoar.paths import samples_dir

    cluster = make_cluster(sp_args=["--host-timeout", "2"], hps=[])
    for _ in range(2):
        cluster.add_hp(args=["--heartbeat", "0.5"])
    cluster.client.publish(samples_dir() / "echo")
    wsdl = cluster.service_url("Echo") + "?wsdl"
    first = call(wsdl, "Echo", ["text=a"])
    silent = next(hp for hp in cluster.hps if hp.url == first.headers["x-dynasoar-host"])
    os.kill(silent.process.pid, signal.SIGSTOP)  # alive but mute: no heartbeats, no answers
    try:
        wait_for(
            lambda: silent.url not in cluster.hosts_up(),
            timeout=15,
            what="the mute host to be marked down",
        )
        moved = call(wsdl, "Echo", ["text=b"])
        assert moved.headers["x-dynasoar-host"] != silent.url
    finally:
        os.kill(silent.process.pid, signal.SIGCONT)
    # once it speaks again it is back up
    wait_for(lambda: silent.url in cluster.hosts_up(), timeout=15, what="the host to come back")


def test_a_host_registered_once_is_not_expected_to_heartbeat(make_cluster: MakeCluster) -> None:
    from dynasoar.consumer.call import call
    from dynasoar.paths import samples_dir

    cluster = make_cluster(sp_args=["--host-timeout", "1"], hps=[])
    hp = cluster.add_hp(register=False)
    cluster.client.call("RegisterHost", address=hp.url)  # an administrator's, once
    cluster.client.publish(samples_dir() / "echo")
    wsdl = cluster.service_url("Echo") + "?wsdl"
    first = call(wsdl, "Echo", ["text=a"])
    time.sleep(3)  # well past --host-timeout
    again = call(wsdl, "Echo", ["text=b"])
    assert again.headers["x-dynasoar-cold"] == "0"
    assert again.headers["x-dynasoar-deployment"] == first.headers["x-dynasoar-deployment"]
