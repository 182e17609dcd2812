"""Hung hosts don't hold calls: a call waits for its service at most the service's call deadline
(``[service] call_timeout``, else ``sp --call-timeout``), answered dyn:CallTimeout after it;
and when the host is marked down meanwhile, the wait ends at once: a stateful message is
answered dyn:HostLost (a stateless one is sent once more elsewhere: tests/integration/
test_restarts.py)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from dynasoar.consumer.call import call
from dynasoar.paths import samples_dir

from .conftest import Cluster, make_package, wait_for
from .test_restarts import descendants
from .test_shutdown import compute
from .wire import Reply, envelope, post

MakeCluster = Callable[..., Cluster]
DYN = "{urn:dynasoar:2006}"
COUNTER_NS = "urn:dynasoar:samples:counter"


def test_a_call_past_the_services_own_deadline_is_answered_call_timeout(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    c = make_cluster(hps=[()])
    package = make_package(tmp_path)
    manifest = package / "dynasoar.toml"
    manifest.write_text(
        manifest.read_text().replace("stateless = true", "stateless = true\ncall_timeout = 1")
    )
    c.client.publish(package)
    first = call(c.service_url("Echo") + "?wsdl", "Echo", ["text=warm"])
    reply = compute(c, 5000)
    assert reply.status == 500
    assert DYN + "CallTimeout" in reply.fault_codes()
    assert "call_timeout" in (reply.text(".//faultstring") or "")
    # A slow call says nothing against its deployment: it still serves, warm.
    again = call(c.service_url("Echo") + "?wsdl", "Echo", ["text=still"])
    assert again.headers["x-dynasoar-deployment"] == first.headers["x-dynasoar-deployment"]
    assert again.headers["x-dynasoar-cold"] == "0"


def test_the_sps_call_timeout_bounds_services_that_set_none(make_cluster: MakeCluster) -> None:
    c = make_cluster(sp_args=["--call-timeout", "1"], hps=[()])
    c.client.publish(samples_dir() / "echo")
    call(c.service_url("Echo") + "?wsdl", "Echo", ["text=warm"])
    assert DYN + "CallTimeout" in compute(c, 5000).fault_codes()


def test_a_stateful_call_to_a_host_that_hangs_ends_host_lost_not_at_its_deadline(
    make_cluster: MakeCluster,
) -> None:
    c = make_cluster(
        sp_args=["--host-timeout", "2", "--call-timeout", "120", "--reconcile-interval", "1"],
        hps=[["--heartbeat", "0.5"]],
    )
    c.client.publish(samples_dir() / "counter")
    counter = c.service_url("Counter")
    assert call(counter + "?wsdl", "Increment", []).value == 1
    host = c.hps[0]
    frozen = [host.process.pid, *descendants(host.process.pid)]
    for pid in frozen:  # the whole host hangs: its own process and its services
        os.kill(pid, signal.SIGSTOP)
    answers: list[Reply] = []
    try:
        body = envelope(f'<c:Increment xmlns:c="{COUNTER_NS}"/>')
        in_flight = threading.Thread(
            target=lambda: answers.append(
                post(counter, body, soap_action=f"{COUNTER_NS}/Increment", timeout=150)
            )
        )
        in_flight.start()
        in_flight.join(timeout=60)  # long before its 120 s deadline
        (reply,) = answers
        assert DYN + "HostLost" in reply.fault_codes()
        assert "while this message waited" in (reply.text(".//faultstring") or "")
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    # Back, still running the deployment: used again, its state intact (the message that was
    # in flight may or may not have been counted: the fault said so).
    wait_for(
        lambda: [d.state for d in c.client.call("ListDeployments")] == ["ready"],
        what="the counter to be used again",
    )
    assert call(counter + "?wsdl", "Increment", []).value in (2, 3)
