"""Stopping an SP: the control loop stops first, so a slow stop undoes nothing (the hosts'
heartbeats go unheard meanwhile); messages in flight finish within the grace period, and those
that outlive it are answered dyn:ShuttingDown, not cut; idle keep-alive connections are closed
cleanly. A plain SIGTERM + start keeps every deployment and its state."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from dynasoar.consumer.call import call
from dynasoar.paths import samples_dir

from .conftest import Cluster, wait_for
from .wire import ECHO_NS, Reply, envelope, post

MakeCluster = Callable[..., Cluster]
DYN = "{urn:dynasoar:2006}"


def compute(sp: Cluster, millis: int, timeout: float = 120.0) -> Reply:
    body = f'<e:Compute xmlns:e="{ECHO_NS}"><e:millis>{millis}</e:millis></e:Compute>'
    return post(
        sp.service_url("Echo"),
        envelope(body),
        soap_action=f"{ECHO_NS}/Compute",
        timeout=timeout,
    )


def in_background(work: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    return thread, result


def test_a_slow_stop_undoes_nothing_and_a_restart_reuses_everything(
    make_cluster: MakeCluster,
) -> None:
    # Hosts beat every second and are judged down after 2 s of silence; the stop below takes
    # longer than that (a 6 s call in flight), and must not judge them.
    sp = make_cluster(
        sp_args=["--host-timeout", "2"], hps=[["--heartbeat", "1"], ["--heartbeat", "1"]]
    )
    sp.client.publish(samples_dir() / "echo")
    sp.client.publish(samples_dir() / "counter")
    counter = sp.service_url("Counter") + "?wsdl"
    assert [call(counter, "Increment", []).value for _ in range(3)] == [1, 2, 3]
    echo = call(sp.service_url("Echo") + "?wsdl", "Echo", ["text=x"])
    before = {(d.id, d.host) for d in sp.client.call("ListDeployments")}

    slow, answer = in_background(lambda: compute(sp, 6000))
    time.sleep(1.0)  # the call is at the service
    stopped = time.monotonic()
    assert sp.sp.stop(grace=60) == 0
    slow.join(timeout=60)
    assert time.monotonic() - stopped > 3  # the stop waited for the call ...
    (reply,) = answer
    assert reply.status == 200  # ... which was answered in full
    assert reply.headers.get("connection") == "close"
    log = sp.sp.log()
    assert "is down" not in log and "forgetting" not in log and "is lost" not in log

    sp.start_sp()
    assert {(d.id, d.host) for d in sp.client.call("ListDeployments")} == before
    again = call(sp.service_url("Echo") + "?wsdl", "Echo", ["text=y"])
    assert again.headers["x-dynasoar-deployment"] == echo.headers["x-dynasoar-deployment"]
    assert again.headers["x-dynasoar-cold"] == "0"
    assert call(sp.service_url("Counter") + "?wsdl", "Increment", []).value == 4


def test_a_message_that_outlives_the_grace_is_answered_shutting_down(
    make_cluster: MakeCluster,
) -> None:
    sp = make_cluster(sp_args=["--grace", "1"], hps=[()])
    sp.client.publish(samples_dir() / "echo")
    call(sp.service_url("Echo") + "?wsdl", "Echo", ["text=warm"])
    # An idle keep-alive connection, open when the stop begins.
    parts = urlsplit(sp.sp.url)
    idle = socket.create_connection((parts.hostname, parts.port), timeout=30)
    idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert idle.recv(1000).startswith(b"HTTP/1.1 200")

    slow, answer = in_background(lambda: compute(sp, 20_000))
    time.sleep(1.0)
    assert sp.sp.stop(grace=60) == 0
    slow.join(timeout=60)
    (reply,) = answer
    assert reply.status == 500
    assert DYN + "ShuttingDown" in reply.fault_codes()
    assert "stopping" in (reply.text(".//faultstring") or "")
    # The idle connection was closed with a FIN (end of stream), not reset.
    assert idle.recv(1000) == b""
    idle.close()


def test_the_sp_answers_no_one_before_it_has_restored(make_cluster: MakeCluster) -> None:
    """A restart's first messages wait for the restore instead of failing (the listener takes
    connections only once the handler is ready)."""
    sp = make_cluster(hps=[()])
    sp.client.publish(samples_dir() / "counter")
    counter = sp.service_url("Counter") + "?wsdl"
    assert call(counter, "Increment", []).value == 1
    sp.sp.stop()
    sp.start_sp()
    assert call(sp.service_url("Counter") + "?wsdl", "Increment", []).value == 2


@pytest.mark.parametrize("drain", [True, False], ids=["drain", "no-drain"])
def test_a_stopping_host_is_left_by_its_stateless_deployments(
    make_cluster: MakeCluster, drain: bool
) -> None:
    sp = make_cluster(hps=[["--drain"] if drain else [], []])
    leaving, staying = sp.hps
    sp.client.publish(samples_dir() / "echo")
    sp.client.call("Deploy", name="Echo", host=leaving.url)
    wsdl = sp.service_url("Echo") + "?wsdl"
    assert call(wsdl, "Echo", ["text=x"]).headers["x-dynasoar-host"] == leaving.url

    stop = threading.Thread(target=leaving.stop, kwargs={"grace": 60})
    stop.start()
    answers = []
    while stop.is_alive():  # a consumer that keeps calling through the stop
        answers.append(call(wsdl, "Echo", [f"text={len(answers)}"]))
    stop.join()
    assert all(a.value == str(i) for i, a in enumerate(answers))
    (deployment,) = sp.client.call("ListDeployments")
    assert deployment.host == staying.url
    moved = "1 deployment(s) moved elsewhere" if drain else "0 deployment(s) moved elsewhere"
    wait_for(lambda: moved in leaving.log(), what="the host's log to say so")


def test_a_stopping_sp_refuses_new_connections_while_it_finishes_what_it_holds(
    make_cluster: MakeCluster,
) -> None:
    """A balancer in front tries a refused connection on another SP at once; one accepted
    into a backlog nobody will serve would be reset at exit, after the balancer had sent it
    a message it may not send again (tests/integration/test_haproxy_drain.py)."""
    sp = make_cluster(hps=[()])
    sp.client.publish(samples_dir() / "echo")
    call(sp.service_url("Echo") + "?wsdl", "Echo", ["text=warm"])
    parts = urlsplit(sp.sp.url)
    slow, answer = in_background(lambda: compute(sp, 6_000))
    time.sleep(1.0)
    sp.sp.process.send_signal(signal.SIGTERM)

    def refused() -> bool:
        try:
            socket.create_connection((parts.hostname, parts.port), timeout=5).close()
        except ConnectionRefusedError:
            return True
        return False  # not yet: the control loop stops first, serving meanwhile

    wait_for(refused, timeout=4, what="new connections to be refused")
    assert slow.is_alive()  # still held: the SP is draining
    slow.join(timeout=60)
    (reply,) = answer
    assert reply.status == 200
    assert sp.sp.process.wait(timeout=60) == 0
