"""The registry and the hosts agree: what a host runs for this SP that the registry does not
know is undeployed (what it runs for others is left alone); what the registry holds that its
host no longer runs is forgotten (stateless) or lost (stateful); a lost deployment whose host is
seen again still running it is used again, its state intact."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dynasoar import ns
from dynasoar.consumer import direct
from dynasoar.consumer.call import call
from dynasoar.errors import RemoteFault
from dynasoar.paths import samples_dir

from .conftest import Cluster, wait_for
from .hosted import deploy_directly, hosted, sp_identity

MakeCluster = Callable[..., Cluster]


def states(c: Cluster) -> dict[str, tuple[str, str]]:
    return {d.service: (d.id, d.state) for d in c.client.call("ListDeployments") or []}


def test_a_deployment_the_registry_does_not_know_is_undeployed_if_it_is_ours(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    c = make_cluster(sp_args=["--reconcile-interval", "1"], hps=[()])
    hp = c.hps[0].url
    ours = sp_identity(c.work / "sp")
    echo = samples_dir() / "echo"
    deploy_directly(hp, echo, tmp_path / "a", "orphan-of-ours", owner=ours)
    deploy_directly(hp, echo, tmp_path / "b", "somebody-elses", owner="urn:uuid:another-sp")
    deploy_directly(hp, echo, tmp_path / "c", "nobodys", owner=None)
    assert {"orphan-of-ours", "somebody-elses", "nobodys"} <= set(hosted(hp))
    wait_for(lambda: "orphan-of-ours" not in hosted(hp), what="the orphan to be undeployed")
    time.sleep(2.5)  # two more rounds: the others stay
    assert {"somebody-elses", "nobodys"} <= set(hosted(hp))
    assert "undeploying it" in c.sp.log()


def test_what_a_host_no_longer_runs_is_forgotten_or_lost(make_cluster: MakeCluster) -> None:
    c = make_cluster(sp_args=["--reconcile-interval", "1"], hps=[()])
    hp = c.hps[0].url
    c.client.publish(samples_dir() / "echo")
    c.client.publish(samples_dir() / "counter")
    call(c.service_url("Echo") + "?wsdl", "Echo", ["text=x"])
    assert call(c.service_url("Counter") + "?wsdl", "Increment", []).value == 1
    before = states(c)
    for _, (deployment_id, _) in before.items():
        assert direct.undeploy(deployment_id, hp)  # behind the SP's back
    wait_for(
        lambda: states(c) == {"Counter": (before["Counter"][0], "lost")},
        what="the SP to notice",
    )
    # The stateless one simply deploys again; the stateful one says it is lost.
    assert (
        call(c.service_url("Echo") + "?wsdl", "Echo", ["text=y"]).headers["x-dynasoar-cold"] == "1"
    )
    with pytest.raises(RemoteFault) as lost:
        call(c.service_url("Counter") + "?wsdl", "Increment", [])
    assert (ns.DYN, "HostLost") in lost.value.fault.subcodes


def test_a_lost_deployment_still_running_on_its_returning_host_is_used_again(
    make_cluster: MakeCluster,
) -> None:
    c = make_cluster(
        sp_args=["--host-timeout", "2", "--reconcile-interval", "1"], hps=[["--heartbeat", "0.5"]]
    )
    hp = c.hps[0]
    c.client.publish(samples_dir() / "counter")
    counter = c.service_url("Counter") + "?wsdl"
    assert [call(counter, "Increment", []).value for _ in range(2)] == [1, 2]
    # The host's own process hangs (its service does not): it misses its heartbeats.
    os.kill(hp.process.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: states(c)["Counter"][1] == "lost", what="the counter to be lost")
        with pytest.raises(RemoteFault) as lost:
            call(counter, "Increment", [])
        assert (ns.DYN, "HostLost") in lost.value.fault.subcodes
        assert "no heartbeat" in lost.value.fault.reason
    finally:
        os.kill(hp.process.pid, signal.SIGCONT)
    wait_for(lambda: states(c)["Counter"][1] == "ready", what="the counter to be used again")
    assert call(counter, "Increment", []).value == 3  # its state intact
    assert "answers again" in c.sp.log()
